"""The dataset group's typed specs: one frozen dataclass of knobs per generator (DATASET_KINDS,
keyed like nanbench.data.generators' functions), each dataset's task (regression, binary,
multiclass), and the checks behind their one-line errors. nanbench.spec builds a run's
DatasetSpec with :func:`dataset_spec` and re-exports these names.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping

from nanbench.validate import NOT_A_FACTOR, ConfigError, build, check_fields, check_name, one_of, same_option

TASKS = ("regression", "binary", "multiclass")
LABEL_NOISE = ("none", "out_of_range")
TARGETS = ("regression", "classification")
POSITIVE = {"low": 0, "low_open": True}


@dataclass(frozen=True)
class DatasetSpec:
    """Which data: a dataset option's name and the generator that makes it (nanbench.data's
    GENERATORS, keyed like DATASET_KINDS). This class is the kind without knobs (the documents'
    arrays, scikit-learn's bundled diabetes set); each generator with knobs has its own subclass."""

    name: str
    generator: str = field(default="", metadata=NOT_A_FACTOR)  # "" : the generator named `name`
    # regression | binary | multiclass, set by the option file; None: regression (the datasets that
    # came before tasks were declared, whose hashes stay as they were)
    task: str | None = None

    TASKS: ClassVar[tuple[str, ...]] = ("regression",)  # the tasks this kind's data can have

    @property
    def kind(self) -> str:
        """The generator that makes this dataset (a key of DATASET_KINDS)."""
        return self.generator or self.name

    @property
    def problem(self) -> str:
        """The dataset's task: regression, binary or multiclass."""
        return self.task or "regression"

    @property
    def classes(self) -> int | None:
        """Classes of a classification dataset (labels 0 .. classes - 1); None for regression."""
        return None if self.problem == "regression" else 2

    @property
    def seq_shape(self) -> tuple[int, int] | None:
        """(seq_len, features per step) of sequence data, stored flat as [n, seq_len * features]."""
        return None

    @property
    def vocab(self) -> int:
        """Distinct integer tokens of token sequences (0: real-valued data)."""
        return 0


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


@dataclass(frozen=True)
class ConstantFeatureData(LinearData):
    """The clean problem with one column set to a constant (zero variance): a scaler that divides
    by the column's standard deviation without an epsilon turns it into 0/0 = NaN."""

    constant_column: int | None = field(default=None, metadata={"low": 0, "integer": True})
    constant_value: float | None = None


@dataclass(frozen=True)
class LabelledData(DatasetSpec):
    """A classification dataset: labels 0 .. n_classes - 1 in y's one column, and label noise
    (``out_of_range``: a fraction of the labels set to n_classes, which no output unit has)."""

    TASKS: ClassVar[tuple[str, ...]] = ("binary", "multiclass")
    label_noise: str | None = None
    label_noise_fraction: float | None = field(default=None, metadata={"fraction": True})


BUNDLED_CLASSES = {"breast_cancer": 2, "digits": 10}  # scikit-learn's bundled classification sets


@dataclass(frozen=True)
class BundledLabels(LabelledData):
    """scikit-learn's bundled classification sets; ``seed`` picks the rows given label noise."""

    seed: int | None = field(default=None, metadata={"low": 0, "integer": True})

    @property
    def classes(self) -> int | None:
        return BUNDLED_CLASSES[self.kind]


@dataclass(frozen=True)
class SeparableData(LabelledData):
    """Two linearly separable classes, every point at least ``margin`` from the separating plane:
    the cross-entropy's infimum is at infinite weights, so the logits grow without bound."""

    TASKS: ClassVar[tuple[str, ...]] = ("binary",)
    n_samples: int | None = field(default=None, metadata={"low": 1, "integer": True})
    n_features: int | None = field(default=None, metadata={"low": 1, "integer": True})
    margin: float | None = field(default=None, metadata={"low": 0})
    seed: int | None = field(default=None, metadata={"low": 0, "integer": True})


@dataclass(frozen=True)
class SequenceData(LabelledData):
    """Generated sequences of ``seq_len`` steps: real-valued (``n_features`` per step) or, with
    ``tokens`` >= 2, one integer token id per step. The target is their running sum (of the
    features' projection, or of a value per token); ``target: classification`` bins it into
    ``n_classes`` equally frequent classes, and the task follows (binary or multiclass)."""

    TASKS: ClassVar[tuple[str, ...]] = TASKS
    n_samples: int | None = field(default=None, metadata={"low": 1, "integer": True})
    seq_len: int | None = field(default=None, metadata={"low": 1, "integer": True})
    n_features: int | None = field(default=None, metadata={"low": 1, "integer": True})
    target: str | None = None
    n_classes: int | None = field(default=None, metadata={"low": 2, "integer": True})
    tokens: int | None = field(default=None, metadata={"low": 0, "integer": True})
    noise: float | None = field(default=None, metadata={"low": 0})
    seed: int | None = field(default=None, metadata={"low": 0, "integer": True})

    @property
    def classes(self) -> int | None:
        return None if self.problem == "regression" else self.n_classes

    @property
    def seq_shape(self) -> tuple[int, int] | None:
        return (self.seq_len, 1 if self.vocab else self.n_features)

    @property
    def vocab(self) -> int:
        return self.tokens if self.tokens and self.tokens >= 2 else 0

    def derived_task(self) -> str:
        """The task its target makes: regression, or binary / multiclass by n_classes."""
        if self.target == "classification":
            return "binary" if self.n_classes == 2 else "multiclass"
        return "regression"


@dataclass(frozen=True)
class UserData(DatasetSpec):
    """A user's own file: ``dataset=csv`` (``path``, ``target``: the target column, the others
    features) or ``dataset=npz`` (``path``: arrays X and y), read by nanbench.user_data. The task
    is ``task`` or, left out, read from the target (nanbench.user_data.infer_task). ``digest`` is
    the file's SHA-256, computed here: what the file holds is part of the run's identity (its
    config hash), so two different files at one path never share a resumed result."""

    TASKS: ClassVar[tuple[str, ...]] = TASKS
    path: str | None = None
    target: str | tuple[str, ...] | None = None  # csv: the target column, or the columns of one-hot labels
    digest: str | None = None  # computed from the file (a value given must be the file's)
    n_classes: int | None = field(default=None, metadata=NOT_A_FACTOR)  # distinct target values (classification)
    n_targets: int = field(default=1, metadata=NOT_A_FACTOR)  # regression: y's columns (one output each)

    @property
    def classes(self) -> int | None:
        return None if self.problem == "regression" else self.n_classes


# generator name -> the dataclass of its knobs (nanbench.data.generators has a function per name)
DATASET_KINDS: dict[str, type[DatasetSpec]] = {
    "clean": LinearData, "outliers": OutlierData, "nan_inputs": NanInputsData, "unscaled": UnscaledData,
    "doc000_outlier": DatasetSpec, "doc000_clean": DatasetSpec, "doc003_outlier": DatasetSpec,
    "diabetes": DatasetSpec, "breast_cancer": BundledLabels, "digits": BundledLabels,
    "separable": SeparableData, "constant_feature": ConstantFeatureData, "sequences": SequenceData,
    "csv": UserData, "npz": UserData,
}


def dataset_spec(values: Mapping[str, Any]) -> DatasetSpec:
    """The dataset group of a config (``name``, ``generator`` and the generator's knobs), checked."""
    d = dict(values)
    if not isinstance(d.get("name"), str) or not d.get("name"):
        raise ConfigError("dataset.name", "the dataset option's name", d.get("name"))
    check_name("dataset.name", d["name"])  # diagnose's report folder is named after it
    generator = d.get("generator") or d["name"]
    if generator not in DATASET_KINDS:
        raise ConfigError("dataset.generator" if d.get("generator") else "dataset.name",
                          "one of the generators " + ", ".join(DATASET_KINDS), generator)
    same_option("dataset", d["name"], generator, key="generator")  # dataset=clean dataset.name=outliers
    cls = DATASET_KINDS[generator]
    spec = build(cls, "dataset", check_fields("dataset", cls, d))
    return _check_task(spec)


def _check_task(spec: DatasetSpec) -> DatasetSpec:
    """The dataset's declared task, checked against what its data can be; sequences derive
    theirs from ``target`` (and n_classes) when the option leaves it out."""
    where = f"dataset {spec.name}"
    if isinstance(spec, UserData):
        return _read_user_data(spec)
    if isinstance(spec, SequenceData):
        one_of("dataset.target", spec.target or "regression", TARGETS)
        if spec.target == "classification" and spec.n_classes is None:
            raise ConfigError("dataset.n_classes", f"an integer >= 2 for {where} with target classification", None)
        if spec.vocab and spec.n_features not in (None, 1):
            raise ConfigError("dataset.n_features", f"1 for {where} with tokens (one token id per step)",
                              spec.n_features)
        derived = spec.derived_task()
        if spec.task not in (None, derived):
            raise ConfigError("dataset.task", f"{derived} for {where} with target {spec.target}", spec.task)
        spec = dataclasses.replace(spec, task=derived)
    if spec.task is not None:
        one_of("dataset.task", spec.task, TASKS)
        if spec.task not in spec.TASKS:
            raise ConfigError("dataset.task", f"one of {', '.join(spec.TASKS)} for {where}", spec.task)
    if spec.kind in BUNDLED_CLASSES and spec.task != ("binary" if spec.classes == 2 else "multiclass"):
        raise ConfigError("dataset.task", f"{'binary' if spec.classes == 2 else 'multiclass'} for {where} "
                          f"({spec.classes} classes)", spec.task)
    if isinstance(spec, LabelledData) and spec.label_noise is not None:
        one_of("dataset.label_noise", spec.label_noise, LABEL_NOISE)
        if spec.label_noise != "none" and spec.problem == "regression":
            raise ConfigError("dataset.label_noise", f"none for {where} (a regression target has no labels)",
                              spec.label_noise)
    return spec




def _read_user_data(spec: UserData) -> UserData:
    """A user's file checked now (exists, reads, numeric, the target there), its digest taken and
    its task read from the target unless set (nanbench.user_data)."""
    from nanbench import user_data
    path = user_data.absolute("dataset.path", spec.path, (), "a CSV file" if spec.kind == "csv" else "an .npz file")
    digest = user_data.digest(path)
    if spec.digest not in (None, digest):
        raise ConfigError("dataset.digest", f"left out (nanbench takes it from the file: {digest})", spec.digest)
    target = tuple(spec.target) if isinstance(spec.target, (list, tuple)) else spec.target  # one-hot columns
    _, y = user_data.read(spec.kind, path, target)
    task = spec.task if spec.task is not None else user_data.infer_task(y)
    one_of("dataset.task", task, TASKS)
    classes = user_data.check_task(task, y)
    targets = int(y.shape[1]) if task == "regression" else 1  # a multi-output regression: one output per column
    return dataclasses.replace(spec, path=path, digest=digest, target=target, task=task, n_classes=classes,
                               n_targets=targets)
