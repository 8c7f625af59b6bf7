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
from nanbench.spec import DatasetSpec, LinearData, NanInputsData, OutlierData, UnscaledData


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


GENERATORS: dict[str, Callable] = {
    "clean": clean, "outliers": outliers, "nan_inputs": nan_inputs, "unscaled": unscaled,
    "doc000_outlier": lambda spec: DOC000_OUTLIER, "doc000_clean": lambda spec: DOC000_CLEAN,
    "doc003_outlier": lambda spec: (DOC003_DATA[:, :2], DOC003_DATA[:, 2]),
    "diabetes": diabetes,
}


def make_dataset(spec: DatasetSpec) -> tuple[np.ndarray, np.ndarray]:
    """The raw (unpreprocessed) arrays of a dataset as float64, y of shape (n, 1)."""
    X, y = GENERATORS[spec.kind](spec)
    return np.asarray(X, dtype=np.float64), np.asarray(y, dtype=np.float64).reshape(-1, 1)
