"""`python -m nanbench.studies.examples` (`make examples`): the documents' examples and claims,
measured, into examples.md, examples.csv and claims.csv."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from nanbench.spec import ConfigError, TrackingSpec
from nanbench.studies.claims.definitions import CLAIMS
from nanbench.studies.claims.run import run_claims
from nanbench.studies.documents import SEED
from nanbench.studies.examples.report import write as write_tables
from nanbench.studies.examples.as_written import AsWrittenProcess
from nanbench.studies.examples.definitions import ALL, EXAMPLES, EXPERIMENT
from nanbench.studies.examples.run import N_SEEDS, run_examples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nanbench.studies.examples", description=(
        "Run the documents' code examples as written and inside nanbench, judge every claim "
        "(examples and prose) by measurement, and write examples.md, examples.csv and claims.csv."))
    parser.add_argument("--out", default="results", help="output folder (default: results)")
    parser.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///results/mlflow.db"),
                        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or sqlite:///results/mlflow.db)")
    parser.add_argument("--epochs-cap", type=int, default=None,
                        help="run at most this many epochs per example and claim run (shortened runs, for tests)")
    parser.add_argument("--seeds", type=int, default=N_SEEDS,
                        help=f"seeds per example: 0 (the table's logged run) and the next ones, for the final "
                             f"loss's range and the verdicts (default {N_SEEDS})")
    parser.add_argument("--claims", default="all",
                        help="prose claims to check: all, none, or comma-separated ids (e.g. outliers,huber)")
    args = parser.parse_args(argv)
    if args.epochs_cap is not None and args.epochs_cap < 1:
        parser.error("--epochs-cap must be >= 1")
    if args.seeds < 1:
        parser.error("--seeds must be >= 1")

    known = {c.id: c for c in CLAIMS}
    if args.claims == "all":
        selected = CLAIMS
    elif args.claims == "none":
        selected = ()
    else:
        ids = [i.strip() for i in args.claims.split(",") if i.strip()]
        unknown = [i for i in ids if i not in known]
        if unknown:
            parser.error(f"--claims: unknown claim {unknown[0]!r} (known: {', '.join(known)})")
        selected = tuple(known[i] for i in ids)
    from nanbench.tracking import check_uri

    t0 = time.perf_counter()
    tracking = TrackingSpec(uri=args.tracking_uri, experiment=EXPERIMENT)
    try:
        check_uri(args.tracking_uri)
    except ConfigError as exc:
        print(f"nanbench: error: {exc}", file=sys.stderr)
        return 2
    # The second process executes the code blocks as written and then trains every example at
    # seeds 1.. while this one trains the claims' sweeps (2 cores: one each); the examples' own
    # timed and logged runs (seed 0) come after both, on a machine this command no longer loads.
    worker = AsWrittenProcess(EXAMPLES, epochs_cap=args.epochs_cap, seed_examples=ALL,
                              seeds=range(SEED + 1, SEED + args.seeds))
    judged = run_claims(tracking_uri=args.tracking_uri, epochs_cap=args.epochs_cap,
                        claims=selected) if selected else []
    t_claims = time.perf_counter() - t0
    written, seed_runs = worker.results()
    t_worker = time.perf_counter() - t0
    rows = run_examples(epochs_cap=args.epochs_cap, tracking=tracking, written=written, seed_runs=seed_runs,
                        n_seeds=args.seeds)
    other = f" and seeds {SEED + 1}-{SEED + args.seeds - 1}" if args.seeds > 1 else ""
    seconds = {"claims (this process)": t_claims,
               f"as written{other} (a second process, alongside; from the start)": t_worker,
               "examples at seed 0 (after both)": time.perf_counter() - t0 - t_worker}
    seconds["total"] = time.perf_counter() - t0
    paths = write_tables(Path(args.out), rows, judged, seconds=seconds)
    for path in paths:
        print(f"wrote {path}")
    print(", ".join(f"{k}: {v:.0f} s" for k, v in seconds.items()))
    return 0
