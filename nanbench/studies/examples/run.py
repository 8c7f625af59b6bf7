"""`make examples`' examples half: every example and variant trained inside nanbench at seed 0
and logged to MLflow (experiment ``examples``), the other seeds and the as-written records taken
from the worker process, then every claim judged over the seeds and the verdicts tagged on the runs.
"""

from __future__ import annotations

import time

from nanbench.spec import TrackingSpec
from nanbench.studies.documents import SEED
from nanbench.studies.examples.as_written import AsWrittenProcess
from nanbench.studies.examples.definitions import ALL, EXPERIMENT
from nanbench.studies.examples.in_nanbench import capped, run_in_nanbench
from nanbench.studies.examples.judge import judge
from nanbench.studies.examples.records import AsWritten, Row, SeedRun

N_SEEDS = 5                  # seeds per example: 0 (the logged run) and 1-4, for the final loss's range


def run_examples(*, epochs_cap: int | None = None, tracking: TrackingSpec | None = None,
                 examples=ALL, written: dict[str, AsWritten] | None = None,
                 seed_runs: dict[str, list[SeedRun]] | None = None, n_seeds: int = N_SEEDS) -> list[Row]:
    """Run every example inside nanbench at seed 0 and log each to MLflow; take the other seeds'
    runs (and the as-written records) from `seed_runs` (and `written`), or run them in the worker
    process when not given; judge each claim over the seeds."""
    from nanbench.tracking import Tracker

    tracking = tracking or TrackingSpec(experiment=EXPERIMENT)
    tracker = Tracker(tracking)
    if written is None or seed_runs is None:
        worker = AsWrittenProcess([e for e in examples if e.code is not None] if written is None else (),
                                  epochs_cap=epochs_cap, seed_examples=examples if seed_runs is None else (),
                                  seeds=range(SEED + 1, SEED + n_seeds))
        got_written, got_seeds = worker.results()
        written = got_written if written is None else written
        seed_runs = got_seeds if seed_runs is None else seed_runs
    rows: dict[str, Row] = {}
    for ex in examples:
        start = time.time()
        result, caught, losses = run_in_nanbench(ex, epochs_cap=epochs_cap, tracking=tracking)
        changes = ex.changes + capped(ex, epochs_cap)[1]
        aw = written.get(ex.key) if ex.base is None else None
        rows[ex.key] = Row(example=ex, result=result, as_written=aw, warnings=caught, losses=losses,
                           changes=changes, seeds=[SeedRun.of(SEED, result), *seed_runs.get(ex.key, [])])
        tags = {"doc": ex.doc, "example": ex.example, "example_key": ex.key, "ran_as": rows[ex.key].ran_as,
                "claim": ex.claim[:500], "changes": " | ".join(changes)[:5000] or "none"}
        if aw is not None:
            tags["as_written"] = aw.status[:5000]
        result.run_id = tracker.log(result, experiment=tracking.experiment, tags=tags, start_time=start)
    for row in rows.values():  # partners first need to exist: judge after every run
        row.verdict, row.evidence = judge(row, rows)
    for row in rows.values():  # point each example to what its variants showed
        shown = [r for r in rows.values() if r.example.base == row.example.key and r.verdict != "control"]
        if shown:
            row.evidence += " Variants: " + "; ".join(f"{r.example.label}: {r.verdict}" for r in shown) + "."
        rng = row.final_loss_range
        tags = {"verdict": row.verdict,
                "seeds_nonfinite": f"{sum(s.nonfinite for s in row.all_seeds)}/{len(row.all_seeds)}"}
        if rng is not None:
            tags["final_loss_seed_range"] = f"{rng[0]!r}..{rng[1]!r}"
        tracker.annotate(row.result.run_id, tags=tags)
    return list(rows.values())
