"""Summarize a sweep from its MLflow experiment: which factors make a run turn NaN or inf.

    python -m nanbench.summary --sweep NAME [--tracking-uri URI] [--out results/NAME]
                               [--parent-run-id ID | --all]

reads the child runs of the sweep's latest parent run (tag nanbench.role=parent), of
--parent-run-id, or with --all of every invocation (the latest run per configuration), and
writes to the output folder: summary.md, summary.html (self-contained: figures embedded as data
URIs, no CDN), runs.csv (one row per run), main_effects.csv (the runs not explained by their
inputs), main_effects_pooled.csv (every run), stability.csv and the PNG figures.

The report opens with its findings (nanbench.summary.findings): the causes that explain their runs, set
aside, then where the other non-finite runs concentrate, how the rate moves along the learning
rate and what would have prevented them, each linked to the table behind it. The numbered
sections (nanbench.summary.sections) are computed on the runs not explained by their inputs; the
last one is the pooled view of every run.
:func:`summarize` does the same for the sweep code and attaches the files to the parent run under
``summary/``.

runs.csv writes the outcome ``nan`` as the word nan: read it with
``pd.read_csv(path, keep_default_na=False, na_values=[""])`` so that pandas keeps it a value;
empty cells are values that were not logged (no such step, or not finite).

Data flows one way: nanbench.tracking.reader (a RunTable) -> analysis, attribution, findings
(statistics) -> plots -> sections -> this report.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from nanbench.forensics import TRAINED_OUTCOMES
from nanbench.summary import analysis as A
from nanbench.summary import training as T
from nanbench.summary import findings as F
from nanbench.summary import sections as S
from nanbench.summary.attribution import attribution
from nanbench.summary.report import Report
from nanbench.tracking.reader import NoRunsError, SummaryError, RunTable, load_runs, log_summary_artifacts

DEFAULT_URI = "sqlite:///results/mlflow.db"  # as conf/tracking/default.yaml


# ---------------------------------------------------------------------------------------------
# The opening: findings, outcomes, factors


def _header(rep: Report, sweep: RunTable, runs: pd.DataFrame, notes: list[str]) -> None:
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


def _glance(rep: Report, runs: pd.DataFrame, flags: pd.DataFrame, found: F.Findings, out: Path) -> None:
    """The opening: one picture (trained and non-finite share along the learning rate, per
    optimizer, one line per clipping, the runs explained by their inputs set aside) and at most
    five sentences, each a count a reader can find again in the findings."""
    from nanbench.summary import plots
    keep = ~found.explained
    rest, rest_flags = runs.loc[keep], flags.loc[keep]
    rep.heading(2, "At a glance", "glance")
    n, ran = len(runs), int(flags["ran"].sum())
    sentences = [f"{n:,} runs: {int(flags['nonfinite'].sum()):,} turned non-finite, {int(flags['trained'].sum()):,} "
                 f"trained (converged or improving) and {int(flags['stalled'].sum()):,} stalled (finite, no real "
                 "progress)" + (f"; {n - ran:,} did not run" if ran < n else "") + "."]
    if found.explained.any():
        sentences.append(f"{int(found.explained.sum()):,} non-finite runs are explained by their inputs (a non-finite "
                         "value in the batch) and are set aside in the picture and below.")
    if found.group is not None and found.group.keep:
        sentences.append(f"The {'other ' if found.explained.any() else ''}non-finite runs concentrate where "
                         f"{found.group.text(rest)} "
                         "([findings](#findings)).")
    remedy = next((f.text for f in found.items if f.text.startswith("What would have prevented them")), None)
    if remedy is not None:
        sentences.append("The findings say which change prevented them, how many of its runs then trained and how "
                         "fast; a change whose runs stay finite without training is marked \"avoids NaN, does not "
                         "train\".")
    if A.LR in runs and runs[A.LR].nunique() > 1:
        fig = plots.overview_chart(T.shares_along_lr(rest, rest_flags), out / "overview.png")
        rep.image(fig, "Share of runs that trained (solid) and that turned non-finite (dashed) along the learning "
                       "rate, per optimizer, one colour per clipping; runs explained by their inputs set aside")
    rep.para(" ".join(sentences[:5]))


def _findings(rep: Report, found: F.Findings) -> None:
    rep.heading(2, "Findings", "findings")
    rep.para("Counts are runs (non-finite/runs unless said otherwise; runs with outcome error are left out of every rate), each with its rate and 95% Wilson "
             "interval in brackets; differences of rates carry Newcombe's interval. Every statement is derived "
             "from `runs.csv` by the rules of `nanbench.summary.findings`; each links to the table it rests on.")
    rep.numbered([f.text for f in found.items])


def _outcomes(rep: Report, sweep: RunTable, runs: pd.DataFrame) -> None:
    rep.heading(2, "Outcomes", "outcomes")
    counts = runs["outcome"].value_counts()
    order = A.outcome_order(counts.index)
    rep.table(pd.DataFrame({"outcome": order, "runs": [int(counts[o]) for o in order],
                            "share": [f"{counts[o] / len(runs):.3f}" for o in order]}))
    rep.para("Conventions: a run is **non-finite** when its outcome is `nan` or `inf`. Rates are "
             "non-finite runs over runs that ran (outcome `error` excluded), with 95% Wilson "
             "score intervals (Wilson 1927). `n/a` means no data; it never stands for 0.")
    if sweep.software:
        rep.para(f"Software and machine, counted over the {len(runs)} runs of this summary: " + "; ".join(
            f"{key} " + ", ".join(f"`{v}`" + (f" ({n} runs)" if len(values) > 1 else "")
                                  for v, n in sorted(values.items()))
            for key, values in sweep.software.items()) + ".")


def _factors(rep: Report, runs: pd.DataFrame, roles: dict[str, list[str]], constant: dict) -> None:
    rep.heading(2, "Factors")
    shown = list(roles)
    rep.para((f"{len(shown)} factor{' varies' if len(shown) == 1 else 's vary'} and {'is' if len(shown) == 1 else 'are'} "
              "tabulated below: " + ", ".join(f"`{f}` ({runs[f].nunique()} levels)" for f in shown) + ".")
             if shown else "No factor varies in this sweep.")
    for factor, attributes in roles.items():
        if not attributes:
            continue
        rep.para(f"Attributes of the levels of `{factor}`: each level has one value of these, so they are "
                 "descriptors of the level, not factors of their own, and appear in no table below.")
        table = A.attribute_table(runs, factor, attributes)
        prefix = factor.split(".")[0] + "."
        table.columns = [c[len(prefix):] if c.startswith(prefix) and c != factor else c for c in table.columns]
        rep.table(table.map(S._level))
    rep.para("Constant in every run: " + ", ".join(f"`{k}={S._level(v)}`" for k, v in constant.items()) + ".")
    errors = runs.loc[runs["outcome"].eq("error"), "error"].fillna("(no message)")
    if len(errors):
        rep.heading(3, "Runs that did not run (outcome error)")
        counts = errors.str.slice(0, 160).value_counts()
        rep.table(pd.DataFrame({"error": counts.index, "runs": counts.to_numpy()}).head(20))


def _behind(rep: Report, found: F.Findings) -> None:
    tables = [f for f in found.items if f.table is not None]
    if not tables:
        return
    rep.heading(2, "Behind the findings")
    for f in tables:
        rep.heading(3, f"Finding {found.items.index(f) + 1}: {f.title}", f.anchor)
        rep.table(f.table)
        if f.note:
            rep.para(f.note)



# ---------------------------------------------------------------------------------------------
# Files and entry points


# Every file a summary writes; earlier versions are removed first, so none is left stale.
OUTPUT_FILES = ("summary.md", "summary.html", "runs.csv", "main_effects.csv", "main_effects_pooled.csv",
                "stability.csv", "overview.png",
                "main_effects.png", "heatmap_nonfinite.png", "speed.png", "curves.png")
RUN_COLUMNS = ("outcome", "first_nonfinite_step", "first_nonfinite_source", "first_nonfinite_layer",
               "first_nonfinite_part", "first_inf_step", "first_nan_step",
               "initial_loss", "final_loss", "min_loss", "trained", "steps_to_target", "seconds_to_target", "steps_run", "skipped_steps", "steps_per_s", "samples_per_s",
               "dead_fraction", "dead_fraction_at_nonfinite", "first_step_s", "train_s", "wall_s", "device",
               "engine", "status", "error", "config_hash", "git_commit")


def runs_csv(runs: pd.DataFrame, factors: list[str], path: Path) -> None:
    """One row per run: id and name, every factor, the outcome and forensics, losses, speed.
    Empty cells are values that were not logged: no such step, or not finite."""
    runs = runs.assign(trained=runs["outcome"].isin(TRAINED_OUTCOMES))  # the outcome says it, old runs too
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
    # only once there is something to summarize: a sweep that does not exist leaves no folder.
    # Written beside `out` first and moved in whole (renames need no space), so that a full disk
    # leaves the previous summary as it was, not half of a new one
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        rep, info = build_report(sweep, staging, notes)
        out.mkdir(exist_ok=True)
        for name in OUTPUT_FILES:
            (out / name).unlink(missing_ok=True)
        for path in staging.iterdir():
            os.replace(path, out / path.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    files = info.pop("files")
    logged = log_summary_artifacts(sweep, [out / name for name in files]) if log_artifacts else False
    return {"experiment": experiment, "tracking_uri": tracking_uri, "parent_run_id": sweep.parent_run_id,
            "out_dir": str(out), **info, "files": files, "logged_to_parent": logged,
            "seconds": round(time.perf_counter() - t0, 3)}


def build_report(sweep: RunTable, out: Path, notes: list[str] = ()) -> tuple[Report, dict]:
    """Write the summary of `sweep`'s runs into `out` (summary.md, summary.html, the CSV files and
    figures): findings first, then the sections on the runs not explained by their inputs, then
    the pooled view. Returns the report and what it found (runs, outcomes, findings, rules, files)."""
    varying, constant = A.split_factors(sweep.runs, sweep.factors)
    roles = A.factor_roles(sweep.runs, varying)
    shown = list(roles)
    runs = A.add_composites(sweep.runs, varying)
    flags = A.outcome_flags(runs)
    found = F.derive(runs, flags, roles)
    keep = ~found.explained
    rest, rest_flags = runs.loc[keep], flags.loc[keep]
    n_explained = int(found.explained.sum())
    scope = (f"Over the {int(keep.sum()):,} runs not explained by their inputs: the {n_explained:,} runs whose "
             "first non-finite value was in the input batch are set aside ([finding 2](#finding-2)); "
             "[section 8](#pooled) counts every run." if n_explained else "Over every run.")
    effects = A.main_effects(rest, shown, rest_flags)
    pooled_effects = A.main_effects(runs, shown, flags) if n_explained else effects
    rep = Report()
    _header(rep, sweep, runs, notes)
    _glance(rep, runs, flags, found, out)
    _findings(rep, found)
    _outcomes(rep, sweep, runs)
    _factors(rep, runs, roles, constant)
    _behind(rep, found)
    S.main_effects(rep, effects, shown, out, scope)
    S.interactions(rep, rest, rest_flags, out, scope, (runs, flags))
    att = attribution(rest, shown, rest_flags, effects)
    S.attribution(rep, att, shown, scope)
    S.sources(rep, runs, flags, shown)
    stability = S.stability(rep, rest, rest_flags, shown, scope)
    S.speed(rep, rest, rest_flags, out, scope, roles)
    S.curves(rep, sweep, rest, shown, out, scope)
    if n_explained:
        S.pooled_view(rep, pooled_effects, attribution(runs, shown, flags, pooled_effects), shown, n_explained)
        pooled_effects.to_csv(out / "main_effects_pooled.csv", index=False)
    else:
        S.pooled_view(rep, pooled_effects, att, shown, 0)

    runs_csv(runs, sweep.factors, out / "runs.csv")
    effects.to_csv(out / "main_effects.csv", index=False)
    if not stability.empty:
        stability.to_csv(out / "stability.csv", index=False)
    rep.heading(2, "Files")
    files = [name for name in OUTPUT_FILES if name.endswith((".csv", ".png")) and (out / name).exists()]
    rep.bullets([f"`{name}`" for name in files] + ["`summary.md`", "`summary.html`"])
    (out / "summary.md").write_text(rep.markdown())
    (out / "summary.html").write_text(rep.html(f"nanbench summary: {sweep.experiment}"))
    files += ["summary.md", "summary.html"]
    return rep, {
        "runs": len(runs), "outcomes": {k: int(v) for k, v in runs["outcome"].value_counts().items()},
        "nonfinite": int(flags["nonfinite"].sum()), "explained": n_explained, "varying": shown,
        "findings": [f.text for f in found.items],
        "rules": [r.text for r in att.rules], "importance": list(att.importance["factor"]), "files": files}
