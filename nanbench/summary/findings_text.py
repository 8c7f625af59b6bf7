"""The statements of nanbench.summary.findings, one function per kind, each with the table behind it.

Every number in a statement is a count of runs in the run table (runs.csv) that a reader can
recount; rates come with 95% Wilson intervals, differences of rates with Newcombe intervals.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from nanbench.forensics import TRAINED_OUTCOMES
from nanbench.summary import analysis as A
from nanbench.summary import training as T
from nanbench.summary.groups import (DEAD, Finding, Group, levels_text, concentrated_group, find_group, kn,
                               level_counts, rate_rows, unique_attributes)

MAX_MODIFIERS = 2  # factors named in "what else mattered within the group"


def _link(anchor: str) -> str:
    return f" ([table](#{anchor}))"


def _diff_text(d) -> str:
    return f"difference {d[0]:+.3f} [{d[1]:+.3f}, {d[2]:+.3f}]"


def _with_attributes(runs: pd.DataFrame, group: Group, roles: dict) -> str:
    attrs = [a for f, levels in group.keep for a in unique_attributes(runs, f, levels, roles)]
    return group.text(runs) + (f" ({', '.join(attrs)})" if attrs else "")


def overview(runs: pd.DataFrame, flags: pd.DataFrame) -> Finding:
    n, trained = len(runs), int(flags["ran"].sum())
    k = int(flags["nonfinite"].sum())
    parts = [f"{int(flags[o].sum()):,} {label}" for o, label in (("nan", "NaN"), ("inf", "inf")) if flags[o].sum()]
    text = (f"Of the {n:,} runs, {k:,} turned non-finite" + (f" ({', '.join(parts)})" if parts else "")
            + f": {kn(k, trained)} of the runs.")
    if trained < n:
        text += f" {n - trained:,} did not run (outcome error)."
    # finite is not fixed: how many trained, and how many stayed finite without learning
    k_trained, k_stalled = int(flags["trained"].sum()), int(flags["stalled"].sum())
    text += (f" {k_trained:,} trained (converged or improving: the whole data's loss fell by at least "
             f"`outcome.improve_fraction`): {kn(k_trained, trained)}; {k_stalled:,} stalled (finite, no real "
             f"progress): {kn(k_stalled, trained)}.")
    return Finding(text + _link("outcomes"), "outcomes")


def explained(runs: pd.DataFrame, trained: np.ndarray, explained: np.ndarray, factors: list[str],
              roles: dict, anchor: str) -> Finding:
    data, target = runs.loc[trained], explained[trained]
    group = find_group(data, target, factors)
    inside = group.mask(data)
    k, n = int(target[inside].sum()), int(inside.sum())
    others = [f for f in factors if f not in group.factors]
    rates = {f: (lambda c: c["k"] / c["n"])(level_counts(data.loc[inside], f, target[inside])) for f in others}
    same = all(np.allclose(r.to_numpy(), k / n) for r in rates.values())
    step = runs.loc[explained, "first_nonfinite_step"].median()
    who = "Every run" if k == n else f"{k:,} of the {n:,} runs"
    text = (f"{who}{' with ' + _with_attributes(data, group, roles) if group.keep else ''} turned non-finite at the first batch holding a "
            f"non-finite input value (`first_nonfinite_source` = input; median step {A.fmt(step)}): {kn(k, n)}"
            + ("; nothing else mattered there, every level of every other factor gives the same rate" if same else "")
            + f". These {int(explained.sum()):,} runs are explained by their data and set aside: the analysis "
              f"below is of the other {int(trained.sum() - explained.sum()):,} runs.")
    table = rate_rows(data.loc[inside], target[inside], others)
    table = table.rename(columns={"non-finite": "non-finite at the input"})
    title = f"Runs with {group.text(data)}: non-finite at the input, per level of every other factor"
    return Finding(text + _link(anchor), anchor, title, table)


def _group_table(data: pd.DataFrame, target: np.ndarray, group: Group) -> pd.DataFrame:
    inside = group.mask(data)
    rows = []
    if group.factors:  # in the levels' own order (numbers numerically), not as text
        frame = data.loc[inside, group.factors].reset_index(drop=True).assign(_k=np.asarray(target[inside], int))
        for combo, part in frame.groupby(group.factors, observed=True, sort=True)["_k"]:
            combo = combo if isinstance(combo, tuple) else (combo,)
            rows.append({"runs with": " · ".join(group.factors) + " = " + " · ".join(A.fmt(v) for v in combo),
                         "count": kn(part.sum(), len(part))})
    rows.append({"runs with": "in the group, all", "count": kn(target[inside].sum(), inside.sum())})
    rows.append({"runs with": "every other configuration", "count": kn(target[~inside].sum(), (~inside).sum())})
    return pd.DataFrame(rows).rename(columns={"count": "non-finite/runs, rate [95% CI]"})


def group_findings(data: pd.DataFrame, target: np.ndarray, group: Group, factors: list[str], roles: dict,
                   had_explained: bool, pooled: tuple[pd.DataFrame, np.ndarray], anchor: str,
                   start: int) -> list[Finding]:
    """Where the non-finite runs of `data` concentrate, along lr, what prevented them, what else
    mattered, what lies outside, where they started. `pooled`: every run that ran and its target."""
    out: list[Finding] = []

    def anchor_next() -> str:
        return f"{anchor}-{start + len(out) + 1}"

    inside = group.mask(data)
    k, n, total = int(target[inside].sum()), int(inside.sum()), int(target.sum())
    out_k, out_n = total - k, len(data) - n
    scope = f"Among the other {len(data):,} runs" if had_explained else f"Among the {len(data):,} runs"
    what = _with_attributes(data, group, roles)
    a = anchor_next()
    if group.keep:
        text = (f"{scope}, {'every one of the' if out_k == 0 else f'{k:,} of the'} {total:,} non-finite runs had "
                f"{what}: {kn(k, n)} there, against {kn(out_k, out_n)} in every other configuration.")
    else:
        text = (f"{scope}, {total:,} turned non-finite ({kn(total, len(data))}), spread over every level of "
                "every factor: none kept every run finite.")
    out.append(Finding(
        text + _link(a),
        a, f"Non-finite runs in and outside the group {group.text(data)}", _group_table(data, target, group)))

    lr_group = group.without(A.LR)
    lr_inside = lr_group.mask(data)
    if A.LR in factors and data.loc[lr_inside, A.LR].nunique() > 1:
        t = level_counts(data.loc[lr_inside], A.LR, target[lr_inside])
        (lo_lr, first), (hi_lr, last) = (t.index[0], t.iloc[0]), (t.index[-1], t.iloc[-1])
        d = A.difference_interval(last["k"], last["n"], first["k"], first["n"])
        verb = "rises" if d[1] > 0 else "falls" if d[2] < 0 else "does not change significantly"
        where = ("within that group" if A.LR not in group.factors and group.keep else
                 f"with {lr_group.text(data)}" if lr_group.keep else "over those runs")
        text = (f"{where[0].upper() + where[1:]}, the non-finite rate {verb} with the learning rate: "
                f"{kn(first['k'], first['n'])} at lr {A.fmt(lo_lr)}, {kn(last['k'], last['n'])} at lr "
                f"{A.fmt(hi_lr)} ({_diff_text(d)}).")
        # a run non-finite in its first forward pass failed before any update: no learning rate
        # changes that, so what the grid reaches is judged without those runs
        at_init = target & nonfinite_at_start(data)
        n_init = int(at_init[lr_inside].sum())
        if n_init:
            t = level_counts(data.loc[lr_inside], A.LR, (target & ~at_init)[lr_inside])
            text += (f" {n_init:,} of these runs were non-finite in their first forward pass (step 0, before any "
                     "update): no learning rate changes that, and what follows leaves them out.")
        failing = (t["k"] > 0).to_numpy()
        held = t.index[(t["k"] == 0).to_numpy() & (t.index < t.index[failing].min())] if failing.any() else t.index
        if len(held):
            text += f" Every such run stayed finite up to lr {A.fmt(held.max())}."
        if failing.all():
            text += (f" No learning rate of the grid kept every such run finite, not even the smallest "
                     f"({A.fmt(lo_lr)}): the grid does not reach the stable side.")
        if had_explained:
            c = level_counts(pooled[0], A.LR, pooled[1])
            p = c["k"] / c["n"]
            text += (f" Pooled over every run, the explained ones included, the rate moves only from "
                     f"{p.iloc[0]:.3f} to {p.iloc[-1]:.3f}: the runs set aside mask it.")
        a = anchor_next()
        table = pd.DataFrame({"optimizer.lr": [A.fmt(v) for v in t.index],
                              f"runs with {lr_group.text(data)}": [kn(r.k, r.n) for r in t.itertuples()]})
        for label, (frame, flag) in (("every run not explained" if had_explained else None, (data, target)),
                                     ("all runs (pooled)", pooled)):
            if label is None:
                continue
            c = level_counts(frame, A.LR, flag)
            table[label] = [kn(c.loc[v, "k"], c.loc[v, "n"]) if v in c.index else "–" for v in t.index]
        title = "runs with " + lr_group.text(data) if lr_group.keep else "every run analysed"
        out.append(Finding(text + _link(a), a, f"Non-finite rate along the learning rate, {title}", table))

    # Remedies are judged by training, then by cost: each says how many of its runs trained and
    # their median time to target; one whose runs stay finite but mostly do not train "avoids NaN,
    # does not train" and is listed after every remedy that trains.
    ran_ok = data["outcome"].isin(TRAINED_OUTCOMES).to_numpy()
    steps, seconds = (pd.to_numeric(data[c], errors="coerce").to_numpy(dtype=float) if c in data
                      else np.full(len(data), np.nan) for c in ("steps_to_target", "seconds_to_target"))

    def training(at: np.ndarray, finite_text: str) -> tuple[bool, float, str]:
        k, n = int(ran_ok[at].sum()), int(at.sum())
        if not T.trains(k, n):
            return False, k / n if n else 0.0, (f"avoids NaN, does not train: {finite_text}, but only "
                                                f"{k:,} of them trained ({kn(k, n)})")
        med_steps, med_s = T.median_or_none(steps[at & ran_ok]), T.median_or_none(seconds[at & ran_ok])
        cost = (f", median {A.fmt(med_steps)} steps" + (f" ({med_s:.3g} s)" if med_s is not None else "")
                + " to target" if med_steps is not None else ", none reached the target")
        return True, k / n, f"{finite_text}, and {k:,} of them trained ({kn(k, n)}){cost}"

    pieces, tables, sensitivity = [], [], []
    for f, kept in group.keep:
        if f.startswith("dataset."):  # the data's own factors: another data set is no remedy
            continue
        lifted = group.without(f)
        m = lifted.mask(data)
        c = level_counts(data.loc[m], f, target[m])
        others = [lv for lv in c.index if lv not in kept]
        twins = {lv: _twins(data, m, f, kept, lv, factors) for lv in others}
        counts = {lv: (int(target[at].sum()), int(at.sum()), int(target[ref].sum()), int(ref.sum()))
                  for lv, (at, ref) in twins.items()}
        # a level with no non-finite run where its twins had some (else it is no evidence)
        zero = [lv for lv in others if counts[lv][1] and counts[lv][0] == 0 and counts[lv][2] > 0]
        remedies = list(zero)
        if zero:
            at = np.logical_or.reduce([twins[lv][0] for lv in zero])
            ref = np.logical_or.reduce([twins[lv][1] for lv in zero])
            k_ref, n_ref = int(target[ref].sum()), int(ref.sum())
            context = _context(data, lifted, at | ref)  # only where it was measured: its own cause
            finite = (f"kept every run finite: {kn(0, int(at.sum()))}"
                      + ("" if n_ref == n else f" (against {kn(k_ref, n_ref)} in the same configurations)"))
            ok, share, said = training(at, finite)
            pieces.append((ok, share, f"{context}{levels_text(data, f, tuple(zero))} instead {said}"))
        for lv in others:
            k_lv, n_lv, k_ref, n_ref = counts[lv]
            if lv in zero or not n_lv or not k_ref:
                continue
            d = A.difference_interval(k_lv, n_lv, k_ref, n_ref)
            if d[2] < 0:
                at, ref = twins[lv]
                remedies.append(lv)
                lowered = (f"lowered the rate to {kn(k_lv, n_lv)}"
                           + ("" if n_ref == n else f" (against {kn(k_ref, n_ref)} in the same configurations)"))
                ok, share, said = training(at, lowered)
                pieces.append((ok, share, f"{_context(data, lifted, at | ref)}`{f}` = {A.fmt(lv)} instead {said}"))
        if remedies and f != A.LR and A.LR in data:
            sensitivity.append(_lr_sensitivity(data, group.without(f).without(A.LR), f, kept, tuple(remedies),
                                               ran_ok))
        rows = rate_rows(data.loc[m], target[m], [f])
        rows.insert(3, "trained", [int(k) for k in level_counts(data.loc[m], f, ran_ok[m])["k"]])  # same levels
        rows.insert(0, "runs with", [lifted.text(data)] + [""] * (len(rows) - 1))
        tables.append(rows)
    if pieces:
        a = anchor_next()
        pieces.sort(key=lambda p: (not p[0], -p[1]))  # those that train first, most trained first
        text = "What would have prevented them: " + "; ".join(p[2] for p in pieces) + "."
        if sensitivity:
            text += " Learning-rate sensitivity (after Wortsman et al. 2023): " + "; ".join(sensitivity) + "."
        out.append(Finding(text + _link(a), a,
                           "Each restriction of the group lifted in turn: the non-finite rate and the runs that "
                           "trained per level", pd.concat(tables, ignore_index=True)))

    free = [f for f in factors if f not in group.factors and f != A.LR]
    effects = []
    for f in free:
        c = level_counts(data.loc[inside], f, target[inside])
        if len(c) < 2:
            continue
        rate = c["k"] / c["n"]
        hi, lo = rate.idxmax(), rate.idxmin()
        # run for run: only configurations found at both levels (all of them in a full grid)
        at_hi, at_lo = _twins(data, inside, f, (lo,), hi, factors)
        counts = (int(target[at_hi].sum()), int(at_hi.sum()), int(target[at_lo].sum()), int(at_lo.sum()))
        if not (counts[1] and counts[3]):
            continue
        d = A.difference_interval(*counts)
        if d[1] > 0:
            effects.append((d[0], f, hi, lo, counts, d))
    effects.sort(key=lambda e: -e[0])
    if effects:
        a = anchor_next()
        parts = [f"`{f}` {A.fmt(hi)} {kn(k_hi, n_hi)} vs {A.fmt(lo)} {kn(k_lo, n_lo)} ({_diff_text(d)})"
                 for _, f, hi, lo, (k_hi, n_hi, k_lo, n_lo), d in effects[:MAX_MODIFIERS]]
        out.append(Finding("Within that group, what else mattered most: " + "; then ".join(parts) + "." + _link(a),
                           a, f"Within {group.text(data)}: the non-finite rate per level of the other factors",
                           rate_rows(data.loc[inside], target[inside], free)))

    if out_k >= max(3, 0.1 * total):
        rest = data.loc[~inside]
        second = concentrated_group(rest, target[~inside], factors)
        if second is not None:
            m2 = second.mask(rest)
            a = anchor_next()
            out.append(Finding(
                f"The other {out_k:,} non-finite runs, outside that group, had mostly "
                f"{_with_attributes(rest, second, roles)}: {int(target[~inside][m2].sum()):,} of them, "
                f"{kn(target[~inside][m2].sum(), m2.sum())} there." + _link(a),
                a, f"Outside the first group: in and outside {second.text(rest)}",
                _group_table(rest, target[~inside], second)))

    source = data.loc[target, "first_nonfinite_source"].value_counts()
    counted = [f"the {s} in {int(source[s]):,}" for s in A.SOURCES if source.get(s, 0)]
    if counted:
        inf_first = int(((data["first_inf_step"] < data["first_nan_step"]) & target).sum())
        out.append(Finding(
            f"In those {total:,} runs the first non-finite value appeared in " + ", ".join(counted)
            + f" (data-flow order input, loss, gradients, weights); {inf_first:,} held an inf before their NaN."
            + _layers(data.loc[target]) + _link("sources"), "sources"))
    return out


def nonfinite_at_start(data: pd.DataFrame) -> np.ndarray:
    """Runs non-finite in their first forward pass (nanbench.forensics.classify): first non-finite
    at step 0 with source loss and no finite initial loss recorded."""
    if not {"first_nonfinite_step", "first_nonfinite_source", "initial_loss"} <= set(data.columns):
        return np.zeros(len(data), bool)
    return ((pd.to_numeric(data["first_nonfinite_step"], errors="coerce") == 0).to_numpy()
            & (data["first_nonfinite_source"] == "loss").to_numpy()
            & pd.to_numeric(data["initial_loss"], errors="coerce").isna().to_numpy())


def _context(data: pd.DataFrame, lifted: Group, measured: np.ndarray) -> str:
    """"with <the group's other restrictions>, ", each narrowed to the levels the runs a remedy was
    measured on hold: a remedy is offered only within the cause it was seen to fix (a loss that
    exists only for sequences is no remedy for classification, wherever the group joined them)."""
    keep = tuple((f, tuple(lv for lv in levels if lv in set(data.loc[measured, f])))
                 for f, levels in lifted.keep)
    narrowed = Group(tuple((f, lv) for f, lv in keep if lv))
    return f"with {narrowed.text(data)}, " if narrowed.keep else ""


def _decades(value: float | None) -> str:
    return "none" if value is None else f"{value:.3g} decade" + ("" if value == 1 else "s")


def _lr_sensitivity(data: pd.DataFrame, base: Group, f: str, kept: tuple, remedies: tuple,
                    trained: np.ndarray) -> str:
    """How a remedy of factor `f` changes the range of learning rates at which most runs train
    (training.lr_range_decades), over the runs of `base` (the group without `f` and the learning
    rate): at the group's levels of `f` against the remedy's."""
    inside = base.mask(data)
    before, after = (inside & data[f].isin(list(levels)).to_numpy() for levels in (kept, remedies))
    x = T.lr_range_decades(data.loc[before, A.LR], trained[before])
    y = T.lr_range_decades(data.loc[after, A.LR], trained[after])
    verb = ("widens" if (y or 0) > (x or 0) or (x is None and y is not None) else
            "narrows" if (x or 0) > (y or 0) or (y is None and x is not None) else "leaves")
    where = f" (with {base.text(data)})" if base.keep else ""
    if verb == "leaves":
        return (f"{levels_text(data, f, remedies)} leaves the range of learning rates that train at "
                f"{_decades(x)}{where}")
    return (f"{levels_text(data, f, remedies)} {verb} the range of learning rates that train from {_decades(x)} "
            f"({levels_text(data, f, kept)}) to {_decades(y)}{where}")


def _twins(data: pd.DataFrame, m: np.ndarray, f: str, kept, level, factors: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Within `m`, the runs at `level` of `f` and those at its `kept` levels whose every other
    factor takes values found at both: the same configurations otherwise, so that a grid that
    does not cross `f` with everything (one model for sequences, another for tables) compares
    like with like. In a full grid every run has its twins and these are all of `m`'s runs."""
    others = [g for g in factors if g != f and g in data]
    key = (data[others].astype(str).agg("\x1f".join, axis=1) if others
           else pd.Series("", index=data.index)).to_numpy()
    at = m & (data[f] == level).to_numpy()
    ref = m & data[f].isin(list(kept)).to_numpy()
    shared = np.isin(key, np.intersect1d(key[at], key[ref]))
    return at & shared, ref & shared


MAX_LAYERS = 4  # (layer, part) pairs named in the sources finding; the rest are counted together


def _layers(data: pd.DataFrame) -> str:
    """The first non-finite layers (nanbench.locate) of these runs, as a sentence tail whose counts
    add up to every run: the commonest pairs by name, then the others and the runs not located."""
    if "first_nonfinite_layer" not in data:
        return ""
    layer = data["first_nonfinite_layer"].fillna("none").astype(str)
    where = layer + " (" + data["first_nonfinite_part"].fillna("none").astype(str) + ")"
    counts = where[layer != "none"].value_counts(sort=True)
    if counts.empty:
        return ""
    named = counts if len(counts) <= MAX_LAYERS else counts.head(MAX_LAYERS - 1)
    parts = [f"{w} in {int(n):,}" for w, n in named.items()]
    if len(named) < len(counts):
        parts.append(f"{len(counts) - len(named)} other layers in {int(counts.iloc[len(named):].sum()):,}")
    unlocated = int((layer == "none").sum())
    if unlocated:
        parts.append(f"not located in {unlocated:,}")
    return " By layer, first: " + ", ".join(parts) + "."


def dead_networks(runs: pd.DataFrame, flags: pd.DataFrame, factors: list[str], anchor: str) -> Finding | None:
    """Finite runs whose every hidden ReLU unit outputs 0 on every training row at the end."""
    if "dead_fraction" not in runs:
        return None
    fraction = pd.to_numeric(runs["dead_fraction"], errors="coerce")
    finite = (flags["ran"].astype(bool) & ~flags["nonfinite"].astype(bool) & fraction.notna()).to_numpy()
    dead = (fraction >= DEAD - 1e-9).to_numpy() & finite
    if not dead.any():
        return None
    data, target = runs.loc[finite], dead[finite]
    group = concentrated_group(data, target, factors)
    inside = group.mask(data)
    text = (f"{int(dead.sum()):,} of the {int(finite.sum()):,} finite runs with hidden ReLU units ended as dead "
            f"networks (every hidden ReLU unit outputs 0 on every training row, so the model predicts a constant): "
            f"{kn(dead.sum(), finite.sum())}; {int(target[inside].sum()):,} of them had {group.text(data)} "
            f"({kn(target[inside].sum(), inside.sum())} there). Their finite loss is no sign of a working model.")
    table = rate_rows(data, target, factors).rename(columns={"non-finite": "dead"})
    return Finding(text + _link(anchor), anchor, "Dead networks among the finite runs, per factor level", table)

