"""The numbered sections of a sweep's summary (main effects, interactions, attribution, sources,
stability, speed, representative runs, the pooled view), each rendered into a Report from the
tables of nanbench.summary.analysis and nanbench.summary.attribution. nanbench.summary puts them in order.

A missing number is shown as n/a, never as 0.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from nanbench.summary import analysis as A

from nanbench.summary import training as T
from nanbench.summary.attribution import Attribution
from nanbench.summary.report import Report
from nanbench.tracking.reader import RunTable, load_curve

MAX_STABILITY_ROWS = 40
MAX_LAYER_ROWS = 20  # (source, layer, part) rows of the sources section, most runs first
PEERS_NOTE = ("Hyperparameter-importance tools compute importance over completed trials only: "
              "Optuna's `get_param_importances` reads trials in state COMPLETE, and a trial whose "
              "objective is NaN is marked FAIL. The runs they drop are exactly the signal measured here, "
              "so the forest above is fitted on every run that ran, the non-finite ones included.")
SPEED_NOTE = ("What the figures measure: **steps/s** is steady-state training speed, the steps timed "
              "by `train_s` over `train_s` (the fit engine's first step and the fused engine's trace "
              "are left out); **samples/s** is steps/s times the mean batch; **trained**: runs that trained "
              "(converged or improving) of the runs; **steps to target** and **s to target**: the median, over "
              "the runs that reached it, of the steps until the whole data's loss first fell to "
              "`outcome.target_ratio` times its initial value (measured at each epoch's end) and of those steps' "
              "seconds at the run's steady-state rate (n/a: none reached it); **first step** "
              "(`first_step_s`) is the first call, including tracing and compilation, its median taken "
              "over the runs that paid one (the fused engine traces once per Hydra job; the job's later "
              "runs reuse the graph and record 0 s); **wall** is "
              "data + build + first step + training (MLflow logging excluded). The engine matters: "
              "`fit` runs Keras `Model.fit` with a forensic step, `fused` runs the whole training in one "
              "traced `tf.function`. All are medians over the runs that ran (outcome error excluded); timings of a shared "
              "machine are indicative, ratios within one sweep more than absolute values.")


# ---------------------------------------------------------------------------------------------
# Display strings


def _missing(v) -> bool:
    return v is None or (isinstance(v, (float, np.floating)) and not np.isfinite(v))


def _g(v, digits: int = 3) -> str:
    return "n/a" if _missing(v) else f"{v:.{digits}g}"


def _rate(v) -> str:
    return "n/a" if _missing(v) else f"{v:.3f}"


def _ci(lo, hi) -> str:
    return "n/a" if _missing(lo) or _missing(hi) else f"[{lo:.3f}, {hi:.3f}]"


def _level(v) -> str:
    return A.fmt(v)



# ---------------------------------------------------------------------------------------------
# Sections


def main_effects(rep: Report, effects: pd.DataFrame, factors: list[str], out: Path, scope: str) -> Path | None:
    from nanbench.summary import plots
    rep.heading(2, "1. Main effects")
    rep.para(scope)
    if effects.empty:
        rep.para("No factor varies.")
        return None
    rows = []
    last = None
    for r in effects.itertuples(index=False):
        rows.append({"factor": r.factor if r.factor != last else "",
                     "level": _level(r.level), "runs": r.runs, "trained": r.trained, "stalled": r.stalled,
                     "NaN": r.nan, "inf": r.inf, "diverged": r.diverged, "error": r.error, "non-finite": r.nonfinite,
                     "rate": _rate(r.rate), "95% CI": _ci(r.ci_low, r.ci_high)})
        last = r.factor
    rep.table(pd.DataFrame(rows))
    fig = plots.main_effects_chart(effects, factors, out / "main_effects.png")
    rep.image(fig, "Non-finite rate per factor level with 95% Wilson intervals")
    return fig


def _two_way_display(cells: pd.DataFrame, rows: str, cols: str) -> pd.DataFrame:
    text = pd.Series([f"{_rate(rt)} ({int(k)}/{int(n)})" for k, n, rt in
                      zip(cells["nonfinite"], cells["ran"], cells["rate"])], index=cells.index)
    wide = text.unstack(cols)
    wide = wide.loc[:, [c for c in wide.columns if wide[c].notna().any()]]
    wide = wide.loc[[i for i in wide.index if wide.loc[i].notna().any()]]
    wide = wide.where(wide.notna(), "–")  # no run in that cell
    wide.columns = [_level(c) for c in wide.columns]
    wide.insert(0, f"{rows} \\ {cols}", [_level(i) for i in wide.index])
    return wide.reset_index(drop=True)


def interactions(rep: Report, runs: pd.DataFrame, flags: pd.DataFrame, out: Path, scope: str,
                 every: tuple[pd.DataFrame, pd.DataFrame]) -> Path | None:
    """Two-way tables of `runs`; the heatmap figure of every run (`every`: runs, flags), whose
    panels are per dataset and so keep the explained runs apart by themselves."""
    from nanbench.summary import plots
    rep.heading(2, "2. Interactions")
    rep.para(scope)
    rep.para("Cells: non-finite rate (non-finite/runs); – marks a combination the sweep did not run.")
    dataset_varies = A.varies(runs, "dataset.name")
    shown = 0
    for rows, cols in A.INTERACTIONS:
        if not (A.varies(runs, rows) and A.varies(runs, cols)):
            continue
        shown += 1
        table = A.two_way(runs, rows, cols, flags)
        rep.heading(3, f"{rows} × {cols}")
        rep.table(_two_way_display(table, rows, cols))
        if not dataset_varies or "dataset.name" in (rows, cols):
            continue
        same = []
        for dataset in runs["dataset.name"].cat.categories:
            mask = (runs["dataset.name"] == dataset).to_numpy()
            if not mask.any():
                continue
            part = A.two_way(runs.loc[mask], rows, cols, flags.loc[mask])
            change = A.picture_change(table, part)
            if change >= A.PICTURE_CHANGE:
                rep.para(f"Within dataset `{dataset}` (a cell's rate moves by up to {change:.2f}):")
                rep.table(_two_way_display(part, rows, cols))
            else:
                same.append(f"`{dataset}`")
        if same:
            rep.para(f"Per dataset the picture stays within {A.PICTURE_CHANGE:.2f} of the table over all datasets for "
                     + ", ".join(same) + ".")
    if not shown:
        rep.para("None of the tabulated pairs (" + ", ".join(f"{r} × {c}" for r, c in A.INTERACTIONS)
                 + ") has both sides varying.")
    fig = plots.nonfinite_heatmaps(*every, out / "heatmap_nonfinite.png")
    rep.image(fig, "Every run, the explained ones included: non-finite rate over learning rate × optimizer, one "
                   "panel per dataset × preprocessing (cells: non-finite/runs; grey: not run)")
    return fig


def attribution(rep: Report, att: Attribution, factors: list[str], scope: str, title: str = "3. Attribution",
                level: int = 2) -> None:
    rep.heading(level, title)
    rep.para(scope)
    for note in att.notes:
        rep.para(note)
    if not att.rules and att.importance.empty:
        return
    rep.para(f"A decision tree (depth {att.depth}, scikit-learn) predicts non-finite from the "
             f"{len(factors)} varying factors over the {att.runs} runs that ran ({att.nonfinite} "
             "non-finite); categorical factors are one-hot, numeric ones (the learning rate) kept "
             "numeric, and each threshold is read back as the grid level it separates. Each line is "
             "a leaf that predicts non-finite (most of its runs are): its conditions → non-finite/runs "
             "(support = runs in the leaf, purity = the fraction non-finite). Leaves where most runs "
             "stayed finite are not rules for non-finite runs and are not listed.")
    if att.rules:
        rep.code("\n".join(f"{r.text}   (purity {r.purity:.0%}, support {r.runs})" for r in att.rules))
    else:
        rep.para("No leaf predicts non-finite: in every leaf most runs stayed finite.")
    covered = sum(r.nonfinite for r in att.rules if r.predicts_nonfinite)
    rep.para(f"The non-finite leaves hold {covered} of the {att.nonfinite} non-finite runs"
             + (f"; the other {att.nonfinite - covered} sit in leaves where most runs stayed finite (the "
                "findings above say where they concentrate)." if covered < att.nonfinite else "."))
    rep.para("Factor importance: a random forest fitted on the same runs; the impurity decrease of "
             "each one-hot column is summed back to its factor (importance sums to 1). `spread` is "
             "the difference between the highest and lowest level rate of the factor on its own.")
    imp = att.importance
    rep.table(pd.DataFrame({"rank": imp["rank"], "factor": list(imp["factor"]),
                            "importance": [f"{v:.3f}" for v in imp["importance"]],
                            "spread": [_rate(v) for v in imp["spread"]]}))
    if level == 2:
        rep.para(PEERS_NOTE)


def sources(rep: Report, runs: pd.DataFrame, flags: pd.DataFrame, factors: list[str]) -> None:
    rep.heading(2, "4. Where non-finite values start", "sources")
    rep.para("Over every run, the explained ones included: where a run's first non-finite value was is "
             "what sets a run aside as explained (`input`).")
    table = A.source_table(runs, factors, flags)
    if table.empty:
        rep.para("No run turned non-finite.")
        return
    total = table.iloc[0]
    rep.para(f"First non-finite value, in data-flow order (input, loss, gradients, weights), over "
             f"{int(total['nonfinite'])} non-finite runs: "
             + ", ".join(f"{s} {int(total[s])}" for s in A.SOURCES)
             + f". Of {int(total['nan'])} NaN runs, {int(total['inf_before_nan'])} held an inf first "
             "(first_inf_step < first_nan_step): overflow that later became NaN.")
    rep.table(pd.DataFrame({
        "factor": [("" if f == prev else f) for f, prev in
                   zip(table["factor"], [None] + list(table["factor"][:-1]))],
        "level": [_level(v) for v in table["level"]], "non-finite": table["nonfinite"],
        **{s: table[s] for s in A.SOURCES}, "NaN": table["nan"], "inf before NaN": table["inf_before_nan"]}))
    layers = A.layer_table(runs, factors, flags)
    if layers.empty:
        return
    rep.para("Which layer, replayed at each run's first non-finite step (`first_nonfinite_layer`: a Keras "
             "layer, `input` for the batch itself or `loss`; `first_nonfinite_part`: its output, its gradient "
             "or its weights after the update, in data-flow order: outputs first layer to last, the loss, "
             "gradients last layer to first, then the weights):")
    rep.table(pd.DataFrame({
        **({"model": layers["model.name"]} if "model.name" in layers else {}),
        "source": layers["first_nonfinite_source"], "layer": layers["first_nonfinite_layer"],
        "part": layers["first_nonfinite_part"], "runs": layers["runs"],
        "share": [_rate(v) for v in layers["share"]]}).head(MAX_LAYER_ROWS))


def stability(rep: Report, runs: pd.DataFrame, flags: pd.DataFrame, factors: list[str], scope: str) -> pd.DataFrame:
    rep.heading(2, "5. Stability by configuration")
    rep.para(scope)
    table = A.stability(runs, factors, flags)
    if table.empty:
        rep.para(f"`{A.LR}` does not vary in this sweep: no learning-rate boundary to find."
                 if A.LR not in factors else "No run trained: no learning-rate boundary to find.")
        return table
    config = [c for c in table.columns if c not in ("lrs", "lr_max_stable", "lr_min_unstable", "monotone")]
    counts = table["lr_max_stable"].value_counts(dropna=False).sort_index()
    rep.para(f"{len(table)} configurations (every varying factor except `{A.LR}` and repeats "
             f"`{'`, `'.join(A.REPEAT_FACTORS)}`). `lr_max_stable`: the largest learning rate of the grid at "
             "which every run of the configuration stayed finite; `lr_min_unstable`: the smallest at which "
             "one did not. Distribution of lr_max_stable: "
             + ", ".join(f"{'none' if _missing(k) else _level(k)}: {v}" for k, v in counts.items()) + ".")
    broken = int((~table["monotone"]).sum())
    if broken:
        rep.para(f"{broken} configurations are not monotone in lr (a smaller lr failed where a larger one held).")
    shown = table.head(MAX_STABILITY_ROWS)
    rep.table(pd.DataFrame({
        **{c: [_level(v) for v in shown[c]] for c in config},
        "lrs tried": shown["lrs"],
        "lr_max_stable": ["none held" if _missing(v) else _level(v) for v in shown["lr_max_stable"]],
        "lr_min_unstable": ["none failed" if _missing(v) else _level(v) for v in shown["lr_min_unstable"]],
        "monotone": ["yes" if m else "no" for m in shown["monotone"]]}))
    if len(table) > MAX_STABILITY_ROWS:
        rep.para(f"The {MAX_STABILITY_ROWS} least stable of {len(table)} configurations; all are in `stability.csv`.")
    return table


def speed(rep: Report, runs: pd.DataFrame, flags: pd.DataFrame, out: Path, scope: str = "Over every run.",
          roles: dict[str, list[str]] | None = None) -> Path | None:
    """Speed per level of each factor of A.SPEED_BY that varies (a descriptor of another factor's
    levels, such as model.activation beside model.name, is no factor: left out), over `runs`
    (the runs not explained by their inputs, as `scope` says), and the steps to the first
    non-finite value."""
    from nanbench.summary import plots
    rep.heading(2, "6. Speed")
    rep.para(scope)
    rep.para(SPEED_NOTE)
    descriptors = {a for attributes in (roles or {}).values() for a in attributes}
    by = [b for b in A.SPEED_BY if A.varies(runs, b) and b not in descriptors]
    table = T.speed_table(runs, by, flags)
    rep.table(pd.DataFrame({
        "factor": [("" if f == prev else f) for f, prev in zip(table["factor"], [None] + list(table["factor"][:-1]))],
        "level": [_level(v) for v in table["level"]], "runs": table["runs"],
        "steps/s": [_g(v) for v in table["steps_per_s"]], "samples/s": [_g(v) for v in table["samples_per_s"]],
        "trained": [f"{int(k)}/{int(n)}" for k, n in zip(table["trained"], table["runs"])],
        "steps to target": [_g(v) for v in table["steps_to_target"]],
        "s to target": [_g(v) for v in table["seconds_to_target"]],
        "first step s": [_g(v) for v in table["first_step_s"]], "runs that traced": table["traced"],
        "wall s": [_g(v) for v in table["wall_s"]]}))
    fig = plots.speed_chart(table, out / "speed.png")
    rep.image(fig, "Median steady-state steps/s and first-step (trace/compile) seconds per factor level")
    cols = "optimizer.name" if A.varies(runs, "optimizer.name") else None
    rows = A.LR if A.varies(runs, A.LR) else ("optimizer.name" if cols else None)
    if rows == cols:
        cols = None
    bad = runs["outcome"].isin(A.NONFINITE)
    if bad.any():
        rep.heading(3, "Steps to the first non-finite value")
        if rows is None:
            s = runs.loc[bad, "first_nonfinite_step"]
            rep.para(f"Median step {_g(s.median())} (min {_g(s.min())}, max {_g(s.max())}) over {int(bad.sum())} runs.")
        else:
            t = T.steps_to_nonfinite(runs, rows, cols)
            cells = pd.Series([f"{_g(m)} ({_g(lo)}–{_g(hi)}), n={n}" for m, lo, hi, n in
                               zip(t["median"], t["min"], t["max"], t["runs"])], index=t.index)
            wide = cells.unstack(cols) if cols else cells.to_frame("median step (min–max), runs")
            wide = wide.where(wide.notna(), "–")
            wide.columns = [_level(c) for c in wide.columns]
            wide.insert(0, rows + (f" \\ {cols}" if cols else ""), [_level(i) for i in wide.index])
            rep.para("Median step (0-based) of the first non-finite value, with min–max and run count.")
            rep.table(wide.reset_index(drop=True))
    return fig


def curves(rep: Report, sweep: RunTable, runs: pd.DataFrame, factors: list[str], out: Path, scope: str) -> Path | None:
    from nanbench.summary import plots
    rep.heading(2, "7. Representative runs")
    rep.para(scope)
    pairs = []
    for bad, good, factor in A.contrast_pairs(runs, factors):
        bad_curve = load_curve(sweep, bad["run_id"], bad["artifact_uri"])
        good_curve = load_curve(sweep, good["run_id"], good["artifact_uri"])
        if bad_curve is None or good_curve is None or bad_curve.empty or good_curve.empty:
            continue
        pairs.append((bad, good, factor, bad_curve, good_curve))
        rep.para(f"`{bad['run_name']}` ({bad['outcome']}, run `{bad['run_id']}`) beside the same configuration "
                 f"with {factor}={_level(good[factor])} ({good['outcome']}, run `{good['run_id']}`). Curves are "
                 f"per {bad_curve['unit'].iloc[0]} ({'steps.csv artifact' if bad_curve['unit'].iloc[0] == 'step' else 'metric history'}); "
                 "non-finite values are gaps, the dashed line the first non-finite step.")
    fig = plots.contrast_curves(pairs, out / "curves.png")
    if fig is None:
        rep.para("No pair of a non-finite and a finite run differing in one factor, with curves, was found.")
    rep.image(fig, "Loss and gradient norm: a non-finite run beside a finite one differing in one factor")
    return fig


def pooled_view(rep: Report, effects: pd.DataFrame, att: Attribution, factors: list[str], explained: int) -> None:
    """Main effects and importance over every run, the explained ones included."""
    rep.heading(2, "8. Pooled view: every run, the explained ones included", "pooled")
    if not explained:
        rep.para("No run was set aside as explained by its inputs: sections 1-7 are the pooled view.")
        return
    rep.para(f"The {explained:,} runs explained by their inputs are counted here too. A cause that explains "
             "itself dominates these tables (every level of every factor carries its runs), which is why the "
             "sections above set them aside; this view is kept for comparison.")
    rows, last = [], None
    for r in effects.itertuples(index=False):
        rows.append({"factor": r.factor if r.factor != last else "", "level": _level(r.level), "runs": r.runs,
                     "non-finite": r.nonfinite, "rate": _rate(r.rate), "95% CI": _ci(r.ci_low, r.ci_high)})
        last = r.factor
    rep.heading(3, "Main effects, pooled")
    rep.table(pd.DataFrame(rows))
    attribution(rep, att, factors, "Fitted on every run that ran.", "Attribution, pooled", 3)
