"""Findings: the few statements a reader of a sweep's summary can act on, derived from its runs.

Derived by general rules from the run table, never from the names of one sweep's factors:

1. **Explained causes first.** A run whose first non-finite value was in its input batch
   (first_nonfinite_source in EXPLAINED_SOURCES) is explained by its data: nothing the training
   does could have kept it finite. Those runs are described by the factor levels that hold them
   and set aside; every other statistic is computed on the remaining runs.
2. **Where the rest concentrate.** :func:`find_group` drops, one at a time, the factor level
   with the lowest non-finite rate that holds no non-finite run (or, if that leaves the group
   barely richer than the whole, a level holding few of them), until every level left holds some.
   What remains is a conjunction "f in {levels} and g in {levels}" holding the non-finite runs.
3. **Along the learning rate**, within that group: the rate per grid level, first vs last with a
   Newcombe interval of the difference.
4. **What would have prevented it**: for each factor the group restricts (the data's own
   factors aside: another data set is no remedy), the levels it excludes, measured on the group
   with that restriction lifted, run for run: only configurations found at both the excluded and
   the kept levels count (in a full grid, all of them).
5. **What else mattered within the group**: the factors it leaves free whose levels differ
   significantly (Newcombe interval of highest minus lowest level excluding 0), run for run as in 4.
6. Non-finite runs outside the group, where the rest's non-finite values started, and dead
   networks (finite runs whose every hidden ReLU unit is 0 on every training row), when present.

Each finding carries its counts, a 95% Wilson interval, and the table it rests on (display
strings, for nanbench.summary to render under the finding's anchor).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from nanbench.summary import analysis as A
from nanbench.summary import findings_text as T
from nanbench.summary.groups import EXPLAINED_SOURCES, MAX_FINDINGS, Finding, Findings, concentrated_group, find_group


def derive(runs: pd.DataFrame, flags: pd.DataFrame, roles: dict[str, list[str]],
           anchor: str = "finding") -> Findings:
    """The findings of one sweep (`runs` as nanbench.tracking.reader builds them, `flags` from
    analysis.outcome_flags, `roles` from analysis.factor_roles)."""
    factors = [f for f in roles if f not in A.REPEAT_FACTORS]
    trained = flags["ran"].to_numpy(bool)
    nonfinite = flags["nonfinite"].to_numpy(bool)
    explained = nonfinite & runs["first_nonfinite_source"].isin(EXPLAINED_SOURCES).to_numpy()
    items = [T.overview(runs, flags)]
    if explained.any():
        items.append(T.explained(runs, trained, explained, factors, roles, f"{anchor}-{len(items) + 1}"))
    rest = trained & ~explained
    data, target = runs.loc[rest], nonfinite[rest]
    group = concentrated_group(data, target, factors) if target.any() else None
    if group is not None:
        pooled = (runs.loc[trained], nonfinite[trained])
        items += T.group_findings(data, target, group, factors, roles, bool(explained.any()), pooled, anchor,
                                  len(items))
    elif rest.any() and explained.any():
        items.append(Finding(f"None of the {int(rest.sum()):,} runs "
                             f"{'not explained by their inputs ' if explained.any() else ''}turned non-finite.",
                             "outcomes"))
    dead = T.dead_networks(runs, flags, factors, f"{anchor}-{len(items) + 1}")
    if dead is not None:
        items.append(dead)
    if len(items) > MAX_FINDINGS:  # the sources are in their own section too: the first to go
        items = [f for f in items if f.anchor != "sources"]
    return Findings(items[:MAX_FINDINGS], explained, group)
