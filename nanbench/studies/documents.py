"""The two documents, as the studies use them: their code blocks verbatim, the arrays that code
fits, and stand-ins for the names it uses and never defines.

Both studies start here: nanbench.studies.examples runs the blocks (as written and inside
nanbench) and nanbench.studies.claims' clipping probe measures one real gradient of doc003
example 2's model on its stand-in data. The documents' own arrays have one home,
nanbench.data (they are datasets too); this module builds from them what each block passes to
``fit``. tests/studies/test_documents.py compares all of it with the documents themselves.
"""

from __future__ import annotations

import numpy as np

from nanbench.data import DOC000_CLEAN, DOC000_OUTLIER, DOC003_DATA
from nanbench.spec import LinearData, OutlierData, PreprocessSpec

SEED = 0   # keras.utils.set_random_seed before every run of a block, as written and in nanbench

# The documents' code blocks, verbatim, keyed by (document, example number).
CODE = {
    ("doc000", 1): """\
import tensorflow as tf
import numpy as np

# Unscaled data with an outlier
X = np.array([[1], [2], [3], [1000]])
y = np.array([2, 4, 6, 2000])

model = tf.keras.Sequential([
    tf.keras.layers.Dense(1, input_shape=(1,))
])
model.compile(optimizer='adam', loss='mse')
model.fit(X, y, epochs=10) # Likely to produce NaN loss
""",
    ("doc000", 2): """\
import tensorflow as tf
import numpy as np
from sklearn.preprocessing import StandardScaler

# Scaled data with the outlier handled using scaling
X = np.array([[1], [2], [3], [1000]])
y = np.array([2, 4, 6, 2000])

scaler_x = StandardScaler()
scaler_y = StandardScaler()

X_scaled = scaler_x.fit_transform(X)
y_scaled = scaler_y.fit_transform(y.reshape(-1, 1)).flatten()

model = tf.keras.Sequential([
    tf.keras.layers.Dense(1, input_shape=(1,))
])

optimizer = tf.keras.optimizers.Adam(clipnorm=1.0) # Gradient clipping

model.compile(optimizer=optimizer, loss='mse')
model.fit(X_scaled, y_scaled, epochs=10) # Less likely to produce NaN loss
""",
    ("doc000", 3): """\
import tensorflow as tf
import numpy as np
from sklearn.preprocessing import StandardScaler

# Scaled data
X = np.array([[1], [2], [3], [4]])
y = np.array([2, 4, 6, 8])

scaler_x = StandardScaler()
scaler_y = StandardScaler()

X_scaled = scaler_x.fit_transform(X)
y_scaled = scaler_y.fit_transform(y.reshape(-1, 1)).flatten()

model = tf.keras.Sequential([
    tf.keras.layers.Dense(1, input_shape=(1,))
])

optimizer = tf.keras.optimizers.Adam(learning_rate=0.001) # Lower learning rate

model.compile(optimizer=optimizer, loss='mse')
model.fit(X_scaled, y_scaled, epochs=10) # Should train stably
""",
    ("doc003", 1): """\
import numpy as np
import tensorflow as tf
from sklearn.preprocessing import StandardScaler

# Sample data with an outlier
data = np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9], [1000, 1000, 1000]])

# Separate features and target (replace with your actual target)
X = data[:, :2]
y = data[:, 2]

# Normalize using StandardScaler
scaler = StandardScaler()
X_scaled = scaler.fit_transform(X)

# Create and train your model using X_scaled and y
model = tf.keras.Sequential([
  tf.keras.layers.Dense(10, activation='relu', input_shape=(2,)),
  tf.keras.layers.Dense(1)
])

model.compile(optimizer='adam', loss='mse')
model.fit(X_scaled, y, epochs=100)
""",
    ("doc003", 2): """\
import tensorflow as tf

model = tf.keras.Sequential([
  tf.keras.layers.Dense(64, activation='relu', input_shape=(10,)),
  tf.keras.layers.Dense(1)
])

optimizer = tf.keras.optimizers.Adam(clipnorm=1.0) # Gradient clipping

model.compile(optimizer=optimizer, loss='mse')
model.fit(X_train, y_train, epochs=100)
""",
    ("doc003", 3): """\
import tensorflow as tf

model = tf.keras.Sequential([
  tf.keras.layers.Dense(32, activation='relu', input_shape=(7,)),
  tf.keras.layers.Dense(1)
])

model.compile(optimizer='adam', loss='huber_loss') # Using Huber loss instead of MSE
model.fit(X_train, y_train, epochs=100)

""",
}


# Stand-ins for X_train, y_train, which doc003 examples 2 and 3 use and never define: nanbench's
# `clean` generator (conf/dataset/clean.yaml: 256 rows, noise 0.1, seed 0) with the feature count
# the example's input_shape states; `outliers` adds its 2% rows scaled 100-1000x (variants only).
SYNTH = {
    "clean10": LinearData(name="clean", n_samples=256, n_features=10, noise=0.1, seed=0),
    "clean7": LinearData(name="clean", n_samples=256, n_features=7, noise=0.1, seed=0),
    "outliers7": OutlierData(name="outliers", n_samples=256, n_features=7, noise=0.1, seed=0,
                             outlier_fraction=0.02, outlier_scale_min=100.0, outlier_scale_max=1000.0),
}


def _standard(a: np.ndarray) -> np.ndarray:
    from sklearn.preprocessing import StandardScaler
    return StandardScaler().fit_transform(a)


def make_data(name: str) -> tuple[np.ndarray, np.ndarray]:
    """The (X, y) a block passes to ``fit``, built the way its code builds them (same dtypes and
    shapes as the document's own arrays: integers stay integers until a scaler makes floats)."""
    (x_outlier, y_outlier), (x_clean, y_clean) = DOC000_OUTLIER, DOC000_CLEAN
    if name == "doc000_outlier":            # doc000 example 1
        return x_outlier, y_outlier
    if name == "doc000_outlier_scaled":     # doc000 example 2
        return _standard(x_outlier), _standard(y_outlier.reshape(-1, 1)).flatten()
    if name == "doc000_clean_scaled":       # doc000 example 3
        return _standard(x_clean), _standard(y_clean.reshape(-1, 1)).flatten()
    if name == "doc003_scaled":             # doc003 example 1
        return _standard(DOC003_DATA[:, :2]), DOC003_DATA[:, 2]
    if name == "doc003_raw":                # doc003 example 1 without its StandardScaler (variant)
        return DOC003_DATA[:, :2], DOC003_DATA[:, 2]
    if name in SYNTH:                       # doc003 examples 2 and 3: X_train, y_train
        from nanbench.data import load
        data = load(SYNTH[name], PreprocessSpec())
        return data.X, data.y
    raise ValueError(f"unknown example data {name!r}")
