"""Summarize a sweep from its MLflow experiment: which factors make a run turn NaN or inf.

    python -m nanbench.summary --sweep NAME [--tracking-uri URI] [--out results/NAME]
                               [--parent-run-id ID | --all]

reads the child runs of the sweep's latest parent run (tag nanbench.role=parent), of
--parent-run-id, or with --all of every invocation (the latest run per configuration), and
writes to the output folder: summary.md, summary.html (self-contained: figures embedded as data
URIs, no CDN), runs.csv (one row per run), main_effects.csv, stability.csv and the PNG figures.
:func:`summarize` does the same for the sweep code and attaches the files to the parent run under
``summary/``. ``--benchmark N`` plants N synthetic runs in a temporary store and times the summary.

runs.csv writes the outcome ``nan`` as the word nan: read it with
``pd.read_csv(path, keep_default_na=False, na_values=[""])`` so that pandas keeps it a value;
empty cells are values that were not logged (no such step, or not finite).

Data flows one way: runtable (read MLflow) -> analysis (statistics) -> plots -> this report.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from nanbench import analysis as A
from nanbench.report import Report
from nanbench.runtable import (NoRunsError, SummaryError, SweepRuns, load_curve, load_runs,
                               log_summary_artifacts)

DEFAULT_URI = "sqlite:///results/mlflow.db"  # as conf/tracking/default.yaml
MAX_STABILITY_ROWS = 40
PEERS_NOTE = ("Hyperparameter-importance tools compute importance over completed trials only: "
              "Optuna's `get_param_importances` reads trials in state COMPLETE, and a trial whose "
              "objective is NaN is marked FAIL. The runs they drop are exactly the signal measured here, "
              "so the forest above is fitted on every run that trained, the non-finite ones included.")
SPEED_NOTE = ("What the figures measure: **steps/s** is steady-state training speed, the steps timed "
              "by `train_s` over `train_s` (the fit engine's first step and the fused engine's trace "
              "are left out); **samples/s** is steps/s times the mean batch; **first step** "
              "(`first_step_s`) is the first call, including tracing and compilation, its median taken "
              "over the runs that paid one (the fused engine traces once per Hydra job; the job's later "
              "runs reuse the graph and record 0 s); **wall** is "
              "data + build + first step + training (MLflow logging excluded). The engine matters: "
              "`fit` runs Keras `Model.fit` with a forensic step, `fused` runs the whole training in one "
              "traced `tf.function`. All are medians over the runs that trained; timings of a shared "
              "machine are indicative, ratios within one sweep more than absolute values.")


# ---------------------------------------------------------------------------------------------
# Display strings. A missing number is shown as n/a, never as 0.


def _missing(v) -> bool:
    return v is None or (isinstance(v, (float, np.floating)) and not np.isfinite(v))


def _g(v, digits: int = 3) -> str:
    return "n/a" if _missing(v) else f"{v:.{digits}g}"


def _rate(v) -> str:
    return "n/a" if _missing(v) else f"{v:.3f}"


def _ci(lo, hi) -> str:
    return "n/a" if _missing(lo) or _missing(hi) else f"[{lo:.3f}, {hi:.3f}]"


def _level(v) -> str:
    return A._fmt(v)


def _factor_name(factor: str, aliases: dict[str, list[str]]) -> str:
    others = aliases.get(factor) or []
    return factor + "".join(f" ≡ {o}" for o in others)


# ---------------------------------------------------------------------------------------------
# Sections


def _header(rep: Report, sweep: SweepRuns, runs: pd.DataFrame, constant: dict, aliases: dict,
            notes: list[str]) -> None:
    rep.heading(1, f"nanbench summary: {sweep.experiment}")
    if sweep.scope == "experiment":
        parent = ("every invocation: all runs of the experiment but parents and KILLED ones, the latest "
                  "per configuration")
    elif sweep.parent_run_id:
        parent = f"the children of parent run `{sweep.parent_run_id}`"
    else:
        parent = "every run (the experiment has no parent run)"
    rep.para(f"Experiment `{sweep.experiment}` (id {sweep.experiment_id}), {parent}; tracking URI "
             f"`{sweep.tracking_uri}`; {len(runs)} runs; generated "
             f"{datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}.")
    for note in notes:
        rep.para(note)
    if sweep.scope == "parent" and sweep.other_runs:
        rep.para(f"The experiment holds {sweep.other_runs} more runs under other parent runs (earlier "
                 "invocations; a resumed sweep skips configurations already finished). "
                 f"`python -m nanbench.summary --sweep {sweep.experiment} --all` summarizes them together.")
    counts = runs["outcome"].value_counts()
    order = [o for o in ("converged", "stalled", "diverged", "inf", "nan", "error") if o in counts]
    order += [o for o in counts.index if o not in order]
    rep.table(pd.DataFrame({"outcome": order, "runs": [int(counts[o]) for o in order],
                            "share": [f"{counts[o] / len(runs):.3f}" for o in order]}))
    rep.para("Conventions: a run is **non-finite** when its outcome is `nan` or `inf`. Rates are "
             "non-finite runs over runs that trained (outcome `error` excluded), with 95% Wilson "
             "score intervals (Wilson 1927). `n/a` means no data; it never stands for 0.")
    if sweep.software:
        rep.para("Software: " + "; ".join(
            f"{key} " + ", ".join(f"`{v}`" + (f" ({n} runs)" if len(values) > 1 else "")
                                  for v, n in sorted(values.items()))
            for key, values in sweep.software.items()) + ".")
    rep.heading(2, "Factors")
    shown = list(aliases)
    rep.para((f"{len(shown)} factor{' varies' if len(shown) == 1 else 's vary'} and {'is' if len(shown) == 1 else 'are'} "
              "tabulated below: "
              + ", ".join(f"`{_factor_name(f, aliases)}` ({runs[f].nunique()} levels)" for f in shown) + ".")
             if shown else "No factor varies in this sweep.")
    if any(aliases.values()):
        rep.para("`a ≡ b`: the two factors split the runs identically (they were swept together), "
                 "so they are shown once, under the first.")
    rep.para("Constant in every run: " + ", ".join(f"`{k}={_level(v)}`" for k, v in constant.items()) + ".")
    errors = runs.loc[runs["outcome"].eq("error"), "error"].fillna("(no message)")
    if len(errors):
        rep.heading(3, "Runs that did not train (outcome error)")
        counts = errors.str.slice(0, 160).value_counts()
        rep.table(pd.DataFrame({"error": counts.index, "runs": counts.to_numpy()}).head(20))


def _main_effects(rep: Report, effects: pd.DataFrame, aliases: dict, out: Path) -> Path | None:
    from nanbench import plots
    rep.heading(2, "1. Main effects")
    if effects.empty:
        rep.para("No factor varies.")
        return None
    rows = []
    last = None
    for r in effects.itertuples(index=False):
        rows.append({"factor": _factor_name(r.factor, aliases) if r.factor != last else "",
                     "level": _level(r.level), "runs": r.runs, "NaN": r.nan, "inf": r.inf,
                     "diverged": r.diverged, "error": r.error, "non-finite": r.nonfinite,
                     "rate": _rate(r.rate), "95% CI": _ci(r.ci_low, r.ci_high)})
        last = r.factor
    rep.table(pd.DataFrame(rows))
    fig = plots.main_effects_chart(effects, list(aliases), out / "main_effects.png")
    rep.image(fig, "Non-finite rate per factor level with 95% Wilson intervals")
    return fig


def _two_way_display(cells: pd.DataFrame, rows: str, cols: str) -> pd.DataFrame:
    text = pd.Series([f"{_rate(rt)} ({int(k)}/{int(n)})" for k, n, rt in
                      zip(cells["nonfinite"], cells["trained"], cells["rate"])], index=cells.index)
    wide = text.unstack(cols)
    wide = wide.loc[:, [c for c in wide.columns if wide[c].notna().any()]]
    wide = wide.loc[[i for i in wide.index if wide.loc[i].notna().any()]]
    wide = wide.where(wide.notna(), "–")  # no run in that cell
    wide.columns = [_level(c) for c in wide.columns]
    wide.insert(0, f"{rows} \\ {cols}", [_level(i) for i in wide.index])
    return wide.reset_index(drop=True)


def _interactions(rep: Report, runs: pd.DataFrame, flags: pd.DataFrame, out: Path) -> Path | None:
    from nanbench import plots
    rep.heading(2, "2. Interactions")
    rep.para("Cells: non-finite rate (non-finite/trained runs); – marks a combination the sweep did not run.")
    dataset_varies = A.varies(runs, "dataset.name")
    shown = 0
    for rows, cols in A.INTERACTIONS:
        if not (A.varies(runs, rows) and A.varies(runs, cols)):
            continue
        shown += 1
        pooled = A.two_way(runs, rows, cols, flags)
        rep.heading(3, f"{rows} × {cols}")
        rep.table(_two_way_display(pooled, rows, cols))
        if not dataset_varies or "dataset.name" in (rows, cols):
            continue
        same = []
        for dataset in runs["dataset.name"].cat.categories:
            mask = (runs["dataset.name"] == dataset).to_numpy()
            if not mask.any():
                continue
            part = A.two_way(runs.loc[mask], rows, cols, flags.loc[mask])
            change = A.picture_change(pooled, part)
            if change >= A.PICTURE_CHANGE:
                rep.para(f"Within dataset `{dataset}` (a cell's rate moves by up to {change:.2f}):")
                rep.table(_two_way_display(part, rows, cols))
            else:
                same.append(f"`{dataset}`")
        if same:
            rep.para(f"Per dataset the picture stays within {A.PICTURE_CHANGE:.2f} of the pooled table for "
                     + ", ".join(same) + ".")
    if not shown:
        rep.para("None of the tabulated pairs (" + ", ".join(f"{r} × {c}" for r, c in A.INTERACTIONS)
                 + ") has both sides varying.")
    fig = plots.nonfinite_heatmaps(runs, flags, out / "heatmap_nonfinite.png")
    rep.image(fig, "Non-finite rate over learning rate × optimizer, one panel per dataset × preprocessing "
                   "(cells: non-finite/trained runs; grey: not run)")
    return fig


def _attribution(rep: Report, att: A.Attribution, aliases: dict) -> None:
    rep.heading(2, "3. Attribution")
    for note in att.notes:
        rep.para(note)
    if not att.rules:
        return
    rep.para(f"A decision tree (depth {att.depth}, scikit-learn) predicts non-finite from the "
             f"{len(aliases)} varying factors over the {att.runs} runs that trained ({att.nonfinite} "
             "non-finite); categorical factors are one-hot, numeric ones (the learning rate) kept "
             "numeric, and each threshold is read back as the grid level it separates. Each line is "
             "a leaf holding non-finite runs: its conditions → the leaf's verdict, non-finite/runs "
             "(support = runs in the leaf, purity = the fraction non-finite).")
    lines = [f"{r.text}   (purity {r.purity:.0%}, support {r.runs})" for r in att.rules]
    rep.code("\n".join(lines))
    covered = sum(r.nonfinite for r in att.rules if r.predicts_nonfinite)
    rep.para(f"The non-finite leaves hold {covered} of the {att.nonfinite} non-finite runs.")
    rep.para("Factor importance: a random forest fitted on the same runs; the impurity decrease of "
             "each one-hot column is summed back to its factor (importance sums to 1). `spread` is "
             "the difference between the highest and lowest level rate of the factor on its own.")
    imp = att.importance
    rep.table(pd.DataFrame({"rank": imp["rank"], "factor": [_factor_name(f, aliases) for f in imp["factor"]],
                            "importance": [f"{v:.3f}" for v in imp["importance"]],
                            "spread": [_rate(v) for v in imp["spread"]]}))
    rep.para(PEERS_NOTE)


def _sources(rep: Report, runs: pd.DataFrame, flags: pd.DataFrame, factors: list[str], aliases: dict) -> None:
    rep.heading(2, "4. Where non-finite values start")
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
        "factor": [("" if f == prev else _factor_name(f, aliases)) for f, prev in
                   zip(table["factor"], [None] + list(table["factor"][:-1]))],
        "level": [_level(v) for v in table["level"]], "non-finite": table["nonfinite"],
        **{s: table[s] for s in A.SOURCES}, "NaN": table["nan"], "inf before NaN": table["inf_before_nan"]}))


def _stability(rep: Report, runs: pd.DataFrame, flags: pd.DataFrame, factors: list[str]) -> pd.DataFrame:
    rep.heading(2, "5. Stability by configuration")
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


def _speed(rep: Report, runs: pd.DataFrame, flags: pd.DataFrame, out: Path) -> Path | None:
    from nanbench import plots
    rep.heading(2, "6. Speed")
    rep.para(SPEED_NOTE)
    by = [b for b in A.SPEED_BY if A.varies(runs, b)]
    table = A.speed_table(runs, by, flags)
    rep.table(pd.DataFrame({
        "factor": [("" if f == prev else f) for f, prev in zip(table["factor"], [None] + list(table["factor"][:-1]))],
        "level": [_level(v) for v in table["level"]], "runs": table["runs"],
        "steps/s": [_g(v) for v in table["steps_per_s"]], "samples/s": [_g(v) for v in table["samples_per_s"]],
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
            t = A.steps_to_nonfinite(runs, rows, cols)
            cells = pd.Series([f"{_g(m)} ({_g(lo)}–{_g(hi)}), n={n}" for m, lo, hi, n in
                               zip(t["median"], t["min"], t["max"], t["runs"])], index=t.index)
            wide = cells.unstack(cols) if cols else cells.to_frame("median step (min–max), runs")
            wide = wide.where(wide.notna(), "–")
            wide.columns = [_level(c) for c in wide.columns]
            wide.insert(0, rows + (f" \\ {cols}" if cols else ""), [_level(i) for i in wide.index])
            rep.para("Median step (0-based) of the first non-finite value, with min–max and run count.")
            rep.table(wide.reset_index(drop=True))
    return fig


def _curves(rep: Report, sweep: SweepRuns, runs: pd.DataFrame, factors: list[str], out: Path) -> Path | None:
    from nanbench import plots
    rep.heading(2, "7. Representative runs")
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


# ---------------------------------------------------------------------------------------------
# Files and entry points


# Every file a summary writes; earlier versions are removed first, so none is left stale.
OUTPUT_FILES = ("summary.md", "summary.html", "runs.csv", "main_effects.csv", "stability.csv",
                "main_effects.png", "heatmap_nonfinite.png", "speed.png", "curves.png")
RUN_COLUMNS = ("outcome", "first_nonfinite_step", "first_nonfinite_source", "first_inf_step", "first_nan_step",
               "initial_loss", "final_loss", "min_loss", "steps_run", "steps_per_s", "samples_per_s",
               "first_step_s", "train_s", "wall_s", "device", "engine", "status", "error", "config_hash")


def runs_csv(runs: pd.DataFrame, factors: list[str], path: Path) -> None:
    """One row per run: id and name, every factor, the outcome and forensics, losses, speed.
    Empty cells are values that were not logged: no such step, or not finite."""
    columns = ["run_id", "run_name", *factors, *[c for c in RUN_COLUMNS if c in runs]]
    runs[columns].to_csv(path, index=False)


def summarize(experiment: str, tracking_uri: str, out_dir: Path, parent_run_id: str | None = None, *,
              scope: str = "parent", fast: bool = True, log_artifacts: bool = True) -> dict:
    """Summarize one sweep into `out_dir` and attach the files to its parent run under summary/.

    Reads the children of `parent_run_id` (default: the experiment's latest parent run); with
    scope="experiment", every child run of the experiment, the latest per configuration.
    Returns what it found and wrote: runs, outcomes, rules, importance order, files, seconds.
    """
    t0 = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name in OUTPUT_FILES:
        (out / name).unlink(missing_ok=True)
    notes = []
    try:
        sweep = load_runs(experiment, tracking_uri, parent_run_id, scope=scope, fast=fast)
    except NoRunsError:
        if scope != "parent":
            raise
        # a resumed sweep with nothing left to run: its new parent has no children
        sweep = load_runs(experiment, tracking_uri, parent_run_id, scope="experiment", fast=fast)
        notes.append(f"The parent run `{sweep.parent_run_id}` has no child runs (a resumed sweep finds "
                     "every configuration already finished): this summary covers every invocation.")
    varying, constant = A.split_factors(sweep.runs, sweep.factors)
    aliases = A.alias_groups(sweep.runs, varying)
    shown = list(aliases)
    runs = A.add_composites(sweep.runs, varying)
    flags = A.outcome_flags(runs)
    effects = A.main_effects(runs, shown, flags)
    rep = Report()
    _header(rep, sweep, runs, constant, aliases, notes)
    _main_effects(rep, effects, aliases, out)
    _interactions(rep, runs, flags, out)
    att = A.attribution(runs, shown, flags, effects)
    _attribution(rep, att, aliases)
    _sources(rep, runs, flags, shown, aliases)
    stability = _stability(rep, runs, flags, shown)
    _speed(rep, runs, flags, out)
    _curves(rep, sweep, runs, shown, out)

    runs_csv(runs, sweep.factors, out / "runs.csv")
    effects.to_csv(out / "main_effects.csv", index=False)
    if not stability.empty:
        stability.to_csv(out / "stability.csv", index=False)
    rep.heading(2, "Files")
    files = [name for name in OUTPUT_FILES if name.endswith((".csv", ".png")) and (out / name).exists()]
    rep.bullets([f"`{name}`" for name in files] + ["`summary.md`", "`summary.html`"])
    (out / "summary.md").write_text(rep.markdown())
    (out / "summary.html").write_text(rep.html(f"nanbench summary: {experiment}"))
    files += ["summary.md", "summary.html"]
    logged = log_summary_artifacts(sweep, [out / name for name in files]) if log_artifacts else False
    return {
        "experiment": experiment, "tracking_uri": tracking_uri, "parent_run_id": sweep.parent_run_id,
        "out_dir": str(out), "runs": len(runs),
        "outcomes": {k: int(v) for k, v in runs["outcome"].value_counts().items()},
        "nonfinite": int(flags["nonfinite"].sum()), "varying": shown,
        "rules": [r.text for r in att.rules], "importance": list(att.importance["factor"]),
        "files": files, "logged_to_parent": logged,
        "seconds": round(time.perf_counter() - t0, 3),
    }


def benchmark_summary(n_runs: int = 10_000, workdir: Path | None = None, *, cold: bool = False,
                      details: bool = False) -> float | dict:
    """Seconds that summarize() takes on `n_runs` synthetic runs (the first call in this process,
    so lazy imports of scikit-learn and Matplotlib included).

    The runs are planted by nanbench.synthetic (real RunResults recorded by Tracker.log, written in
    bulk SQL) into a temporary SQLite store, removed afterwards unless `workdir` is given. With
    `cold`, a fresh `python -m nanbench.summary` process is timed too (interpreter start and every
    import included). `details` returns a dict: runs, plant_s, summarize_s[, cold_process_s].
    """
    import shutil
    import subprocess
    import tempfile

    from nanbench import synthetic

    tmp = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="nanbench-bench-"))
    tmp.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{tmp.resolve() / 'mlflow.db'}"
    try:
        t = time.perf_counter()
        synthetic.plant_sweep(uri, "bench", synthetic.BENCH_GRID, n_runs)
        result = {"runs": n_runs, "plant_s": round(time.perf_counter() - t, 2)}
        t = time.perf_counter()
        summarize("bench", uri, tmp / "summary")
        result["summarize_s"] = round(time.perf_counter() - t, 2)
        if cold:
            t = time.perf_counter()
            subprocess.run([sys.executable, "-m", "nanbench.summary", "--sweep", "bench", "--tracking-uri", uri,
                            "--out", str(tmp / "summary-cold")], check=True, capture_output=True)
            result["cold_process_s"] = round(time.perf_counter() - t, 2)
        return result if details else result["summarize_s"]
    finally:
        if workdir is None:
            shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nanbench.summary", description=__doc__.split("\n\n")[0])
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--sweep", help="sweep name = MLflow experiment name")
    what.add_argument("--benchmark", type=int, metavar="N", help="time the summary of N synthetic runs")
    parser.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI", DEFAULT_URI),
                        help=f"MLflow tracking URI (default: $MLFLOW_TRACKING_URI or {DEFAULT_URI})")
    parser.add_argument("--out", type=Path, help="output folder (default: results/SWEEP)")
    parser.add_argument("--parent-run-id", help="summarize this parent run's children (default: the latest)")
    parser.add_argument("--all", action="store_true",
                        help="every child run of the experiment (all invocations of a resumed sweep), "
                             "the latest per configuration; attached to the latest parent run")
    args = parser.parse_args(argv)
    if args.benchmark is not None:
        print(json.dumps(benchmark_summary(args.benchmark, cold=True, details=True)), flush=True)
        return 0
    try:
        info = summarize(args.sweep, args.tracking_uri, args.out or Path("results") / args.sweep,
                         args.parent_run_id, scope="experiment" if args.all else "parent")
    except SummaryError as exc:
        print(f"nanbench.summary: error: {exc}", file=sys.stderr, flush=True)
        return 2
    where = f"; attached to parent run {info['parent_run_id']} under summary/" if info["logged_to_parent"] else ""
    print(f"{info['runs']} runs, {info['nonfinite']} non-finite -> {info['out_dir']}/summary.md, "
          f"summary.html{where}", flush=True)
    for rule in info["rules"][:3]:
        print(f"  {rule}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
