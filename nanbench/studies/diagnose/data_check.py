"""What is wrong in the data, by name: the feature columns holding NaN or inf, the columns of zero
variance (standardising divides by their standard deviation, 0: NaN, as preprocess=manual_standard
does), the columns at the two ends of an extreme spread of scales, and the first rows holding a
non-finite value (X or y) with their count, so that a user can fix the data, not only scale it.

Read on the data as made (nanbench.data.make_dataset: the file as read, before any preprocessing).
Rows are counted from 0 in the file's order (a CSV's first row under its header is row 0). Pure
NumPy on the arrays, apart from :func:`check_spec` (which loads them and a CSV's header).
"""

from __future__ import annotations

import numpy as np

EXTREME_SCALE = 1e3  # largest / smallest column standard deviation at or above which the spread is named
FIRST_ROWS = 10      # rows listed (their count is given too)


def column_names(spec) -> list[str] | None:
    """A CSV's feature column names (its header without the target columns); an NPZ's of several
    inputs ``X0[0]``, ``X0[1]``, ..., ``X1[0]``, ... (the array, then the column); None otherwise."""
    if getattr(spec, "kind", None) == "npz" and getattr(spec, "path", None):
        from nanbench.user_data import input_arrays
        try:
            with np.load(spec.path, allow_pickle=False) as archive:
                arrays = input_arrays(list(archive.files))
                widths = [int(np.prod(archive[a].shape[1:])) for a in arrays] if len(arrays) > 1 else []
        except Exception:  # noqa: BLE001 - the runs themselves record why the file did not load
            return None
        return [f"{a}[{j}]" for a, w in zip(arrays, widths) for j in range(w)] or None
    if getattr(spec, "kind", None) != "csv" or not getattr(spec, "path", None):
        return None
    import pandas as pd
    targets = set(spec.target) if isinstance(spec.target, (list, tuple)) else {spec.target}
    try:
        return [str(c) for c in pd.read_csv(spec.path, nrows=0).columns if str(c) not in targets]
    except Exception:  # noqa: BLE001 - the runs themselves record why the file did not load
        return None


def check(X: np.ndarray, y: np.ndarray | None = None, names: list[str] | None = None) -> dict | None:
    """The problems of feature matrix `X` (rows x columns) and targets `y`, as the report and
    diagnosis.json list them; None when there are none. Columns are named by `names` (a CSV's
    header), else ``x0``, ``x1``, ... (their index)."""
    X = np.asarray(X, dtype=np.float64)
    X = X.reshape(len(X), -1)
    names = names if names is not None and len(names) == X.shape[1] else [f"x{j}" for j in range(X.shape[1])]
    finite = np.isfinite(X)
    bad_rows = ~finite.all(axis=1)
    if y is not None:
        bad_rows |= ~np.isfinite(np.asarray(y, dtype=np.float64).reshape(len(X), -1)).all(axis=1)
    nonfinite = {names[j]: int((~finite[:, j]).sum()) for j in np.flatnonzero(~finite.all(axis=0))}
    with np.errstate(invalid="ignore"):
        std = np.array([np.std(X[finite[:, j], j]) if finite[:, j].any() else np.nan for j in range(X.shape[1])])
    zero = [names[j] for j in np.flatnonzero(std == 0)]
    scaled = np.flatnonzero(np.isfinite(std) & (std > 0))
    ratio, ends = None, []
    if len(scaled) >= 2:
        hi, lo = scaled[np.argmax(std[scaled])], scaled[np.argmin(std[scaled])]
        ratio = float(std[hi] / std[lo])
        ends = [{"column": names[hi], "std": float(std[hi])}, {"column": names[lo], "std": float(std[lo])}]
    extreme = ratio is not None and ratio >= EXTREME_SCALE
    if not (nonfinite or zero or extreme or bad_rows.any()):
        return None
    rows = np.flatnonzero(bad_rows)
    return {"nonfinite_columns": nonfinite, "zero_variance_columns": zero,
            "scale_ratio": ratio if extreme else None, "extreme_scale_columns": ends if extreme else [],
            "nonfinite_rows": [int(i) for i in rows[:FIRST_ROWS]], "nonfinite_row_count": int(len(rows))}


def check_spec(spec) -> dict | None:
    """:func:`check` on a run's data as made (before preprocessing); None when it does not load."""
    from nanbench.data import make_dataset
    try:
        X, y = make_dataset(spec.dataset)
    except Exception:  # noqa: BLE001 - the runs themselves record why the data did not load
        return None
    return check(X, y, column_names(spec.dataset))


def lines(problems: dict | None) -> list[str]:
    """The problems in words, one line each (report and console)."""
    if not problems:
        return []
    out = []
    if problems["nonfinite_columns"]:
        out.append("columns with NaN or inf: " + ", ".join(f"{c} ({n} rows)"
                                                           for c, n in problems["nonfinite_columns"].items()))
    if problems["nonfinite_row_count"]:
        n, first = problems["nonfinite_row_count"], problems["nonfinite_rows"]
        out.append(f"{n} row(s) with NaN or inf (counted from 0), first: " + ", ".join(map(str, first))
                   + (", ..." if n > len(first) else ""))
    if problems["zero_variance_columns"]:
        out.append("columns of zero variance (standardising divides by 0): "
                   + ", ".join(problems["zero_variance_columns"]))
    if problems["scale_ratio"] is not None:
        hi, lo = problems["extreme_scale_columns"]
        out.append(f"column scales differ {problems['scale_ratio']:.3g}x: {hi['column']} (std {hi['std']:.3g}) "
                   f"vs {lo['column']} (std {lo['std']:.3g})")
    return out
