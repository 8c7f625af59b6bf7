"""Data: the datasets nanbench trains on, and their preprocessing.

Every dataset is a pair ``(X, y)`` of float64 arrays, X of shape (n, d) and y of shape (n, 1).
Generated sets are seeded by ``dataset.seed`` only, so the data of a run never depends on the
training seed. Preprocessing uses scikit-learn's scalers and SciPy's winsorization.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from nanbench.spec import DatasetSpec, PreprocessSpec

# The documents' arrays, exactly as written there.
DOC000_OUTLIER = (np.array([[1], [2], [3], [1000]]), np.array([2, 4, 6, 2000]))
DOC000_CLEAN = (np.array([[1], [2], [3], [4]]), np.array([2, 4, 6, 8]))
DOC003_DATA = np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9], [1000, 1000, 1000]])


@dataclass(frozen=True)
class Data:
    """The arrays a run trains on (float32, y as a column) and what preprocessing did."""

    X: np.ndarray
    y: np.ndarray
    rows_removed: int = 0

    @property
    def n_samples(self) -> int:
        return self.X.shape[0]

    @property
    def n_features(self) -> int:
        return self.X.shape[1]


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


def make_dataset(spec: DatasetSpec) -> tuple[np.ndarray, np.ndarray]:
    """Build the raw (unpreprocessed) arrays of a dataset as float64, y of shape (n, 1)."""
    name = spec.name
    if name == "doc000_outlier":
        X, y = DOC000_OUTLIER
    elif name == "doc000_clean":
        X, y = DOC000_CLEAN
    elif name == "doc003_outlier":
        X, y = DOC003_DATA[:, :2], DOC003_DATA[:, 2]
    elif name == "diabetes":
        from sklearn.datasets import load_diabetes
        X, y = load_diabetes(return_X_y=True, scaled=False)
    elif name == "clean":
        X, y, _ = _linear_problem(spec)
    elif name == "outliers":
        X, y, rng = _linear_problem(spec)
        rows = _pick_rows(rng, len(X), spec.outlier_fraction)
        # each outlier row is scaled by one factor drawn log-uniformly from [min, max]
        factors = np.exp(rng.uniform(np.log(spec.outlier_scale_min), np.log(spec.outlier_scale_max),
                                     size=len(rows)))
        X[rows] *= factors[:, None]
        y[rows] *= factors
    elif name == "unscaled":
        X, y, _ = _linear_problem(spec)
        # y stays a function of the unit-scale features, so the optimal weights span the
        # inverse range: a badly conditioned problem, as with raw real-world features.
        X = X * np.logspace(np.log10(spec.scale_min), np.log10(spec.scale_max), spec.n_features)
        y = y + spec.target_offset
    elif name == "nan_inputs":
        X, y, rng = _linear_problem(spec)
        rows = _pick_rows(rng, len(X), spec.nan_fraction)
        X[rows, rng.integers(0, X.shape[1], size=len(rows))] = np.nan
    else:  # pragma: no cover - spec validation rejects unknown names
        raise ValueError(f"unknown dataset {name!r}")
    return np.asarray(X, dtype=np.float64), np.asarray(y, dtype=np.float64).reshape(-1, 1)


def _handle_outliers(X: np.ndarray, y: np.ndarray, spec: PreprocessSpec) -> tuple[np.ndarray, np.ndarray, int]:
    """Apply spec.outliers column-wise to X and y together (NaNs are left as they are)."""
    if spec.outliers == "none":
        return X, y, 0
    Z = np.hstack([X, y])
    if spec.outliers == "remove":
        q1, q3 = np.nanpercentile(Z, [25, 75], axis=0)
        k = spec.iqr_factor * (q3 - q1)
        with np.errstate(invalid="ignore"):
            outside = (Z < q1 - k) | (Z > q3 + k)
        keep = ~outside.any(axis=1)
        Z = Z[keep]
        removed = int((~keep).sum())
    elif spec.outliers == "clip":
        low, high = np.nanquantile(Z, spec.quantiles, axis=0)
        Z = np.clip(Z, low, high)
        removed = 0
    else:  # winsorize: replace the tails by the data's own values at those quantiles
        from scipy.stats.mstats import winsorize
        limits = (spec.quantiles[0], 1.0 - spec.quantiles[1])
        Z = np.column_stack([np.asarray(winsorize(np.ma.masked_invalid(col), limits=limits,
                                                  nan_policy="omit").filled(np.nan))
                             for col in Z.T])
        removed = 0
    return Z[:, :-1], Z[:, -1:], removed


def _scaler(kind: str):
    from sklearn import preprocessing
    return {"standard": preprocessing.StandardScaler, "minmax": preprocessing.MinMaxScaler,
            "robust": preprocessing.RobustScaler}[kind]()


def preprocess(X: np.ndarray, y: np.ndarray, spec: PreprocessSpec) -> Data:
    """Outlier handling, then scikit-learn scaling fitted on X (and y when scale_target)."""
    X, y, removed = _handle_outliers(X, y, spec)
    if spec.scaler != "none":
        X = _scaler(spec.scaler).fit_transform(X)  # scikit-learn ignores NaN when fitting
        if spec.scale_target:
            y = _scaler(spec.scaler).fit_transform(y)
    return Data(X=np.ascontiguousarray(X, dtype=np.float32),
                y=np.ascontiguousarray(y, dtype=np.float32), rows_removed=removed)


@functools.lru_cache(maxsize=32)
def load(dataset: DatasetSpec, prep: PreprocessSpec) -> Data:
    """The arrays one run trains on. The data depend on the two specs only, so the runs of a sweep
    job (learning rates, seeds, ...) share one copy, made read-only so that no run can alter it."""
    X, y = make_dataset(dataset)
    data = preprocess(X, y, prep)
    data.X.setflags(write=False)
    data.y.setflags(write=False)
    return data
