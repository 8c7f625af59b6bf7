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
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

DATASETS = (
    "clean", "outliers", "unscaled", "nan_inputs",
    "doc000_outlier", "doc000_clean", "doc003_outlier", "diabetes",
)
SCALERS = ("none", "standard", "minmax", "robust")
OUTLIER_HANDLING = ("none", "remove", "clip", "winsorize")
MODELS = ("linear", "mlp")
ACTIVATIONS = ("relu", "tanh", "sigmoid", "linear")
OPTIMIZERS = ("sgd", "momentum", "adam", "rmsprop")
CLIPPING = ("none", "clipnorm", "clipvalue", "global_clipnorm")
LOSSES = ("mse", "mae", "huber")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
DEVICES = ("auto", "cpu", "gpu")
ENGINES = ("fit", "fused")  # train.engine may also be "auto": fit for one run, fused in a multirun


class ConfigError(ValueError):
    """A configuration value is not allowed. The message is one line naming the key."""

    def __init__(self, key: str, allowed: str, got: Any):
        self.key = key
        super().__init__(f"{key} must be {allowed} (got {got!r})")

    def __reduce__(self):  # picklable, message and all (a sweep's store set-up may run in a child)
        return _config_error, (self.key, str(self))


def _config_error(key: str, message: str) -> ConfigError:
    exc = ConfigError.__new__(ConfigError)
    ValueError.__init__(exc, message)
    exc.key = key
    return exc


def _one_of(key: str, value: Any, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ConfigError(key, "one of " + ", ".join(allowed), value)
    return value


def _number(key: str, value: Any, *, low: float | None = None, high: float | None = None,
            low_open: bool = False, high_open: bool = False, integer: bool = False) -> Any:
    """Check that `value` is a finite number within the given bounds; return it."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (
            integer and not isinstance(value, int)):
        raise ConfigError(key, "an integer" if integer else "a number", value)
    if not math.isfinite(value):
        raise ConfigError(key, "a finite number", value)
    if low is not None and (value < low or (low_open and value == low)):
        raise ConfigError(key, f"{'>' if low_open else '>='} {low:g}", value)
    if high is not None and (value > high or (high_open and value == high)):
        raise ConfigError(key, f"{'<' if high_open else '<='} {high:g}", value)
    return value


def _fraction(key: str, value: Any) -> float:
    return float(_number(key, value, low=0.0, high=1.0))


@dataclass(frozen=True)
class DatasetSpec:
    """Which data. Knobs that a dataset does not take stay None and are not logged."""

    name: str
    n_samples: int | None = None
    n_features: int | None = None
    noise: float | None = None
    seed: int | None = None
    outlier_fraction: float | None = None
    outlier_scale_min: float | None = None
    outlier_scale_max: float | None = None
    nan_fraction: float | None = None
    scale_min: float | None = None
    scale_max: float | None = None
    target_offset: float | None = None


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
    name: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.0


@dataclass(frozen=True)
class ClippingSpec:
    kind: str = "none"
    threshold: float = 1.0


@dataclass(frozen=True)
class LossSpec:
    name: str = "mse"
    delta: float = 1.0


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
                     for f in dataclasses.fields(node) if getattr(node, f.name) is not None)

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
                   for name, values in groups.items()}
        return dataclasses.replace(self, **changed)


def _build(cls, key: str, values: Mapping[str, Any]):
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"{key}.{unknown[0]}", "one of the keys " + ", ".join(sorted(names)),
                          values[unknown[0]])
    return cls(**values)


def from_config(cfg: Mapping[str, Any], *, multirun: bool = False) -> RunSpec:
    """Validate a composed config (DictConfig or plain dict) into a :class:`RunSpec`.

    ``train.engine: auto`` becomes ``fused`` in a multirun's jobs (many runs share its traced
    graphs) and ``fit`` for a single run (Keras's own loop, the reference)."""
    from omegaconf import DictConfig, OmegaConf
    if isinstance(cfg, DictConfig):  # resolve interpolations; Hydra's own node is not ours to read
        cfg = {key: OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node
               for key, node in cfg.items_ex(resolve=False) if key != "hydra"}
    cfg = dict(cfg)

    d = dict(cfg["dataset"])
    _one_of("dataset.name", d.get("name"), DATASETS)
    if "n_samples" in d:
        _number("dataset.n_samples", d["n_samples"], low=1, integer=True)
    if "n_features" in d:
        _number("dataset.n_features", d["n_features"], low=1, integer=True)
    if "noise" in d:
        _number("dataset.noise", d["noise"], low=0)
    if "seed" in d:
        _number("dataset.seed", d["seed"], low=0, integer=True)
    for key in ("outlier_fraction", "nan_fraction"):
        if key in d:
            d[key] = _fraction(f"dataset.{key}", d[key])
    for key in ("outlier_scale_min", "outlier_scale_max", "scale_min", "scale_max"):
        if key in d:
            _number(f"dataset.{key}", d[key], low=0, low_open=True)
    dataset = _build(DatasetSpec, "dataset", d)

    p = dict(cfg.get("preprocess", {}))
    _one_of("preprocess.scaler", p.get("scaler", "none"), SCALERS)
    _one_of("preprocess.outliers", p.get("outliers", "none"), OUTLIER_HANDLING)
    if "quantiles" in p:
        q = p["quantiles"]
        if (not isinstance(q, (list, tuple)) or len(q) != 2
                or not all(isinstance(v, (int, float)) and 0 <= v <= 1 for v in q) or q[0] >= q[1]):
            raise ConfigError("preprocess.quantiles", "two fractions [low, high] in [0, 1] with low < high", q)
        p["quantiles"] = (float(q[0]), float(q[1]))
    if "iqr_factor" in p:
        p["iqr_factor"] = float(_number("preprocess.iqr_factor", p["iqr_factor"], low=0, low_open=True))
    preprocess = _build(PreprocessSpec, "preprocess", p)

    m = dict(cfg.get("model", {}))
    _one_of("model.name", m.get("name", "linear"), MODELS)
    _one_of("model.activation", m.get("activation", "linear"), ACTIVATIONS)
    if m.get("name") == "mlp":
        _number("model.width", m.get("width", 0), low=1, integer=True)
        _number("model.depth", m.get("depth", 0), low=1, integer=True)
    if "dropout" in m:
        m["dropout"] = float(_number("model.dropout", m["dropout"], low=0, high=1, high_open=True))
    if "weight_decay" in m:
        m["weight_decay"] = float(_number("model.weight_decay", m["weight_decay"], low=0))
    model = _build(ModelSpec, "model", m)

    o = dict(cfg.get("optimizer", {}))
    _one_of("optimizer.name", o.get("name", "adam"), OPTIMIZERS)
    o["lr"] = float(_number("optimizer.lr", o.get("lr", 1e-3), low=0, low_open=True))
    o["momentum"] = float(_number("optimizer.momentum", o.get("momentum", 0.0), low=0, high=1,
                                  high_open=True))
    optimizer = _build(OptimizerSpec, "optimizer", o)

    c = dict(cfg.get("clipping", {}))
    _one_of("clipping.kind", c.get("kind", "none"), CLIPPING)
    c["threshold"] = float(_number("clipping.threshold", c.get("threshold", 1.0), low=0, low_open=True))
    clipping = _build(ClippingSpec, "clipping", c)

    lo = dict(cfg.get("loss", {}))
    _one_of("loss.name", lo.get("name", "mse"), LOSSES)
    lo["delta"] = float(_number("loss.delta", lo.get("delta", 1.0), low=0, low_open=True))
    loss = _build(LossSpec, "loss", lo)

    t = dict(cfg.get("train", {}))
    _number("train.epochs", t.get("epochs", 1), low=1, integer=True)
    if t.get("steps") is not None:
        _number("train.steps", t["steps"], low=1, integer=True)
    _number("train.batch_size", t.get("batch_size", 32), low=1, integer=True)
    _number("train.seed", t.get("seed", 0), low=0, integer=True)
    _one_of("train.precision", t.get("precision", "float32"), PRECISIONS)
    _one_of("train.device", t.get("device", "auto"), DEVICES)
    if t.get("engine", "fit") == "auto":
        t["engine"] = "fused" if multirun else "fit"
    _one_of("train.engine", t.get("engine", "fit"), ("auto", *ENGINES))
    train = _build(TrainSpec, "train", t)

    oc = dict(cfg.get("outcome", {}))
    if "diverge_factor" in oc:
        _number("outcome.diverge_factor", oc["diverge_factor"], low=1, low_open=True)
    if "converge_ratio" in oc:
        _number("outcome.converge_ratio", oc["converge_ratio"], low=0, high=1, low_open=True)
    if "converge_abs" in oc:
        _number("outcome.converge_abs", oc["converge_abs"], low=0)
    if "improve_fraction" in oc:
        _number("outcome.improve_fraction", oc["improve_fraction"], low=0, high=1, low_open=True, high_open=True)
    outcome = _build(OutcomeSpec, "outcome", oc)

    tr = dict(cfg.get("tracking", {}))
    if "uri" in tr and (not isinstance(tr["uri"], str) or not tr["uri"]):
        raise ConfigError("tracking.uri", "an MLflow tracking URI (sqlite:///PATH or http(s)://HOST)",
                          tr.get("uri"))
    tracking = _build(TrackingSpec, "tracking", tr)

    return RunSpec(dataset=dataset, preprocess=preprocess, model=model, optimizer=optimizer,
                   clipping=clipping, loss=loss, train=train, outcome=outcome, tracking=tracking)
