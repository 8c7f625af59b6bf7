"""The dataset generators: one function per generator name, each taking its knobs' dataclass
(nanbench.spec.DATASET_KINDS, same keys) and returning raw float64 arrays, y as a column.

A new dataset made by an existing generator is one YAML file under conf/dataset/ naming it
(``generator: outliers`` plus knobs); a new generator is a function here and its knobs'
dataclass in nanbench.spec. Generated sets are seeded by ``dataset.seed`` only, so the data of a
run never depends on the training seed.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from nanbench.data.documents import DOC000_CLEAN, DOC000_OUTLIER, DOC003_DATA
from nanbench.spec import (BundledLabels, ConstantFeatureData, DatasetSpec, LabelledData, LinearData,
                           NanInputsData, OutlierData, SeparableData, SequenceData, UnscaledData, UserData)


def _linear_problem(spec: DatasetSpec) -> tuple[np.ndarray, np.ndarray, np.random.Generator]:
    """X ~ N(0, 1); y = X @ w + b + noise, with w ~ N(0, 1) and b ~ N(0, 1)."""
    rng = np.random.default_rng(spec.seed)
    X = rng.standard_normal((spec.n_samples, spec.n_features))
    w = rng.standard_normal(spec.n_features)
    b = rng.standard_normal()
    y = X @ w + b + spec.noise * rng.standard_normal(spec.n_samples)
    return X, y, rng


def _pick_rows(rng: np.random.Generator, n: int, fraction: float) -> np.ndarray:
    """Row indices for a fraction of n rows: at least one whenever the fraction is positive."""
    k = 0 if fraction == 0 else max(1, int(round(fraction * n)))
    return np.sort(rng.choice(n, size=min(k, n), replace=False))


def clean(spec: LinearData):
    X, y, _ = _linear_problem(spec)
    return X, y


def outliers(spec: OutlierData):
    X, y, rng = _linear_problem(spec)
    rows = _pick_rows(rng, len(X), spec.outlier_fraction)
    # each outlier row is scaled by one factor drawn log-uniformly from [min, max]
    factors = np.exp(rng.uniform(np.log(spec.outlier_scale_min), np.log(spec.outlier_scale_max),
                                 size=len(rows)))
    X[rows] *= factors[:, None]
    y[rows] *= factors
    return X, y


def unscaled(spec: UnscaledData):
    X, y, _ = _linear_problem(spec)
    # y stays a function of the unit-scale features, so the optimal weights span the
    # inverse range: a badly conditioned problem, as with raw real-world features.
    X = X * np.logspace(np.log10(spec.scale_min), np.log10(spec.scale_max), spec.n_features)
    return X, y + spec.target_offset


def nan_inputs(spec: NanInputsData):
    X, y, rng = _linear_problem(spec)
    rows = _pick_rows(rng, len(X), spec.nan_fraction)
    X[rows, rng.integers(0, X.shape[1], size=len(rows))] = np.nan
    return X, y


def diabetes(spec: DatasetSpec):
    from sklearn.datasets import load_diabetes
    return load_diabetes(return_X_y=True, scaled=False)


def constant_feature(spec: ConstantFeatureData):
    """The clean problem with column `constant_column` set to `constant_value` before y is made
    (its weight folds into the intercept): a zero-variance column, whose standard deviation is
    exactly 0 (the default value 1.0 has an exact mean), beside columns that carry the signal."""
    rng = np.random.default_rng(spec.seed)
    X = rng.standard_normal((spec.n_samples, spec.n_features))
    X[:, spec.constant_column % spec.n_features] = spec.constant_value
    y = X @ rng.standard_normal(spec.n_features) + rng.standard_normal() + spec.noise * rng.standard_normal(spec.n_samples)
    return X, y


def breast_cancer(spec: BundledLabels):
    """scikit-learn's bundled breast cancer set: 569 rows, 30 raw features, labels 0/1."""
    from sklearn.datasets import load_breast_cancer
    return load_breast_cancer(return_X_y=True)


def digits(spec: BundledLabels):
    """scikit-learn's bundled 8x8 digits: 1797 rows, 64 pixel intensities 0..16, labels 0..9."""
    from sklearn.datasets import load_digits
    return load_digits(return_X_y=True)


def separable(spec: SeparableData):
    """Two classes split by a random hyperplane through the origin, each point pushed `margin`
    further from it along its normal: linearly separable, so a logistic model's loss keeps falling
    as its weights (and logits) grow without bound."""
    rng = np.random.default_rng(spec.seed)
    X = rng.standard_normal((spec.n_samples, spec.n_features))
    normal = rng.standard_normal(spec.n_features)
    normal /= np.linalg.norm(normal)
    side = np.where(X @ normal >= 0, 1.0, -1.0)
    X += (spec.margin * side)[:, None] * normal
    return X, (side > 0).astype(np.float64)


def sequences(spec: SequenceData):
    """`n_samples` sequences of `seq_len` steps, stored flat as [n, seq_len * features] (step-major,
    nanbench's Data is 2-D; the sequence models reshape it back). Real-valued steps are N(0, 1)
    features and the target is the sum over steps of their projection on a random direction;
    with `tokens` >= 2 each step is one token id in [0, tokens) and the target is the sum of a
    random value per token. `target: classification` bins that sum into `n_classes` classes of
    equal frequency (by its quantiles)."""
    rng = np.random.default_rng(spec.seed)
    if spec.vocab:
        X = rng.integers(0, spec.vocab, size=(spec.n_samples, spec.seq_len)).astype(np.float64)
        score = rng.standard_normal(spec.vocab)[X.astype(int)].sum(axis=1)
    else:
        steps = rng.standard_normal((spec.n_samples, spec.seq_len, spec.n_features))
        score = (steps @ rng.standard_normal(spec.n_features)).sum(axis=1)
        X = steps.reshape(spec.n_samples, -1)
    score = score + spec.noise * rng.standard_normal(spec.n_samples)
    if spec.target != "classification":
        return X, score
    edges = np.quantile(score, np.linspace(0, 1, spec.n_classes + 1)[1:-1])
    return X, np.searchsorted(edges, score, side="right").astype(np.float64)


def user_file(spec: UserData):
    """A user's CSV or NPZ file (nanbench.user_data), a classification target as labels
    0 .. classes - 1 (each distinct value's rank)."""
    from nanbench import user_data
    X, y = user_data.read(spec.kind, spec.path, spec.target)
    return X, (y if spec.problem == "regression" else user_data.labels(y))


def _label_noise(spec: LabelledData, y: np.ndarray) -> np.ndarray:
    """``out_of_range``: a fraction of the rows (at least one) get the label n_classes, a class no
    output unit stands for: TensorFlow's sparse cross-entropy raises on it on the CPU."""
    if spec.label_noise != "out_of_range":
        return y
    rng = np.random.default_rng([getattr(spec, "seed", None) or 0, 21])  # apart from the data's own draws
    y = y.copy()
    y[_pick_rows(rng, len(y), spec.label_noise_fraction or 0.0)] = spec.classes
    return y


GENERATORS: dict[str, Callable] = {
    "clean": clean, "outliers": outliers, "nan_inputs": nan_inputs, "unscaled": unscaled,
    "doc000_outlier": lambda spec: DOC000_OUTLIER, "doc000_clean": lambda spec: DOC000_CLEAN,
    "doc003_outlier": lambda spec: (DOC003_DATA[:, :2], DOC003_DATA[:, 2]),
    "diabetes": diabetes, "breast_cancer": breast_cancer, "digits": digits, "separable": separable,
    "constant_feature": constant_feature, "sequences": sequences, "csv": user_file, "npz": user_file,
}


def make_dataset(spec: DatasetSpec) -> tuple[np.ndarray, np.ndarray]:
    """The raw (unpreprocessed) arrays of a dataset as float64, y of shape (n, 1) (a user's
    regression file: (n, k), one column per target); a classification set's y holds its labels
    (then its label noise, if any)."""
    X, y = GENERATORS[spec.kind](spec)
    X, y = np.asarray(X, dtype=np.float64), np.asarray(y, dtype=np.float64)
    y = y.reshape(len(X), -1) if y.ndim == 2 else y.reshape(-1, 1)
    if isinstance(spec, LabelledData) and spec.problem != "regression":
        y = _label_noise(spec, y)
    return X, y
