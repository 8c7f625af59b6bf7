"""Op-level probes behind four claims: Keras's sigmoid, softmax and ReLU applied to extreme
finite inputs (values and gradients checked for inf/NaN), what Keras's clipping arguments do
to one real gradient (doc003 example 2 says clipnorm=1.0 "limits the norm of the gradients to 1.0"),
and the gradient of sqrt(mse) (nanbench.losses.RootMeanSquaredError) where the fit is exact.
"""

from __future__ import annotations

import functools

import numpy as np

from nanbench.studies.documents import SEED, make_data

EXTREME = (-1e38, -1e4, -100.0, 0.0, 100.0, 1e4, 1e38)


@functools.lru_cache(maxsize=None)  # deterministic; computed once per process
def activation_probe(which: str) -> list[dict]:
    """Keras's activations on extreme finite float32 inputs: are values and gradients finite?

    The gradient is of sum(w * f(x)) with w = 1..n (a plain sum of softmax is constant). A
    hand-written softmax, exp(x) / sum(exp(x)), is probed beside Keras's to show what overflow is.
    """
    import keras
    import tensorflow as tf

    x = tf.constant([EXTREME], dtype=tf.float32)
    w = tf.range(1, len(EXTREME) + 1, dtype=tf.float32)
    fns = {"relu": {"keras.activations.relu": keras.activations.relu},
           "sigmoid_softmax": {"keras.activations.sigmoid": keras.activations.sigmoid,
                               "keras.activations.softmax": keras.activations.softmax,
                               "exp(x) / sum(exp(x)) (hand-written)":
                                   lambda v: tf.exp(v) / tf.reduce_sum(tf.exp(v), axis=-1, keepdims=True)}}[which]
    rows = []
    for name, fn in fns.items():
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = fn(x)
            s = tf.reduce_sum(w * y)
        g = tape.gradient(s, x)
        rows.append({"function": name, "inputs": "[" + ", ".join(f"{v:g}" for v in EXTREME) + "]",
                     "values_finite": bool(np.all(np.isfinite(y.numpy()))),
                     "gradients_finite": bool(np.all(np.isfinite(g.numpy()))),
                     "values": "[" + ", ".join(f"{v:.3g}" for v in y.numpy().ravel()) + "]"})
    return rows


@functools.lru_cache(maxsize=None)  # deterministic; computed once per process
def clipping_probe() -> list[dict]:
    """Keras's clipping arguments on one real gradient: doc003 example 2's model (Dense(64, relu),
    Dense(1): four variables) at its seeded initial weights, on the first batch of its stand-in
    data with y x 100 so that the gradient exceeds 1. One SGD step at learning rate 1.0 moves each
    variable by exactly its (clipped) gradient, so the update's norms are the clipped gradient's."""
    import keras
    import tensorflow as tf


    X, y = make_data("clean10")
    X, y = X[:32], y[:32] * 100.0
    rows = []
    for kind in ("none", "clipnorm", "global_clipnorm", "clipvalue"):
        keras.utils.set_random_seed(SEED)
        model = keras.Sequential([keras.Input(shape=(10,)), keras.layers.Dense(64, activation="relu"),
                                  keras.layers.Dense(1)])
        clip = {} if kind == "none" else {kind: 1.0}
        optimizer = keras.optimizers.SGD(learning_rate=1.0, **clip)
        before = [np.array(w.numpy(), dtype=np.float64) for w in model.trainable_weights]
        with tf.GradientTape() as tape:  # eagerly: the same clipping code as in fit, no tracing
            loss = keras.losses.MeanSquaredError()(y, model(X, training=True))
        optimizer.apply(tape.gradient(loss, model.trainable_weights), model.trainable_weights)
        steps = [b - np.array(w.numpy(), dtype=np.float64) for b, w in zip(before, model.trainable_weights)]
        per = [float(np.linalg.norm(u)) for u in steps]
        rows.append({"clipping": "none" if kind == "none" else f"{kind}=1.0",
                     "per-variable gradient norms": "[" + ", ".join(f"{v:.3g}" for v in per) + "]",
                     "joint gradient norm": f"{float(np.sqrt(sum(v * v for v in per))):.3g}"})
    return rows


@functools.lru_cache(maxsize=None)  # deterministic; computed once per process
def sqrt_probe() -> list[dict]:
    """rmse (sqrt of Keras's mse, nanbench.losses.RootMeanSquaredError) and mse, value and gradient
    with respect to the predictions (targets 1..4), at an exact fit (every residual 0), at residuals of
    1e-20 (below float32's resolution at these targets: the predictions round to the targets, an
    exact fit again) and of 1e-3. The gradient of sqrt(m) is 1 / (2 sqrt(m)): infinite at m = 0,
    times the zero residuals, NaN."""
    import keras
    import tensorflow as tf

    from nanbench.losses import RootMeanSquaredError

    y = tf.constant([[1.0], [2.0], [3.0], [4.0]], dtype=tf.float32)
    rows = []
    for residual in (0.0, 1e-20, 1e-3):
        for name, loss in (("rmse", RootMeanSquaredError()), ("mse", keras.losses.MeanSquaredError())):
            pred = y + residual
            with tf.GradientTape() as tape:
                tape.watch(pred)
                value = loss(y, pred)
            g = tape.gradient(value, pred).numpy()
            rows.append({"loss": name, "residual per row": f"{residual:g}", "loss value": f"{float(value):.3g}",
                         "loss_finite": bool(np.isfinite(float(value))), "gradients_finite": bool(np.all(np.isfinite(g))),
                         "gradient": "[" + ", ".join(f"{v:.3g}" for v in g.ravel()) + "]"})
    return rows


PROBES = {"relu": lambda: activation_probe("relu"),
          "sigmoid_softmax": lambda: activation_probe("sigmoid_softmax"),
          "clipping": clipping_probe,
          "sqrt": sqrt_probe}
