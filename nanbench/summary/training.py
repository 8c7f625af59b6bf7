"""How runs trained and how fast: whether a change makes its runs train, the range of learning
rates that train, the opening picture's shares along the learning rate, time to target and speed.

Pure pandas on the frame nanbench.tracking.reader builds and the flags of
nanbench.summary.analysis.outcome_flags: nothing here reads MLflow, draws or formats. A run
*trains* when it is finite and its whole-data loss fell by at least outcome.improve_fraction
(nanbench.forensics.trained).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from nanbench.summary.analysis import LR, NONFINITE, outcome_flags


# ---------------------------------------------------------------------------------------------
# Training: does a change make runs train, and over which learning rates

TRAINS_SHARE = 0.5  # a change "trains" where at least this share of its runs trained


def trains(k: int, n: int) -> bool:
    """Whether k trained runs of n count as a change that trains (TRAINS_SHARE of them); a change
    whose runs stay finite but mostly do not train avoids NaN, it does not fix the model."""
    return n > 0 and k / n >= TRAINS_SHARE


def lr_range_decades(lrs, trained) -> float | None:
    """The range of learning rates, in decades, at which runs train: log10 of the largest over
    the smallest grid learning rate at which most runs (TRAINS_SHARE) trained; 0 for one such
    rate, None for none. One number per remedy level, compared between levels as Wortsman et al.
    (2023, "Small-scale proxies for large-scale Transformer training instabilities", section 3)
    compare learning-rate sensitivity: a remedy that widens the range makes the learning rate
    less critical, one that only narrows the failures to a range that does not train fixes
    nothing. The grid's own span bounds it (a range can be no wider than the grid)."""
    frame = pd.DataFrame({"lr": np.asarray(lrs, dtype=float), "k": np.asarray(trained, dtype=int)})
    per_lr = frame.groupby("lr")["k"].agg(k="sum", n="size")
    good = [lr for lr, k, n in zip(per_lr.index, per_lr["k"], per_lr["n"]) if lr > 0 and trains(k, n)]
    if not good:
        return None
    return float(np.log10(max(good) / min(good)))


def shares_along_lr(runs: pd.DataFrame, flags: pd.DataFrame, panels: str = "optimizer.name",
                    lines: str = "clipping") -> pd.DataFrame:
    """Per panel level x line level x learning rate (numeric order): runs that ran, and the share
    of them non-finite and the share that trained. The summary's opening picture, over the runs
    it is given (the caller sets the explained ones aside). A column that is absent or constant
    is one panel / one line ("all")."""
    ran = flags["ran"].astype(bool).to_numpy()
    frame = pd.DataFrame({
        "panel": runs[panels].astype(str).to_numpy() if panels in runs else "all",
        "line": runs[lines].astype(str).to_numpy() if lines in runs else "all",
        "lr": pd.to_numeric(runs[LR], errors="coerce").to_numpy(dtype=float),
        "nonfinite": flags["nonfinite"].to_numpy(int), "trained": flags["trained"].to_numpy(int)})[ran]
    order = {c: list(dict.fromkeys(runs[c].sort_values().astype(str))) if c in runs else ["all"]
             for c in (panels, lines)}
    g = frame.groupby(["panel", "line", "lr"], sort=False)
    out = g[["nonfinite", "trained"]].mean().rename(columns=lambda c: f"{c}_share")
    out.insert(0, "runs", g.size())
    out = out.reset_index()
    out["_p"] = out["panel"].map(order[panels].index)
    out["_l"] = out["line"].map(order[lines].index)
    return out.sort_values(["_p", "_l", "lr"]).drop(columns=["_p", "_l"]).reset_index(drop=True)


def median_or_none(values) -> float | None:
    """The median of the finite values (None when there are none)."""
    v = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=float)
    v = v[np.isfinite(v)]
    return float(np.median(v)) if v.size else None


# ---------------------------------------------------------------------------------------------
# Speed


SPEED_COLUMNS = ("steps_per_s", "samples_per_s", "steps_to_target", "seconds_to_target", "first_step_s", "wall_s")


def speed_table(runs: pd.DataFrame, by: list[str], flags: pd.DataFrame | None = None) -> pd.DataFrame:
    """Medians of steady-state steps/s and samples/s, first-step (compile) and wall seconds, per
    level of each column in `by`, over the runs that ran, with how many trained and their median
    steps and seconds to target (over the runs that reached it). The first-step median is over the
    runs that paid one (`traced`): the fused engine traces once per job and later runs of the
    job reuse the graph, with first_step_s = 0."""
    flags = outcome_flags(runs) if flags is None else flags
    data = runs.loc[flags["ran"].astype(bool)].copy()
    data["traced"] = (data["first_step_s"] > 0).astype(int)
    data["trained"] = flags.loc[data.index, "trained"].astype(int)
    for column in ("steps_to_target", "seconds_to_target"):  # runs recorded before time to target: n/a
        data[column] = pd.to_numeric(data[column], errors="coerce") if column in data else np.nan
    data["first_step_s"] = data["first_step_s"].where(data["first_step_s"] > 0)
    columns = list(SPEED_COLUMNS)
    parts = []
    for f in by:
        g = data.groupby(f, observed=True)
        t = g[columns].median()
        t.insert(0, "runs", g.size())
        t.insert(1, "traced", g["traced"].sum())
        t.insert(2, "trained", g["trained"].sum())
        parts.append(t.reset_index().rename(columns={f: "level"}).assign(factor=f))
    if not parts:
        t = data[columns].median().to_frame().T
        t.insert(0, "runs", len(data))
        t.insert(1, "traced", int(data["traced"].sum()))
        t.insert(2, "trained", int(data["trained"].sum()))
        parts.append(t.assign(factor="all", level=""))
    out = pd.concat(parts, ignore_index=True)
    return out[["factor", "level", "runs", "traced", "trained", *SPEED_COLUMNS]]


def steps_to_nonfinite(runs: pd.DataFrame, rows: str, cols: str | None) -> pd.DataFrame:
    """Median step of the first non-finite value, and how many runs, by rows (x cols)."""
    data = runs.loc[runs["outcome"].isin(NONFINITE)]
    by = [rows] + ([cols] if cols else [])
    g = data.groupby(by, observed=True)["first_nonfinite_step"]
    return pd.DataFrame({"median": g.median(), "min": g.min(), "max": g.max(), "runs": g.size()})
