"""The typed, frozen run specification.

A composed Hydra config is turned into one :class:`RunSpec` as early as possible; everything
downstream (data, model, engine, tracking) takes the spec, never the raw config. Validation
happens here, so that bad input fails with one line naming the key and what is allowed, before
any data is made or any MLflow run is created.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Mapping

from nanbench.validate import (NOT_A_FACTOR, ConfigError, check_fields, check_number,
                               is_factor, keras_class, one_of, option_class, same_option)

SCALERS = ("none", "standard", "minmax", "robust")
OUTLIER_HANDLING = ("none", "remove", "clip", "winsorize")
MODELS = ("linear", "mlp")
ACTIVATIONS = ("relu", "tanh", "sigmoid", "linear")
CLIPPING = ("none", "clipnorm", "clipvalue", "global_clipnorm")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
DEVICES = ("auto", "cpu", "gpu")
ENGINES = ("fit", "fused")  # train.engine may also be "auto": fit for one run, fused in a multirun


POSITIVE = {"low": 0, "low_open": True}


@dataclass(frozen=True)
class DatasetSpec:
    """Which data: a dataset option's name and the generator that makes it (nanbench.data's
    GENERATORS, keyed like DATASET_KINDS). This class is the kind without knobs (the documents'
    arrays, scikit-learn's bundled sets); each generator with knobs has its own subclass."""

    name: str
    generator: str = field(default="", metadata=NOT_A_FACTOR)  # "" : the generator named `name`

    @property
    def kind(self) -> str:
        """The generator that makes this dataset (a key of DATASET_KINDS)."""
        return self.generator or self.name


@dataclass(frozen=True)
class LinearData(DatasetSpec):
    """A linear target plus Gaussian noise over standard-normal features (nanbench.data.generators).
    Knobs come from the option file (conf/dataset/*.yaml, their one home); a knob left out stays
    None and is no factor of the run."""

    n_samples: int | None = field(default=None, metadata={"low": 1, "integer": True})
    n_features: int | None = field(default=None, metadata={"low": 1, "integer": True})
    noise: float | None = field(default=None, metadata={"low": 0})
    seed: int | None = field(default=None, metadata={"low": 0, "integer": True})


@dataclass(frozen=True)
class OutlierData(LinearData):
    outlier_fraction: float | None = field(default=None, metadata={"fraction": True})
    outlier_scale_min: float | None = field(default=None, metadata=POSITIVE)
    outlier_scale_max: float | None = field(default=None, metadata=POSITIVE)


@dataclass(frozen=True)
class NanInputsData(LinearData):
    nan_fraction: float | None = field(default=None, metadata={"fraction": True})


@dataclass(frozen=True)
class UnscaledData(LinearData):
    scale_min: float | None = field(default=None, metadata=POSITIVE)
    scale_max: float | None = field(default=None, metadata=POSITIVE)
    target_offset: float | None = None


# generator name -> the dataclass of its knobs (nanbench.data.generators has a function per name)
DATASET_KINDS: dict[str, type[DatasetSpec]] = {
    "clean": LinearData, "outliers": OutlierData, "nan_inputs": NanInputsData, "unscaled": UnscaledData,
    "doc000_outlier": DatasetSpec, "doc000_clean": DatasetSpec, "doc003_outlier": DatasetSpec,
    "diabetes": DatasetSpec,
}


def dataset_spec(values: Mapping[str, Any]) -> DatasetSpec:
    """The dataset group of a config (``name``, ``generator`` and the generator's knobs), checked."""
    d = dict(values)
    if not isinstance(d.get("name"), str) or not d.get("name"):
        raise ConfigError("dataset.name", "the dataset option's name", d.get("name"))
    generator = d.get("generator") or d["name"]
    if generator not in DATASET_KINDS:
        raise ConfigError("dataset.generator" if d.get("generator") else "dataset.name",
                          "one of the generators " + ", ".join(DATASET_KINDS), generator)
    cls = DATASET_KINDS[generator]
    return _build(cls, "dataset", check_fields("dataset", cls, d))


@dataclass(frozen=True)
class PreprocessSpec:
    scaler: str = "none"
    scale_target: bool = False
    outliers: str = "none"
    quantiles: tuple[float, float] = (0.01, 0.99)
    iqr_factor: float = 1.5


@dataclass(frozen=True)
class ModelSpec:
    name: str = "linear"
    width: int = 0
    depth: int = 0
    activation: str = "linear"
    dropout: float = 0.0
    weight_decay: float = 0.0


@dataclass(frozen=True)
class OptimizerSpec:
    """A Keras optimizer: ``cls`` (the option file's ``class``) is built with ``learning_rate=lr``,
    ``momentum`` where the class takes it, and Keras's clipping argument (nanbench.model)."""

    name: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.0
    cls: str = field(default="", metadata=NOT_A_FACTOR)  # "": the class conf/optimizer/<name>.yaml names

    def keras_class(self) -> str:
        return self.cls or option_class("optimizer", self.name) or ""


@dataclass(frozen=True)
class ClippingSpec:
    kind: str = "none"
    threshold: float = 1.0


@dataclass(frozen=True)
class LossSpec:
    """A Keras loss: ``cls`` (the option file's ``class``), given ``delta`` where it takes one."""

    name: str = "mse"
    delta: float = 1.0
    cls: str = field(default="", metadata=NOT_A_FACTOR)  # "": the class conf/loss/<name>.yaml names

    def keras_class(self) -> str:
        return self.cls or option_class("loss", self.name) or ""


@dataclass(frozen=True)
class TrainSpec:
    epochs: int = 20
    steps: int | None = None   # optimizer steps; when set, epochs = ceil(steps / steps per epoch)
    batch_size: int = 32
    shuffle: bool = False
    seed: int = 0
    precision: str = "float32"
    device: str = "auto"
    engine: str = "fit"

    def epochs_for(self, n_samples: int) -> int:
        """Epochs to run on `n_samples` rows: `epochs`, or with `steps` set as many epochs as it
        takes to make at least that many optimizer steps, so that every dataset gets the same
        number of updates whatever its row count."""
        if self.steps is None:
            return self.epochs
        per_epoch = -(-max(1, n_samples) // self.batch_size)
        return -(-self.steps // per_epoch)


@dataclass(frozen=True)
class OutcomeSpec:
    """Thresholds that turn a finite run into converged / improving / stalled / diverged, as
    ratios of the final to the initial loss over the whole training set (nanbench.forensics)."""

    diverge_factor: float = 10.0
    converge_ratio: float = 0.1
    converge_abs: float = 1e-3
    improve_fraction: float = 0.1


@dataclass(frozen=True)
class TrackingSpec:
    uri: str = "sqlite:///results/mlflow.db"
    experiment: str = "nanbench"
    artifacts: str | None = None
    log_steps: bool = False


@dataclass(frozen=True)
class RunSpec:
    """Everything that defines one training run."""

    dataset: DatasetSpec
    preprocess: PreprocessSpec = field(default_factory=PreprocessSpec)
    model: ModelSpec = field(default_factory=ModelSpec)
    optimizer: OptimizerSpec = field(default_factory=OptimizerSpec)
    clipping: ClippingSpec = field(default_factory=ClippingSpec)
    loss: LossSpec = field(default_factory=LossSpec)
    train: TrainSpec = field(default_factory=TrainSpec)
    outcome: OutcomeSpec = field(default_factory=OutcomeSpec)
    tracking: TrackingSpec = field(default_factory=TrackingSpec)

    @functools.cached_property
    def _factor_items(self) -> tuple[tuple[str, Any], ...]:
        # once per spec: it is frozen, and a sweep asks for its factors and hash several times a run
        return tuple((f"{group.name}.{f.name}", getattr(node, f.name))
                     for group in dataclasses.fields(self) if group.name != "tracking"
                     for node in [getattr(self, group.name)]  # a flat dataclass of plain values
                     for f in dataclasses.fields(node) if is_factor(f) and getattr(node, f.name) is not None)

    def factors(self) -> dict[str, Any]:
        """The run's factors as flat dotted keys (tracking excluded): MLflow params."""
        return {key: list(value) if isinstance(value, tuple) else value for key, value in self._factor_items}

    @functools.cached_property
    def _hash(self) -> str:
        return hashlib.sha256(json.dumps(self.factors(), sort_keys=True, default=str).encode()).hexdigest()[:16]

    def config_hash(self) -> str:
        """A stable hash of every factor: equal configurations share it across machines."""
        return self._hash

    def replace(self, **groups: Mapping[str, Any]) -> "RunSpec":
        """A copy with some keys of some groups changed, e.g. ``replace(optimizer={"lr": 0.1})``."""
        changed = {name: dataclasses.replace(getattr(self, name), **values)
                   for name, values in groups.items() if name != "dataset"}
        if "dataset" in groups:  # its kind may change with it (clean -> outliers): rebuilt and checked
            old = self.dataset
            values = {f.name: getattr(old, f.name) for f in dataclasses.fields(old)
                      if getattr(old, f.name) is not None}
            if "name" in groups["dataset"] and "generator" not in groups["dataset"] and old.generator in ("", old.name):
                values.pop("generator", None)
            changed["dataset"] = dataset_spec({**values, **groups["dataset"]})
        return dataclasses.replace(self, **changed)


def _build(cls, key: str, values: Mapping[str, Any]):
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"{key}.{unknown[0]}", "one of the keys " + ", ".join(sorted(names)),
                          values[unknown[0]])
    return cls(**values)


def _keras_option(values: dict, group: str, default: str, module: str, example: str) -> str:
    """The checked Keras class of an optimizer or loss group (its ``class`` key, popped from
    `values`); a config written in code without one gets the named option file's class."""
    name = values.get("name", default)
    if not isinstance(name, str):
        raise ConfigError(f"{group}.name", f"the {group} option's name", name)
    cls = values.pop("class", None) or option_class(group, name)
    if cls is None:
        raise ConfigError(f"{group}.class", f"a Keras {group} class, e.g. {example} (each conf/{group}/*.yaml "
                          "names one; a name without an option file needs it)", None)
    cls = keras_class(f"{group}.class", cls, module)
    same_option(group, name, cls)
    return cls


def from_config(cfg: Mapping[str, Any], *, multirun: bool = False) -> RunSpec:
    """Validate a composed config (DictConfig or plain dict) into a :class:`RunSpec`.

    ``train.engine: auto`` becomes ``fused`` in a multirun's jobs (many runs share its traced
    graphs) and ``fit`` for a single run (Keras's own loop, the reference)."""
    from omegaconf import DictConfig, OmegaConf
    if isinstance(cfg, DictConfig):  # resolve interpolations; Hydra's own node is not ours to read
        cfg = {key: OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node
               for key, node in cfg.items_ex(resolve=False) if key != "hydra"}
    cfg = dict(cfg)

    dataset = dataset_spec(cfg["dataset"])

    p = dict(cfg.get("preprocess", {}))
    one_of("preprocess.scaler", p.get("scaler", "none"), SCALERS)
    one_of("preprocess.outliers", p.get("outliers", "none"), OUTLIER_HANDLING)
    if "quantiles" in p:
        q = p["quantiles"]
        if (not isinstance(q, (list, tuple)) or len(q) != 2
                or not all(isinstance(v, (int, float)) and 0 <= v <= 1 for v in q) or q[0] >= q[1]):
            raise ConfigError("preprocess.quantiles", "two fractions [low, high] in [0, 1] with low < high", q)
        p["quantiles"] = (float(q[0]), float(q[1]))
    if "iqr_factor" in p:
        p["iqr_factor"] = float(check_number("preprocess.iqr_factor", p["iqr_factor"], low=0, low_open=True))
    preprocess = _build(PreprocessSpec, "preprocess", p)

    m = dict(cfg.get("model", {}))
    one_of("model.name", m.get("name", "linear"), MODELS)
    one_of("model.activation", m.get("activation", "linear"), ACTIVATIONS)
    if m.get("name") == "mlp":
        check_number("model.width", m.get("width", 0), low=1, integer=True)
        check_number("model.depth", m.get("depth", 0), low=1, integer=True)
    if "dropout" in m:
        m["dropout"] = float(check_number("model.dropout", m["dropout"], low=0, high=1, high_open=True))
    if "weight_decay" in m:
        m["weight_decay"] = float(check_number("model.weight_decay", m["weight_decay"], low=0))
    model = _build(ModelSpec, "model", m)

    o = dict(cfg.get("optimizer", {}))
    o["cls"] = _keras_option(o, "optimizer", "adam", "keras.optimizers", "keras.optimizers.Adam")
    o["lr"] = float(check_number("optimizer.lr", o.get("lr", 1e-3), low=0, low_open=True))
    o["momentum"] = float(check_number("optimizer.momentum", o.get("momentum", 0.0), low=0, high=1,
                                  high_open=True))
    optimizer = _build(OptimizerSpec, "optimizer", o)

    c = dict(cfg.get("clipping", {}))
    one_of("clipping.kind", c.get("kind", "none"), CLIPPING)
    c["threshold"] = float(check_number("clipping.threshold", c.get("threshold", 1.0), low=0, low_open=True))
    clipping = _build(ClippingSpec, "clipping", c)

    lo = dict(cfg.get("loss", {}))
    lo["cls"] = _keras_option(lo, "loss", "mse", "keras.losses", "keras.losses.Huber")
    lo["delta"] = float(check_number("loss.delta", lo.get("delta", 1.0), low=0, low_open=True))
    loss = _build(LossSpec, "loss", lo)

    t = dict(cfg.get("train", {}))
    check_number("train.epochs", t.get("epochs", 1), low=1, integer=True)
    if t.get("steps") is not None:
        check_number("train.steps", t["steps"], low=1, integer=True)
    check_number("train.batch_size", t.get("batch_size", 32), low=1, integer=True)
    check_number("train.seed", t.get("seed", 0), low=0, integer=True)
    one_of("train.precision", t.get("precision", "float32"), PRECISIONS)
    one_of("train.device", t.get("device", "auto"), DEVICES)
    if t.get("engine", "fit") == "auto":
        t["engine"] = "fused" if multirun else "fit"
    one_of("train.engine", t.get("engine", "fit"), ("auto", *ENGINES))
    train = _build(TrainSpec, "train", t)

    oc = dict(cfg.get("outcome", {}))
    if "diverge_factor" in oc:
        check_number("outcome.diverge_factor", oc["diverge_factor"], low=1, low_open=True)
    if "converge_ratio" in oc:
        check_number("outcome.converge_ratio", oc["converge_ratio"], low=0, high=1, low_open=True)
    if "converge_abs" in oc:
        check_number("outcome.converge_abs", oc["converge_abs"], low=0)
    if "improve_fraction" in oc:
        check_number("outcome.improve_fraction", oc["improve_fraction"], low=0, high=1, low_open=True, high_open=True)
    outcome = _build(OutcomeSpec, "outcome", oc)

    tr = dict(cfg.get("tracking", {}))
    if "uri" in tr and (not isinstance(tr["uri"], str) or not tr["uri"]):
        raise ConfigError("tracking.uri", "an MLflow tracking URI (sqlite:///PATH or http(s)://HOST)",
                          tr.get("uri"))
    tracking = _build(TrackingSpec, "tracking", tr)

    return RunSpec(dataset=dataset, preprocess=preprocess, model=model, optimizer=optimizer,
                   clipping=clipping, loss=loss, train=train, outcome=outcome, tracking=tracking)


def factor_keys() -> list[str]:
    """Every factor key RunSpec.factors() can produce, in its order (dataset.name first; the
    dataset's knobs over every kind, in DATASET_KINDS's order)."""
    import typing
    hints = typing.get_type_hints(RunSpec)
    keys: list[str] = []
    for group in dataclasses.fields(RunSpec):
        if group.name == "tracking":
            continue
        classes = dict.fromkeys(DATASET_KINDS.values()) if group.name == "dataset" else [hints[group.name]]
        for cls in classes:
            keys += [f"{group.name}.{f.name}" for f in dataclasses.fields(cls)
                     if is_factor(f) and f"{group.name}.{f.name}" not in keys]
    return keys
