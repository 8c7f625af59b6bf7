"""Preprocessing: non-finite rows kept, dropped or imputed (``preprocess.nonfinite``), then
outlier handling (scikit-learn-free NumPy and SciPy's winsorization), then scikit-learn's scalers
fitted on X (and y when ``preprocess.scale_target``, of ``preprocess.target_scaler``'s kind), or
the hand-written standardization people write instead (``manual_standard``). Labels (a classification set's y)
are never scaled, clipped or winsorized."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nanbench.spec import PreprocessSpec


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


def handle_nonfinite(X: np.ndarray, y: np.ndarray, how: str) -> tuple[np.ndarray, np.ndarray, int]:
    """Rows holding NaN or inf, handled first of all steps (a scaler fitted on them, or an outlier
    rule, would carry them on): ``keep`` leaves them; ``drop`` removes every row with a non-finite
    value in X or y; ``impute`` replaces each non-finite X value by its column's mean over the
    finite values of the rows it keeps (0 for a column with none), after dropping only the rows
    whose y is not finite (a target made up would be trained on as if measured). Returns X, y
    and the rows removed."""
    if how == "keep":
        return X, y, 0
    X, y = np.asarray(X, dtype=np.float64), np.asarray(y, dtype=np.float64)
    keep = np.isfinite(y).all(axis=1)
    if how == "drop":
        keep &= np.isfinite(X).all(axis=1)
        return X[keep], y[keep], int((~keep).sum())
    X, y = X[keep], y[keep]  # impute: the means are the kept rows' own
    finite = np.isfinite(X)
    counts = finite.sum(axis=0)
    means = np.where(counts > 0, np.where(finite, X, 0.0).sum(axis=0) / np.maximum(counts, 1), 0.0)
    return np.where(finite, X, means), y, int((~keep).sum())


def _handle_outliers(X: np.ndarray, y: np.ndarray, spec: PreprocessSpec,
                     labels: bool = False) -> tuple[np.ndarray, np.ndarray, int]:
    """Apply spec.outliers column-wise to X and y together (NaNs are left as they are); with
    `labels`, y is no measurement: X alone is handled, and y only loses the rows removed."""
    if spec.outliers == "none":
        return X, y, 0
    Z = X if labels else np.hstack([X, y])
    keep = None
    if spec.outliers == "remove":
        q1, q3 = np.nanpercentile(Z, [25, 75], axis=0)
        k = spec.iqr_factor * (q3 - q1)
        with np.errstate(invalid="ignore"):
            outside = (Z < q1 - k) | (Z > q3 + k)
        keep = ~outside.any(axis=1)
        Z = Z[keep]
    elif spec.outliers == "clip":
        low, high = np.nanquantile(Z, spec.quantiles, axis=0)
        Z = np.clip(Z, low, high)
    else:  # winsorize: replace the tails by the data's own values at those quantiles
        from scipy.stats.mstats import winsorize
        limits = (spec.quantiles[0], 1.0 - spec.quantiles[1])
        Z = np.column_stack([np.asarray(winsorize(np.ma.masked_invalid(col), limits=limits,
                                                  nan_policy="omit").filled(np.nan))
                             for col in Z.T])
    removed = 0 if keep is None else int((~keep).sum())
    if labels:
        return Z, y if keep is None else y[keep], removed
    return Z[:, :X.shape[1]], Z[:, X.shape[1]:], removed


class ManualStandard:
    """The standardization people write by hand: ``(x - mean) / std`` per column, no epsilon. A
    zero-variance column gives 0 / 0 = NaN (scikit-learn's StandardScaler leaves it at 0), which
    is the point: nanbench measures what that hand-written line does."""

    def fit_transform(self, X: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return (X - X.mean(axis=0)) / X.std(axis=0)


def _scaler(kind: str):
    if kind == "manual_standard":
        return ManualStandard()
    from sklearn import preprocessing
    return {"standard": preprocessing.StandardScaler, "minmax": preprocessing.MinMaxScaler,
            "robust": preprocessing.RobustScaler}[kind]()


def preprocess(X: np.ndarray, y: np.ndarray, spec: PreprocessSpec, *, labels: bool = False) -> Data:
    """Non-finite rows, then outlier handling, then scaling fitted on X, and on y when scale_target
    (with target_scaler's kind, "same": scaler's). With `labels` (a classification set), y holds
    class labels and is left as it is."""
    X, y, dropped = handle_nonfinite(X, y, spec.nonfinite)
    X, y, removed = _handle_outliers(X, y, spec, labels)
    if spec.scaler != "none":
        X = _scaler(spec.scaler).fit_transform(X)  # scikit-learn ignores NaN when fitting
    target = spec.scaler if spec.target_scaler == "same" else spec.target_scaler
    if spec.scale_target and target != "none":
        y = _scaler(target).fit_transform(y)
    return Data(X=np.ascontiguousarray(X, dtype=np.float32),
                y=np.ascontiguousarray(y, dtype=np.float32), rows_removed=dropped + removed)


