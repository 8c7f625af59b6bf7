"""The table's runs: the documents' six examples and the variants that test their claims.

Each :class:`Example` holds the Keras arguments exactly as the document's code passes them and
the same run in nanbench's factor vocabulary (its RunSpec, which becomes the MLflow params).
Nothing here trains: nanbench.studies.examples.in_nanbench and .as_written run them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from nanbench.spec import (ClippingSpec, DatasetSpec, LossSpec, ModelSpec, OptimizerSpec, OutcomeSpec,
                           PreprocessSpec, RunSpec, TrackingSpec, TrainSpec)
from nanbench.studies.documents import CODE, SEED, SYNTH

EXPERIMENT = "examples"      # MLflow experiment of the example runs


@dataclass(frozen=True)
class Example:
    """One run of the table: a document's example, or a variant of one (``base`` set).

    ``layers``, ``optimizer``, ``loss`` and ``epochs`` are the Keras arguments exactly as the code
    passes them; ``spec`` says the same in nanbench's factor vocabulary (it becomes the MLflow
    params). ``judge`` says how the claim is checked: ``nan`` (the run is claimed to go NaN),
    ``stable`` (claimed to stay finite and not blow up), ``remedy`` (claimed to prevent the NaN that
    the ``partner`` run, identical but for the remedy, shows) or ``control`` (a partner, no claim).
    """

    key: str
    doc: str
    number: int
    data: str
    layers: tuple[dict, ...]
    optimizer: Any                    # a string as given to compile, or (class name, kwargs)
    loss: str
    epochs: int
    spec: RunSpec
    claim: str
    judge: str
    partner: str | None = None
    base: str | None = None           # for a variant: the example it changes
    label: str = "as in the document"
    changes: tuple[str, ...] = ()     # every change from the document's code in the nanbench run
    names: tuple[str, ...] = ()       # names the code uses and never defines (given `data` when absent)
    probe: str | None = None          # a nanbench.studies.claims probe that measures part of the claim

    @property
    def code(self) -> str | None:
        return CODE.get((self.doc, self.number)) if self.base is None else None

    @property
    def example(self) -> str:
        return f"ex{self.number}" if self.base is None else f"ex{self.number} variant: {self.label}"


def dense(units: int, **kwargs) -> dict:
    return {"units": units, **kwargs}


def _spec(dataset: DatasetSpec, *, preprocess=PreprocessSpec(), model=ModelSpec(), lr=1e-3,
          optimizer="adam", clipnorm=None, loss="mse", epochs=10) -> RunSpec:
    """The run in nanbench's factors: fit engine, Keras fit defaults (batch 32, shuffle on), seed 0."""
    return RunSpec(
        dataset=dataset, preprocess=preprocess, model=model,
        optimizer=OptimizerSpec(name=optimizer, lr=lr),
        clipping=ClippingSpec("clipnorm", clipnorm) if clipnorm else ClippingSpec(),
        loss=LossSpec(name=loss), outcome=OutcomeSpec(),
        train=TrainSpec(epochs=epochs, batch_size=32, shuffle=True, seed=SEED, engine="fit"),
        tracking=TrackingSpec(experiment=EXPERIMENT))


SCALE_XY = PreprocessSpec(scaler="standard", scale_target=True)
SCALE_X = PreprocessSpec(scaler="standard")
UNDEFINED = ("X_train, y_train (never defined in the document) synthesized with nanbench's `clean` "
             "generator: 256 rows, n_features={n} (the input_shape), y = X @ w + b + 0.1 noise, "
             "w, b ~ N(0, 1), seed 0; float32, y of shape (256, 1)")
MLP10 = ModelSpec(name="mlp", width=10, depth=1, activation="relu")
MLP64 = ModelSpec(name="mlp", width=64, depth=1, activation="relu")
MLP32 = ModelSpec(name="mlp", width=32, depth=1, activation="relu")
D000 = (dense(1, input_shape=(1,)),)
D003_1 = (dense(10, activation="relu", input_shape=(2,)), dense(1))
D003_2 = (dense(64, activation="relu", input_shape=(10,)), dense(1))
D003_3 = (dense(32, activation="relu", input_shape=(7,)), dense(1))
OUTLIER_DS = DatasetSpec(name="doc000_outlier")
CLEAN_DS = DatasetSpec(name="doc000_clean")
DOC003_DS = DatasetSpec(name="doc003_outlier")
# The lowest of 0.03, 0.1, 0.3 at which plain SGD (no clipping) turns the doc003 ex2 stand-in NaN
# (0.03 and 0.1 converge; measured with nanbench.studies.examples.in_nanbench's fit runs).
SGD_LR_003_2 = 0.3

EXAMPLES: tuple[Example, ...] = (
    Example("doc000-ex1", "doc000", 1, "doc000_outlier", D000, "adam", "mse", 10,
            _spec(OUTLIER_DS), '"Likely to produce NaN loss" (unscaled data with an outlier)', "nan"),
    Example("doc000-ex2", "doc000", 2, "doc000_outlier_scaled", D000, ("Adam", {"clipnorm": 1.0}),
            "mse", 10, _spec(OUTLIER_DS, preprocess=SCALE_XY, clipnorm=1.0),
            '"Less likely to produce NaN loss" (StandardScaler on X and y, Adam clipnorm=1.0) than example 1',
            "remedy", partner="doc000-ex1"),
    Example("doc000-ex3", "doc000", 3, "doc000_clean_scaled", D000, ("Adam", {"learning_rate": 0.001}),
            "mse", 10, _spec(CLEAN_DS, preprocess=SCALE_XY),
            '"Should train stably" with a "lower learning rate" (Adam, learning_rate=0.001)', "stable"),
    Example("doc003-ex1", "doc003", 1, "doc003_scaled", D003_1, "adam", "mse", 100,
            _spec(DOC003_DS, preprocess=SCALE_X, model=MLP10, epochs=100),
            '"The outlier is effectively mitigated by this pre-processing step" (StandardScaler on X)',
            "remedy", partner="doc003-ex1/raw"),
    Example("doc003-ex2", "doc003", 2, "clean10", D003_2, ("Adam", {"clipnorm": 1.0}), "mse", 100,
            _spec(SYNTH["clean10"], model=MLP64, clipnorm=1.0, epochs=100),
            '"clipnorm=1.0 limits the norm of the gradients to 1.0, preventing exploding gradients"',
            "remedy", partner="doc003-ex2/noclip", changes=(UNDEFINED.format(n=10),),
            names=("X_train", "y_train"), probe="clipping"),
    Example("doc003-ex3", "doc003", 3, "clean7", D003_3, "adam", "huber", 100,
            _spec(SYNTH["clean7"], model=MLP32, loss="huber", epochs=100),
            '"Replacing MSE with Huber loss can significantly improve training stability"',
            "remedy", partner="doc003-ex3/mse",
            changes=(UNDEFINED.format(n=7),
                     "loss='huber_loss' -> loss='huber' (Keras 3 has no 'huber_loss' identifier; 'huber' is "
                     "keras.losses.huber, delta=1.0, the function 'huber_loss' named in tf.keras 2)"),
            names=("X_train", "y_train")),
)


def _variant(base: Example, suffix: str, label: str, judge: str, *, partner: str | None = None,
             claim: str | None = None, extra: tuple[str, ...] = (), **fields) -> Example:
    spec_changes = fields.pop("spec_changes", {})
    return replace(base, key=f"{base.key}/{suffix}", base=base.key, label=label, judge=judge, probe=None,
                   partner=partner, claim=claim or base.claim, changes=base.changes + extra,
                   spec=base.spec.replace(**spec_changes), **fields)


_E = {e.key: e for e in EXAMPLES}
VARIANTS: tuple[Example, ...] = (
    # doc000: what does produce NaN on the outlier data, and which of the two remedies prevents it
    _variant(_E["doc000-ex1"], "sgd", "optimizer='sgd' (Keras default learning rate 0.01)", "nan",
             optimizer="sgd", extra=("optimizer 'adam' -> 'sgd'",),
             spec_changes={"optimizer": {"name": "sgd", "lr": 0.01}}),
    _variant(_E["doc000-ex1"], "sgd-20", "optimizer='sgd', epochs=20: where the inf turns NaN", "nan",
             optimizer="sgd", epochs=20, extra=("optimizer 'adam' -> 'sgd'", "epochs=10 -> 20"),
             spec_changes={"optimizer": {"name": "sgd", "lr": 0.01}, "train": {"epochs": 20}}),
    _variant(_E["doc000-ex1"], "sgd-clipnorm", "SGD(clipnorm=1.0), unscaled: clipping alone", "remedy",
             partner="doc000-ex1/sgd", optimizer=("SGD", {"clipnorm": 1.0}),
             claim='(example 2\'s remedies one at a time) clipping alone prevents the NaN of "sgd"',
             extra=("optimizer 'adam' -> SGD(clipnorm=1.0)",),
             spec_changes={"optimizer": {"name": "sgd", "lr": 0.01}, "clipping": {"kind": "clipnorm"}}),
    _variant(_E["doc000-ex2"], "sgd-noclip", "optimizer='sgd', scaled, no clipnorm: scaling alone", "remedy",
             partner="doc000-ex1/sgd", optimizer="sgd",
             claim='(example 2\'s remedies one at a time) scaling alone prevents the NaN of ex1 "sgd"',
             extra=("Adam(clipnorm=1.0) -> 'sgd'",),
             spec_changes={"optimizer": {"name": "sgd", "lr": 0.01}, "clipping": {"kind": "none"}}),
    _variant(_E["doc000-ex2"], "sgd", "SGD(clipnorm=1.0), scaled: both remedies", "remedy",
             partner="doc000-ex1/sgd", optimizer=("SGD", {"clipnorm": 1.0}),
             claim='both remedies of example 2 prevent the NaN that ex1 "sgd" shows',
             extra=("Adam(clipnorm=1.0) -> SGD(clipnorm=1.0)",),
             spec_changes={"optimizer": {"name": "sgd", "lr": 0.01}}),
    # doc003 ex1: the same model without the scaler, with Adam as written and with plain SGD
    _variant(_E["doc003-ex1"], "raw", "no StandardScaler (raw X)", "control", data="doc003_raw",
             claim="control: example 1 without its scaler", extra=("fit on X, not X_scaled",),
             spec_changes={"preprocess": {"scaler": "none"}}),
    _variant(_E["doc003-ex1"], "sgd-raw", "optimizer='sgd', no StandardScaler", "control", data="doc003_raw",
             optimizer="sgd", claim="control: example 1 with SGD, without its scaler",
             extra=("fit on X, not X_scaled", "optimizer 'adam' -> 'sgd'"),
             spec_changes={"preprocess": {"scaler": "none"}, "optimizer": {"name": "sgd", "lr": 0.01}}),
    _variant(_E["doc003-ex1"], "sgd", "optimizer='sgd' (scaled X as written)", "remedy",
             partner="doc003-ex1/sgd-raw", optimizer="sgd", extra=("optimizer 'adam' -> 'sgd'",),
             spec_changes={"optimizer": {"name": "sgd", "lr": 0.01}}),
    # doc003 ex2: clipping only matters where something explodes
    _variant(_E["doc003-ex2"], "noclip", "Adam() without clipnorm", "control", optimizer="adam",
             claim="control: example 2 without clipnorm", extra=("Adam(clipnorm=1.0) -> 'adam'",),
             spec_changes={"clipping": {"kind": "none"}}),
    _variant(_E["doc003-ex2"], "sgd-noclip", f"SGD(learning_rate={SGD_LR_003_2:g}) without clipnorm", "control",
             optimizer=("SGD", {"learning_rate": SGD_LR_003_2}), claim="control: plain SGD at a high learning rate",
             extra=(f"Adam(clipnorm=1.0) -> SGD(learning_rate={SGD_LR_003_2:g})",),
             spec_changes={"optimizer": {"name": "sgd", "lr": SGD_LR_003_2}, "clipping": {"kind": "none"}}),
    _variant(_E["doc003-ex2"], "sgd", f"SGD(learning_rate={SGD_LR_003_2:g}, clipnorm=1.0)", "remedy",
             partner="doc003-ex2/sgd-noclip",
             optimizer=("SGD", {"learning_rate": SGD_LR_003_2, "clipnorm": 1.0}),
             extra=(f"Adam(clipnorm=1.0) -> SGD(learning_rate={SGD_LR_003_2:g}, clipnorm=1.0)",),
             spec_changes={"optimizer": {"name": "sgd", "lr": SGD_LR_003_2}}),
    # doc003 ex3: Huber against MSE, on the clean stand-in and on data with outliers
    _variant(_E["doc003-ex3"], "mse", "loss='mse'", "control", loss="mse",
             claim="control: example 3 with MSE", extra=("loss 'huber' -> 'mse'",),
             spec_changes={"loss": {"name": "mse"}}),
    _variant(_E["doc003-ex3"], "outliers-sgd-mse", "outliers in X_train, y_train, optimizer='sgd', loss='mse'",
             "control", data="outliers7", optimizer="sgd", loss="mse",
             claim="control: MSE with SGD on data with outliers",
             extra=("X_train, y_train with 2% of rows scaled 100-1000x (nanbench `outliers`, seed 0)",
                    "optimizer 'adam' -> 'sgd'", "loss 'huber' -> 'mse'"),
             spec_changes={"dataset": {"name": "outliers", "outlier_fraction": 0.02, "outlier_scale_min": 100.0,
                                       "outlier_scale_max": 1000.0},
                           "optimizer": {"name": "sgd", "lr": 0.01}, "loss": {"name": "mse"}}),
    _variant(_E["doc003-ex3"], "outliers-sgd", "outliers in X_train, y_train, optimizer='sgd' (Huber)",
             "remedy", partner="doc003-ex3/outliers-sgd-mse", data="outliers7", optimizer="sgd",
             extra=("X_train, y_train with 2% of rows scaled 100-1000x (nanbench `outliers`, seed 0)",
                    "optimizer 'adam' -> 'sgd'"),
             spec_changes={"dataset": {"name": "outliers", "outlier_fraction": 0.02, "outlier_scale_min": 100.0,
                                       "outlier_scale_max": 1000.0},
                           "optimizer": {"name": "sgd", "lr": 0.01}}),
)
ALL: tuple[Example, ...] = EXAMPLES + VARIANTS
BY_KEY = {e.key: e for e in ALL}
