"""The vocabulary of findings: groups of runs found by their factors' levels (where the
non-finite runs concentrate), counts as text, and the Finding records the summary opens with.
nanbench.summary.findings derives the findings from these; findings_text words them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from nanbench.summary import analysis as A
from nanbench.tracking.reader import NOT_APPLICABLE

EXPLAINED_SOURCES = ("input",)  # the first non-finite value was in the batch: the data held it
MAX_FINDINGS = 8
CONCENTRATION = 2.0   # a lossless group must be this many times richer than all runs, else ...
TOLERANCE = 0.1       # ... the group may leave out this share of the non-finite runs
DEAD = 1.0            # dead network: this fraction of the hidden ReLU units dead at the end


@dataclass(frozen=True)
class Group:
    """Runs whose factor f takes one of `keep[f]` for every restricted f (an empty keep: all)."""

    keep: tuple[tuple[str, tuple], ...]

    @property
    def factors(self) -> list[str]:
        return [f for f, _ in self.keep]

    def mask(self, runs: pd.DataFrame) -> np.ndarray:
        m = np.ones(len(runs), bool)
        for f, levels in self.keep:
            m &= runs[f].isin(levels).to_numpy()
        return m

    def without(self, factor: str) -> Group:
        return Group(tuple((f, lv) for f, lv in self.keep if f != factor))

    def text(self, runs: pd.DataFrame) -> str:
        if not self.keep:
            return "all runs"
        return " and ".join(levels_text(runs, f, lv) for f, lv in self.keep)


def levels_text(runs: pd.DataFrame, factor: str, levels: tuple) -> str:
    observed = sorted(pd.unique(runs[factor])) if pd.api.types.is_numeric_dtype(runs[factor]) else None
    if observed is not None and len(levels) > 1:
        kept = sorted(levels)
        i, j = observed.index(kept[0]), observed.index(kept[-1])
        if observed[i:j + 1] == kept:  # a contiguous range of the grid
            if j == len(observed) - 1:
                return f"`{factor}` ≥ {A.fmt(kept[0])}"
            if i == 0:
                return f"`{factor}` ≤ {A.fmt(kept[-1])}"
            return f"{A.fmt(kept[0])} ≤ `{factor}` ≤ {A.fmt(kept[-1])}"
    return f"`{factor}` = " + " or ".join(A.fmt(v) for v in levels)


def level_counts(runs: pd.DataFrame, factor: str, target) -> pd.DataFrame:
    """Per observed level of `factor` (in the factor's level order): k target runs of n runs."""
    frame = pd.DataFrame({"level": runs[factor].reset_index(drop=True), "k": np.asarray(target, int)})
    return frame.groupby("level", observed=True, sort=True)["k"].agg(k="sum", n="size")


def find_group(runs: pd.DataFrame, target, factors: list[str], tolerance: float = 0.0) -> Group | None:
    """The conjunction of factor levels that holds the `target` runs (see the module docstring).

    Greedy: drop the level with the lowest target rate (the larger level first on ties) while it
    holds no target run, or, with `tolerance`, while its rate is below half the group's and the
    target runs dropped so far stay within `tolerance` of all. None when no run is a target."""
    target = np.asarray(target, bool)
    total = int(target.sum())
    if total == 0:
        return None
    inside = np.ones(len(runs), bool)
    keep = {f: list(level_counts(runs, f, target).index) for f in factors}
    lost = 0
    while True:
        k_all, n_all = int(target[inside].sum()), int(inside.sum())
        best = None
        for f in factors:
            counts = level_counts(runs.loc[inside], f, target[inside])
            if len(counts) < 2:
                continue
            for level, k, n in zip(counts.index, counts["k"], counts["n"]):
                if k == 0 or (k / n < 0.5 * k_all / n_all and lost + k <= tolerance * total):
                    key = (k / n, -n)
                    if best is None or key < best[0]:
                        best = (key, f, level, int(k))
        if best is None:
            break
        _, f, level, k = best
        keep[f].remove(level)
        lost += k
        inside &= (runs[f] != level).to_numpy()
    full = {f: len(level_counts(runs, f, target)) for f in factors}
    return Group(tuple((f, tuple(keep[f])) for f in factors if len(keep[f]) < full[f]))


def concentrated_group(runs: pd.DataFrame, target, factors: list[str]) -> Group | None:
    """find_group without loss; with TOLERANCE when that is not CONCENTRATION times richer."""
    target = np.asarray(target, bool)
    group = find_group(runs, target, factors)
    if group is not None:
        m = group.mask(runs)
        if target[m].mean() < CONCENTRATION * target.mean():
            group = find_group(runs, target, factors, TOLERANCE)
    return group


# ---------------------------------------------------------------------------------------------
# Phrasing


def kn(k, n) -> str:
    """'k/n, rate [low, high]' with the 95% Wilson interval."""
    if n == 0:
        return "0/0"
    lo, hi = A.wilson_interval(k, n)
    return f"{int(k):,}/{int(n):,}, {k / n:.3f} [{float(lo):.3f}, {float(hi):.3f}]"


def rate_rows(runs: pd.DataFrame, target, factors: list[str], label: str = "factor") -> pd.DataFrame:
    """Display table: per level of each factor, target runs / runs, rate and 95% interval."""
    target = np.asarray(target, bool)
    rows = []
    for f in factors:
        counts = level_counts(runs, f, target)
        for i, (level, k, n) in enumerate(zip(counts.index, counts["k"], counts["n"])):
            lo, hi = A.wilson_interval(k, n)
            rows.append({label: f if i == 0 else "", "level": A.fmt(level), "non-finite": int(k), "runs": int(n),
                         "rate": f"{k / n:.3f}", "95% CI": f"[{float(lo):.3f}, {float(hi):.3f}]"})
    return pd.DataFrame(rows)


@dataclass
class Finding:
    text: str                        # Markdown inline: `code`, **bold**, [links](#anchor)
    anchor: str                      # where the table behind it is
    title: str = ""                  # that table's heading; empty: the anchor is elsewhere
    table: pd.DataFrame | None = None
    note: str = ""


@dataclass
class Findings:
    items: list[Finding]
    explained: np.ndarray            # runs set aside (explained by their inputs)
    group: Group | None              # where the other non-finite runs concentrate


def unique_attributes(runs: pd.DataFrame, factor: str, levels: tuple, roles: dict) -> list[str]:
    """'attr=value' for the attributes of `factor` whose value at `levels` no other level has. A
    knob the levels do not have (n/a: constant_column of a dataset without one) describes nothing."""
    out = []
    for attr in roles.get(factor, []):
        values = runs[attr].astype(object).map(A.fmt)
        inside = set(values[runs[factor].isin(levels)])
        outside = set(values[~runs[factor].isin(levels)])
        if len(inside) == 1 and not inside & outside and inside != {NOT_APPLICABLE}:
            out.append(f"`{attr}` = {next(iter(inside))}")
    return out
