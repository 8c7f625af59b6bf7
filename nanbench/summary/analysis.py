"""The statistics of a sweep, computed from the frame nanbench.tracking.reader builds (one row per run).

Rates with Wilson intervals and differences of rates with Newcombe intervals, the roles of the
factors (a factor, or an attribute of another factor's levels), main effects, two-way interactions,
where non-finite values start and the largest stable learning rate of each configuration (how
runs trained and how fast: nanbench.summary.training).
Attribution (tree rules, forest importance) lives in nanbench.summary.attribution, the findings in
nanbench.summary.findings. Pure pandas: nothing here reads MLflow, draws or formats.

Counting conventions, used everywhere: a run is *non-finite* when its outcome is nan or inf;
rates are over the runs that ran (outcome error excluded: they say nothing about stability);
a rate with no run is NaN and stays NaN.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from nanbench.vocab import NONFINITE_OUTCOMES as NONFINITE
from nanbench.forensics import TRAINED_OUTCOMES
from nanbench.vocab import OUTCOMES, SOURCES
LR = "optimizer.lr"
REPEAT_FACTORS = ("train.seed",)  # repeats of one configuration, not a configuration of their own
# Two-way tables always shown (when both sides vary): (rows, columns).
INTERACTIONS = (("optimizer.lr", "optimizer.name"), ("preprocess", "dataset.name"),
                ("clipping", "optimizer.name"), ("optimizer.lr", "preprocess"))
# Where speed differs by construction; each is tabulated when it varies.
SPEED_BY = ("optimizer.name", "clipping", "model.name", "model.activation", "train.precision",
            "device", "train.engine", "train.batch_size")
PICTURE_CHANGE = 0.25  # a per-dataset table is shown when a cell's rate moves this much
Z95 = 1.959963984540054  # two-sided 95% standard normal quantile


def wilson_interval(k, n, z: float = Z95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval for a binomial proportion k/n (95% for the default z).

    E. B. Wilson (1927), "Probable inference, the law of succession, and statistical inference",
    Journal of the American Statistical Association 22(158): 209-212. With p = k/n:

        center = (p + z^2 / 2n) / (1 + z^2 / n)
        half   = z / (1 + z^2 / n) * sqrt(p (1 - p) / n + z^2 / 4n^2)

    Unlike the Wald interval p +- z sqrt(p(1-p)/n) it stays within [0, 1] and does not collapse to
    a point at k = 0 or k = n, which is where most cells of a sweep sit. n = 0 gives NaN.
    """
    k = np.asarray(k, dtype=float)
    n = np.asarray(n, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = k / n
        z2 = z * z
        denom = 1.0 + z2 / n
        center = (p + z2 / (2 * n)) / denom
        half = z / denom * np.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    low = np.where(k == 0, 0.0, np.clip(center - half, 0.0, 1.0))  # exact at the ends, where
    high = np.where(k == n, 1.0, np.clip(center + half, 0.0, 1.0))  # rounding would leave 1e-19
    return np.where(n > 0, low, np.nan), np.where(n > 0, high, np.nan)


def difference_interval(k1, n1, k2, n2, z: float = Z95) -> tuple[float, float, float]:
    """The difference p1 - p2 of two independent proportions and its 95% interval (for the
    default z) by Newcombe's hybrid score method, "method 10" in R. G. Newcombe (1998), "Interval
    estimation for the difference between independent proportions: comparison of eleven methods",
    Statistics in Medicine 17(8): 873-890. With the Wilson intervals (l1, u1) and (l2, u2):

        low  = d - sqrt((p1 - l1)^2 + (u2 - p2)^2)
        high = d + sqrt((u1 - p1)^2 + (p2 - l2)^2)

    Like Wilson's it behaves at 0/n and n/n, where a Wald interval collapses. NaN without runs."""
    if n1 <= 0 or n2 <= 0:
        return (np.nan, np.nan, np.nan)
    l1, u1 = (float(v) for v in wilson_interval(k1, n1, z))
    l2, u2 = (float(v) for v in wilson_interval(k2, n2, z))
    p1, p2 = k1 / n1, k2 / n2
    d = p1 - p2
    return (d, d - np.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2), d + np.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2))


# ---------------------------------------------------------------------------------------------
# Preparation


def outcome_flags(runs: pd.DataFrame) -> pd.DataFrame:
    """0/1 columns nan, inf, nonfinite, diverged, error, ran (not error), trained (converged or
    improving: nanbench.forensics.trained), stalled; from the outcome tag."""
    outcome = runs["outcome"]
    flags = pd.DataFrame({
        "nan": outcome.eq("nan"), "inf": outcome.eq("inf"),
        "nonfinite": outcome.isin(NONFINITE), "diverged": outcome.eq("diverged"),
        "error": outcome.eq("error"),
    }, index=runs.index)
    flags["ran"] = ~flags["error"]
    flags["trained"] = outcome.isin(TRAINED_OUTCOMES)
    flags["stalled"] = outcome.eq("stalled")
    flags["inf_before_nan"] = flags["nan"] & (runs["first_inf_step"] < runs["first_nan_step"])
    return flags.astype(int)


def split_factors(runs: pd.DataFrame, factors: list[str]) -> tuple[list[str], dict[str, object]]:
    """The factors that vary in the sweep, and the constant ones with their value."""
    varying, constant = [], {}
    for f in factors:
        values = runs[f]
        if values.nunique(dropna=False) > 1:
            varying.append(f)
        else:
            constant[f] = values.iloc[0]
    return varying, constant


def _labels(runs: pd.DataFrame, keys: list[str], label) -> pd.Categorical:
    """One label per run from several factor columns, levels in the order of the columns' levels."""
    combos = runs[keys].drop_duplicates().sort_values(keys)
    names = {row: label(*row) for row in combos.itertuples(index=False, name=None)}
    levels = list(dict.fromkeys(names.values()))
    values = [names[row] for row in runs[keys].itertuples(index=False, name=None)]
    return pd.Categorical(values, categories=levels, ordered=True)


def add_composites(runs: pd.DataFrame, varying: list[str]) -> pd.DataFrame:
    """Add 'preprocess' (scaler, plus outlier handling and target scaling where they vary) and
    'clipping' (kind, plus the threshold where it varies) as single columns for two-way tables."""
    runs = runs.copy()
    keys = ["preprocess.scaler"] + [k for k in ("preprocess.outliers", "preprocess.scale_target")
                                    if k in varying]

    def preprocess(scaler, *rest):
        parts = [str(scaler)]
        for key, value in zip(keys[1:], rest):
            if key == "preprocess.outliers" and value != "none":
                parts.append(f"outliers={value}")
            if key == "preprocess.scale_target" and str(value) == "True":
                parts.append("scaled-y")
        return " ".join(parts)

    runs["preprocess"] = _labels(runs, keys, preprocess)
    if "clipping.threshold" in varying:
        runs["clipping"] = _labels(runs, ["clipping.kind", "clipping.threshold"],
                                   lambda kind, thr: str(kind) if kind == "none" else f"{kind}@{fmt(thr)}")
    else:
        runs["clipping"] = runs["clipping.kind"]
    return runs


def factor_roles(runs: pd.DataFrame, varying: list[str]) -> dict[str, list[str]]:
    """The varying columns that are factors of their own, each with its attributes: the columns
    whose value its level determines. dataset.n_samples or dataset.nan_fraction are descriptors of
    the dataset (each dataset has one value), optimizer.momentum is 0.9 exactly for the momentum
    optimizer, model.depth moves with model.name: such a column is not a second factor that an
    analysis could vary apart, it is an attribute of the levels of the factor that determines it.
    Two columns that determine each other are one factor, under the first in `varying` order.
    A dataset.* column swept within a dataset is not determined by dataset.name and stays a factor.
    Returns factor -> its attributes, factors in `varying` order."""
    codes = {f: pd.factorize(runs[f], use_na_sentinel=False)[0].astype(np.int64) for f in varying}
    levels = {f: int(c.max()) + 1 for f, c in codes.items()}

    def determines(g: str, f: str) -> bool:  # each level of g has one level of f
        pairs = np.unique(codes[g] * levels[f] + codes[f]).size
        return pairs == levels[g]

    order = {f: i for i, f in enumerate(varying)}
    owner = {}
    for f in varying:
        above = [g for g in varying if g != f and determines(g, f)
                 and (not determines(f, g) or order[g] < order[f])]
        if above:
            owner[f] = above
    roots = [f for f in varying if f not in owner]
    roles: dict[str, list[str]] = {f: [] for f in roots}
    for f, above in owner.items():
        # the determining factor is a root itself, or determined by one, which then determines f too
        root = next(g for g in roots if g in above or determines(g, f))
        roles[root].append(f)
    return roles


def attribute_table(runs: pd.DataFrame, factor: str, attributes: list[str]) -> pd.DataFrame:
    """One row per level of `factor`: the value each attribute takes there."""
    table = runs[[factor, *attributes]].drop_duplicates(factor).sort_values(factor)
    return table.reset_index(drop=True)


def fmt(v) -> str:
    """A level or value as tables print it (floats in %g)."""
    if isinstance(v, (float, np.floating)):
        return f"{v:g}"
    return str(v)


def varies(runs: pd.DataFrame, column: str) -> bool:
    return column in runs and runs[column].nunique(dropna=False) > 1


# ---------------------------------------------------------------------------------------------
# Rates


def rate_table(runs: pd.DataFrame, by: list[str] | str, flags: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per group of `by`: runs, nan, inf, diverged, error, nonfinite, trained, inf_before_nan,
    rate (non-finite / trained) and its 95% Wilson interval ci_low, ci_high."""
    by = [by] if isinstance(by, str) else list(by)
    flags = outcome_flags(runs) if flags is None else flags
    keys = [runs[b] for b in by]
    table = flags.groupby(keys, observed=True, sort=True).sum()
    table.insert(0, "runs", flags.groupby(keys, observed=True, sort=True).size())
    with np.errstate(divide="ignore", invalid="ignore"):
        table["rate"] = table["nonfinite"] / table["ran"].where(table["ran"] > 0)
    table["ci_low"], table["ci_high"] = wilson_interval(table["nonfinite"], table["ran"])
    return table


def main_effects(runs: pd.DataFrame, varying: list[str], flags: pd.DataFrame | None = None) -> pd.DataFrame:
    """rate_table of every varying factor, stacked: columns factor, level, then the counts."""
    flags = outcome_flags(runs) if flags is None else flags
    parts = []
    for f in varying:
        t = rate_table(runs, f, flags).reset_index().rename(columns={f: "level"})
        t.insert(0, "factor", f)
        parts.append(t)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def two_way(runs: pd.DataFrame, rows: str, cols: str, flags: pd.DataFrame | None = None) -> pd.DataFrame:
    """Non-finite rate by rows x cols, long: one line per observed cell with k, n and rate."""
    return rate_table(runs, [rows, cols], flags)[["nonfinite", "ran", "rate"]]


def picture_change(pooled: pd.DataFrame, part: pd.DataFrame) -> float:
    """The largest change of a cell's rate between the pooled table and one dataset's."""
    both = pooled[["rate"]].join(part[["rate"]].rename(columns={"rate": "rate_part"}), how="inner")
    diff = (both["rate"] - both["rate_part"]).abs()
    return float(diff.max()) if diff.notna().any() else 0.0


# ---------------------------------------------------------------------------------------------
# Where non-finite values start


def source_table(runs: pd.DataFrame, varying: list[str], flags: pd.DataFrame | None = None) -> pd.DataFrame:
    """Among non-finite runs, per factor level: how many, the first source (input, loss,
    gradients, weights), NaN runs and how many of them held inf first (first_inf < first_nan)."""
    flags = outcome_flags(runs) if flags is None else flags
    bad = flags["nonfinite"].astype(bool)
    if not bad.any():
        return pd.DataFrame()
    data = runs.loc[bad]
    source = pd.get_dummies(pd.Categorical(data["first_nonfinite_source"], categories=SOURCES + ("none",)))
    source.index = data.index
    counts = pd.concat([flags.loc[bad, ["nonfinite", "nan", "inf_before_nan"]], source[list(SOURCES)]], axis=1)
    counts = counts.astype(int)
    parts = [counts.sum().to_frame().T.assign(factor="all", level="")]
    for f in varying:
        t = counts.groupby(data[f], observed=True).sum().reset_index().rename(columns={f: "level"})
        parts.append(t.assign(factor=f))
    out = pd.concat(parts, ignore_index=True)
    return out[["factor", "level", "nonfinite", *SOURCES, "nan", "inf_before_nan"]]


def layer_table(runs: pd.DataFrame, varying: list[str], flags: pd.DataFrame | None = None) -> pd.DataFrame:
    """Among non-finite runs: how many first held inf/NaN in each (source, layer, part), where
    layer is nanbench.locate's first non-finite layer and part its output, gradient or weights;
    per model when the model varies (layer names are the model's). Most runs first."""
    flags = outcome_flags(runs) if flags is None else flags
    bad = flags["nonfinite"].astype(bool)
    if not bad.any() or "first_nonfinite_layer" not in runs:
        return pd.DataFrame()
    keys = (["model.name"] if "model.name" in varying else []) + [
        "first_nonfinite_source", "first_nonfinite_layer", "first_nonfinite_part"]
    data = runs.loc[bad, keys].fillna("none").astype(str)
    out = data.value_counts(sort=False).rename("runs").reset_index()
    out["share"] = out["runs"] / int(bad.sum())
    order = {s: i for i, s in enumerate(SOURCES)}
    out["_order"] = out["first_nonfinite_source"].map(order).fillna(len(order))
    return out.sort_values(["runs", "_order"], ascending=[False, True], kind="stable").drop(
        columns="_order").reset_index(drop=True)


# ---------------------------------------------------------------------------------------------
# Stability by configuration


def stability(runs: pd.DataFrame, varying: list[str], flags: pd.DataFrame | None = None) -> pd.DataFrame:
    """For each configuration (the varying factors but lr and seed): lrs tried, the largest lr at
    which every run stayed finite (lr_max_stable) and the smallest with a non-finite run
    (lr_min_unstable). NaN means none. monotone is False where a smaller lr failed than one
    that held."""
    if LR not in varying:
        return pd.DataFrame()
    flags = outcome_flags(runs) if flags is None else flags
    config = [f for f in varying if f != LR and f not in REPEAT_FACTORS]
    trained = flags["ran"].astype(bool)
    data = runs.loc[trained, config + [LR]].assign(nonfinite=flags.loc[trained, "nonfinite"])
    if data.empty:
        return pd.DataFrame()
    keys = config or [pd.Series(0, index=data.index, name="_all")]
    per_lr = data.groupby(keys + [LR], observed=True)["nonfinite"].max().reset_index()
    keys = config or ["_all"]
    grouped = per_lr.groupby(keys, observed=True)
    out = pd.DataFrame({
        "lrs": grouped[LR].size(),
        "lr_max_stable": per_lr[per_lr["nonfinite"] == 0].groupby(keys, observed=True)[LR].max(),
        "lr_min_unstable": per_lr[per_lr["nonfinite"] > 0].groupby(keys, observed=True)[LR].min(),
    })
    out = out[out["lrs"] > 0]
    out["monotone"] = ~(out["lr_min_unstable"] < out["lr_max_stable"])
    out = out.reset_index()
    if not config:
        out = out.drop(columns="_all")
    return out.sort_values(["lr_max_stable", "lr_min_unstable"], na_position="first", kind="stable",
                           ignore_index=True)


# ---------------------------------------------------------------------------------------------
# Representative runs


# Finite outcomes, best first (vocab.OUTCOMES order): the finite run of a pair is the best one.
OUTCOME_RANK = {o: i for i, o in enumerate(o for o in OUTCOMES if o not in NONFINITE + ("error",))}


def outcome_order(outcomes) -> list[str]:
    """The outcomes present, in vocab.OUTCOMES order; unknown ones after, as found."""
    present = list(dict.fromkeys(outcomes))
    return [o for o in OUTCOMES if o in present] + [o for o in present if o not in OUTCOMES]


def contrast_pairs(runs: pd.DataFrame, varying: list[str], max_pairs: int = 2) -> list[tuple[pd.Series, pd.Series, str]]:
    """Pairs (non-finite run, finite run) that differ in one factor only, lr when possible.

    For lr the finite run is the one with the largest lr below the failing one; finite runs that
    converged or stalled are preferred over diverged. Pairs come from different datasets where
    the sweep has several."""
    bad_all = runs[runs["outcome"].isin(NONFINITE)]
    good_all = runs[runs["outcome"].isin(tuple(OUTCOME_RANK))]
    if bad_all.empty or good_all.empty:
        return []
    for factor in ([LR] if LR in varying else []) + [f for f in varying if f != LR]:
        rest = [f for f in varying if f != factor]
        key = (pd.util.hash_pandas_object(runs[rest].astype(str), index=False)
               if rest else pd.Series(0, index=runs.index))
        bad = pd.DataFrame({"pair_key": key.loc[bad_all.index], "factor": bad_all[factor],
                            "rank": bad_all["outcome"].map({"nan": 0, "inf": 1})})
        good = pd.DataFrame({"pair_key": key.loc[good_all.index], "factor": good_all[factor],
                             "rank": good_all["outcome"].map(OUTCOME_RANK)})
        cand = bad.reset_index().merge(good.reset_index(), on="pair_key", suffixes=("_bad", "_good"))
        if cand.empty:
            continue
        if factor == LR:
            below = cand["factor_good"] < cand["factor_bad"]
            cand = cand[below] if below.any() else cand
            cand = cand.assign(gap=np.abs(np.log10(cand["factor_bad"] / cand["factor_good"])))
        else:
            cand = cand.assign(gap=0.0)
        cand = cand.sort_values(["rank_bad", "rank_good", "gap", "index_bad"], kind="stable")
        pairs, seen = [], set()
        by_dataset = "dataset.name" in varying and factor != "dataset.name"
        for row in cand.itertuples(index=False):
            tag = runs.at[row.index_bad, "dataset.name"] if by_dataset else row.pair_key
            if tag in seen:
                continue
            seen.add(tag)
            pairs.append((runs.loc[row.index_bad], runs.loc[row.index_good], factor))
            if len(pairs) == max_pairs:
                break
        return pairs
    return []
