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
import sys
from dataclasses import dataclass, field
from typing import Any, Mapping

# the dataset kinds live in nanbench.dataspec; re-exported here, where the other groups are
from nanbench.dataspec import (DATASET_KINDS, TASKS, BundledLabels, ConstantFeatureData, DatasetSpec,
                               LabelledData, LinearData, NanInputsData, OutlierData, SeparableData,
                               SequenceData, UnscaledData, UserData, dataset_spec)
from nanbench.user_loss import check_loss_keys, compiled_class, resolve_loss
from nanbench.validate import (NOT_A_FACTOR, OMITTED_AT_DEFAULT, ConfigError, at_omitted_default, build as _build,
                               check_number, is_factor, keras_class, one_of, option_class, same_option)

SCALERS = ("none", "standard", "minmax", "robust", "manual_standard")
TARGET_SCALERS = ("same", *SCALERS[1:])  # same: the kind `scaler` names
OUTLIER_HANDLING = ("none", "remove", "clip", "winsorize")
NONFINITE_HANDLING = ("keep", "drop", "impute")
MODELS = ("linear", "mlp", "mlp_batchnorm", "lstm", "gru", "embedding", "keras", "builder")
USER_MODELS = ("keras", "builder")  # the user's own: a saved .keras file, or a function building one
SEQUENCE_MODELS = ("lstm", "gru", "embedding")  # they read X as [n, seq_len, features] (see SequenceData)
ACTIVATIONS = ("relu", "tanh", "sigmoid", "linear", "selu")
# model.final_activation / model.hidden_activation: Keras activations by name (the layers' own replaced)
PROBABILITIES = ("keras", "stable", "naive")  # model.probability
LAYER_ACTIVATIONS = ("linear", "relu", "selu", "elu", "tanh", "sigmoid", "softmax", "softplus", "exponential")
CLIPPING = ("none", "clipnorm", "clipvalue", "global_clipnorm")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
DEVICES = ("auto", "cpu", "gpu")
ENGINES = ("fit", "fused")  # train.engine may also be "auto": fit for one run, fused in a multirun


@dataclass(frozen=True)
class PreprocessSpec:
    scaler: str = "none"
    scale_target: bool = False
    outliers: str = "none"
    quantiles: tuple[float, float] = (0.01, 0.99)
    iqr_factor: float = 1.5
    # with scale_target: the scaler y gets ("same": the kind of `scaler`, as before this key existed;
    # a kind: that one, even with scaler none, which scales y alone)
    target_scaler: str = field(default="same", metadata=OMITTED_AT_DEFAULT)
    # rows holding NaN or inf (nanbench.data.preprocess.handle_nonfinite), first of all steps:
    # keep | drop (the row) | impute (X's column mean over finite values; a non-finite y drops its row)
    nonfinite: str = field(default="keep", metadata=OMITTED_AT_DEFAULT)


@dataclass(frozen=True)
class ModelSpec:
    """The architecture (factors), and what it takes from the dataset and loss (derived from
    those factors by from_config, so no factor of its own): output units and activation, and the
    shape of sequence data (nanbench.model.build_model reads them)."""

    name: str = "linear"
    width: int = 0
    depth: int = 0
    activation: str = "linear"
    dropout: float = 0.0
    weight_decay: float = 0.0
    units: int | None = None  # lstm, gru: recurrent units; embedding: embedding size (None: no such model)
    init_scale: float | None = None  # every kernel's initial values times this (None: Keras's own, 1)
    path: str | None = None      # keras: the .keras file (absolute)
    reinit: bool | None = None   # keras: None: seed 0 the saved weights, seed k >= 1 the initializers drawn (seed k);
                                 # True: every seed draws them; False: every seed the saved weights
    builder: str | None = None   # builder: package.module:function(input_shape, task) -> keras.Model
    digest: str | None = None    # keras, builder: SHA-256 of the file / the builder module's source (computed)
    # the output Dense layer's activation instead of its own (None: ours follow the task and the loss,
    # a user's model keeps its own); a user's model is rebuilt with it (nanbench.user_model.with_activations)
    final_activation: str | None = None
    hidden_activation: str | None = None  # keras, builder: every other Dense layer's activation (None: its own)
    # classification without logits: how the sigmoid / softmax probability is computed: keras (the output
    # Dense layer's own activation, from which Keras 3's cross-entropy recovers the logits), stable (by hand
    # in keras.ops after a linear output: sigmoid by its two one-sided forms, softmax of z - max z), naive
    # (by hand: 1 / (1 + exp(-z)), exp(z) / sum(exp(z))). The two by hand hide the logits from the loss.
    probability: str = field(default="keras", metadata=OMITTED_AT_DEFAULT)
    outputs: int = field(default=1, metadata=NOT_A_FACTOR)  # 1 for regression / binary, else classes
    output_activation: str = field(default="linear", metadata=NOT_A_FACTOR)  # linear | sigmoid | softmax
    seq_shape: tuple[int, int] | None = field(default=None, metadata=NOT_A_FACTOR)  # sequences' (steps, features)
    vocab: int = field(default=0, metadata=NOT_A_FACTOR)  # token sequences' distinct ids (embedding)
    task: str = field(default="regression", metadata=NOT_A_FACTOR)  # the dataset's (a builder is given it)


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
    from_logits: bool | None = None  # classification losses: the model outputs logits (None: no such key)
    builder: str | None = None   # loss=builder: package.module:function returning a Keras loss
    digest: str | None = None    # loss=builder: SHA-256 of the builder module's source (computed)
    compiled: str | None = field(default=None, metadata=OMITTED_AT_DEFAULT)  # loss=compiled: the saved loss (JSON)
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
    """Thresholds (ratios of final to initial loss on the training set, nanbench.forensics) of the outcomes."""

    diverge_factor: float = 10.0
    converge_ratio: float = 0.1
    converge_abs: float = 1e-3
    improve_fraction: float = 0.1
    # time to target: the first step at which the whole-data loss is <= target_ratio x L0
    # (nanbench.forensics.steps_to_target); it judges how fast a run trains, not its outcome.
    # Hashed only when not the default: runs recorded before it existed keep their hash.
    target_ratio: float = field(default=0.1, metadata=OMITTED_AT_DEFAULT)


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
        # the keys interned: one string per key, not per spec (a job keeps each of its runs' specs)
        return tuple((sys.intern(f"{group.name}.{f.name}"), getattr(node, f.name))
                     for group in dataclasses.fields(self) if group.name != "tracking"
                     for node in [getattr(self, group.name)]  # a flat dataclass of plain values
                     for f in dataclasses.fields(node) if is_factor(f) and getattr(node, f.name) is not None
                     and not at_omitted_default(f, getattr(node, f.name)))

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
        new = dataclasses.replace(self, **changed)
        return dataclasses.replace(new, model=derive_model(new.model, new.dataset, new.loss))


def _keras_option(values: dict, group: str, default: str, module: str, example: str) -> str:
    """The checked Keras class of an optimizer or loss group (its ``class`` key, popped from `values`); a
    config written in code without one gets the named option file's class."""
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
    one_of("preprocess.target_scaler", p.get("target_scaler", "same"), TARGET_SCALERS)
    one_of("preprocess.nonfinite", p.get("nonfinite", "keep"), NONFINITE_HANDLING)
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
    if m.get("name") in ("mlp", "mlp_batchnorm"):
        check_number("model.width", m.get("width", 0), low=1, integer=True)
        check_number("model.depth", m.get("depth", 0), low=1, integer=True)
    if m.get("name") in SEQUENCE_MODELS:
        check_number("model.units", m.get("units"), low=1, integer=True)
    for key in DERIVED_MODEL_KEYS:
        if key in m:
            raise ConfigError(f"model.{key}", "left out (it follows the dataset and the loss)", m[key])
    if "dropout" in m:
        m["dropout"] = float(check_number("model.dropout", m["dropout"], low=0, high=1, high_open=True))
    if "weight_decay" in m:
        m["weight_decay"] = float(check_number("model.weight_decay", m["weight_decay"], low=0))
    if m.get("init_scale") is not None:
        m["init_scale"] = float(check_number("model.init_scale", m["init_scale"], low=0, low_open=True))
    if m.get("final_activation") is not None:
        one_of("model.final_activation", m["final_activation"], LAYER_ACTIVATIONS)
    one_of("model.probability", m.get("probability", "keras"), PROBABILITIES)
    if m.get("hidden_activation") is not None:
        one_of("model.hidden_activation", m["hidden_activation"], LAYER_ACTIVATIONS)
        if m.get("name", "linear") not in USER_MODELS:
            raise ConfigError("model.hidden_activation", "left out for nanbench's own models (their hidden layers "
                              "take model.activation)", m["hidden_activation"])
    from nanbench import user_model
    user_model.check_model_keys(m)
    model = _build(ModelSpec, "model", m)

    o = dict(cfg.get("optimizer", {}))
    o["cls"] = _keras_option(o, "optimizer", "adam", "keras.optimizers", "keras.optimizers.Adam")
    o["lr"] = float(check_number("optimizer.lr", o.get("lr", 1e-3), low=0, low_open=True))
    o["momentum"] = float(check_number("optimizer.momentum", o.get("momentum", 0.0), low=0, high=1, high_open=True))
    optimizer = _build(OptimizerSpec, "optimizer", o)

    c = dict(cfg.get("clipping", {}))
    one_of("clipping.kind", c.get("kind", "none"), CLIPPING)
    c["threshold"] = float(check_number("clipping.threshold", c.get("threshold", 1.0), low=0, low_open=True))
    clipping = _build(ClippingSpec, "clipping", c)

    lo = dict(cfg.get("loss", {}))  # auto, compiled: a saved model's own compiled loss (else mse)
    lo = resolve_loss(lo, model) if lo.get("name") in ("auto", "compiled") else lo
    lo["cls"] = _keras_option(lo, "loss", "mse", "keras.losses", "keras.losses.Huber")
    lo["delta"] = float(check_number("loss.delta", lo.get("delta", 1.0), low=0, low_open=True))
    if lo.get("from_logits") is not None and not isinstance(lo["from_logits"], bool):
        raise ConfigError("loss.from_logits", "true or false", lo["from_logits"])
    check_loss_keys(lo, lo["cls"] == USER_LOSS)
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
    if "target_ratio" in oc:
        check_number("outcome.target_ratio", oc["target_ratio"], low=0, high=1, low_open=True, high_open=True)
    outcome = _build(OutcomeSpec, "outcome", oc)

    tr = dict(cfg.get("tracking", {}))
    if "uri" in tr and (not isinstance(tr["uri"], str) or not tr["uri"]):
        raise ConfigError("tracking.uri", "an MLflow tracking URI (sqlite:///PATH or http(s)://HOST)",
                          tr.get("uri"))
    tracking = _build(TrackingSpec, "tracking", tr)

    check_fit(dataset, preprocess, model, loss)
    if model.name == "keras" and train.precision != "float32":
        raise ConfigError("train.precision", "float32 for model=keras (a saved model keeps the dtypes it was "
                          "saved with; model=builder builds under the run's precision)", train.precision)
    return RunSpec(dataset=dataset, preprocess=preprocess, model=derive_model(model, dataset, loss),
                   optimizer=optimizer, clipping=clipping, loss=loss, train=train, outcome=outcome,
                   tracking=tracking)


USER_LOSS = "nanbench.losses.Builder"  # loss=builder: the user's own loss, for any task


DERIVED_MODEL_KEYS = ("outputs", "output_activation", "seq_shape", "vocab", "task")
# loss classes that take labels (the rest are regression losses); those in PROBABILITY_LOSSES take
# probabilities only (no from_logits)
PROBABILITY_LOSSES = frozenset({"nanbench.losses.LogLossNaive"})
CLASSIFICATION_LOSSES = PROBABILITY_LOSSES | {"nanbench.losses.CrossEntropy", *(
    f"keras.losses.{name}" for name in ("BinaryCrossentropy", "BinaryFocalCrossentropy", "CategoricalCrossentropy",
                                        "CategoricalFocalCrossentropy", "SparseCategoricalCrossentropy",
                                        "Hinge", "SquaredHinge", "CategoricalHinge"))}


def check_fit(dataset: DatasetSpec, preprocess: PreprocessSpec, model: ModelSpec, loss: LossSpec) -> None:
    """A model, loss or preprocessing that does not fit the data is a one-line ConfigError (an LSTM on a
    table, cross-entropy on a regression target, scaled labels). MSE and other losses that compare values
    take a multiclass target one-hot (nanbench.model.build_loss); loss=builder takes any task."""
    task, where = dataset.problem, f"the {dataset.problem} dataset {dataset.name}"
    if model.name in SEQUENCE_MODELS and dataset.seq_shape is None:
        raise ConfigError("model.name", f"linear, mlp or mlp_batchnorm for {where} ({', '.join(SEQUENCE_MODELS)} "
                          "take dataset=sequences)", model.name)
    if model.name == "embedding" and not dataset.vocab:
        raise ConfigError("model.name", f"one of linear, mlp, mlp_batchnorm, lstm, gru for {where} of real values "
                          "(embedding takes token ids: dataset.tokens >= 2, e.g. dataset=token_sequences)", model.name)
    labels = (compiled_class(loss.compiled) if loss.compiled else loss.keras_class()) in CLASSIFICATION_LOSSES
    if task == "regression" and labels:
        raise ConfigError("loss.name", f"a regression loss (mse, mae, huber, rmse, msle) for {where}", loss.name)
    if model.probability != "keras" and (task == "regression" or loss.from_logits or model.name in USER_MODELS
                                         or model.final_activation is not None):
        raise ConfigError("model.probability", f"keras for {where} with loss {loss.name}"
                          f"{' from logits' if loss.from_logits else ''} (a probability by hand is for nanbench's "
                          "own models on classes, without from_logits or final_activation)", model.probability)
    if loss.from_logits and (not labels or loss.keras_class() in PROBABILITY_LOSSES):
        raise ConfigError("loss.from_logits", f"false for loss {loss.name} (it takes "
                          f"{'probabilities' if labels else 'no logits'})", loss.from_logits)
    if task != "regression" and preprocess.scale_target:
        raise ConfigError("preprocess.scale_target", f"false for {where} (its targets are labels)", True)
    if dataset.vocab and (preprocess.scaler, preprocess.outliers) != ("none", "none"):
        key = "preprocess.scaler" if preprocess.scaler != "none" else "preprocess.outliers"
        raise ConfigError(key, f"none for {where} of token ids (ids are no measurements)",
                          preprocess.scaler if preprocess.scaler != "none" else preprocess.outliers)


def derive_model(model: ModelSpec, dataset: DatasetSpec, loss: LossSpec) -> ModelSpec:
    """The model's output follows the task (1 unit for regression and binary, one per class for
    multiclass) and the loss (logits when from_logits, else sigmoid / softmax; linear for
    regression); sequence models get the data's (steps, features) and token count."""
    task = dataset.problem
    activation = ("linear" if task == "regression" or loss.from_logits
                  else "sigmoid" if task == "binary" else "softmax")
    sequential = model.name in SEQUENCE_MODELS
    outputs = (dataset.classes if task == "multiclass" else getattr(dataset, "n_targets", 1) if task == "regression"
               else 1)
    return dataclasses.replace(model, outputs=outputs,
                               output_activation=activation, seq_shape=dataset.seq_shape if sequential else None,
                               vocab=dataset.vocab if model.name == "embedding" else 0, task=task)


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
