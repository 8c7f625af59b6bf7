"""`python -m nanbench.summary --sweep NAME` (`make summary`): re-summarize a sweep from its MLflow
experiment into results/NAME/, and print its findings."""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

from nanbench.summary import DEFAULT_URI, summarize
from nanbench.tracking.reader import SummaryError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nanbench.summary", description="Re-summarize a sweep from its MLflow experiment.")
    parser.add_argument("--sweep", required=True, help="sweep name = MLflow experiment name")
    parser.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI", DEFAULT_URI),
                        help=f"MLflow tracking URI (default: $MLFLOW_TRACKING_URI or {DEFAULT_URI})")
    parser.add_argument("--out", type=Path, help="output folder (default: results/SWEEP)")
    parser.add_argument("--parent-run-id", help="summarize this parent run's children (default: the latest)")
    parser.add_argument("--all", action="store_true",
                        help="every child run of the experiment (all invocations of a resumed sweep), "
                             "the latest per configuration; attached to the latest parent run")
    args = parser.parse_args(argv)
    from nanbench.validate import NAME_ALLOWED, check_name_ok
    if args.out is None and not check_name_ok(args.sweep):  # results/NAME must stay under results/
        print(f"nanbench.summary: error: --sweep must be {NAME_ALLOWED}, or come with --out FOLDER "
              f"(got {args.sweep!r})", file=sys.stderr, flush=True)
        return 2
    try:
        info = summarize(args.sweep, args.tracking_uri, args.out or Path("results") / args.sweep,
                         args.parent_run_id, scope="experiment" if args.all else "parent")
    except SummaryError as exc:
        print(f"nanbench.summary: error: {exc}", file=sys.stderr, flush=True)
        return 2
    except OSError as exc:  # a full disk, a read-only folder: the previous summary is left as it was
        where = args.out or Path("results") / args.sweep
        print(f"nanbench.summary: error: could not write the summary into {where}/ ({exc.strerror or exc}); "
              "a summary there before is left as it was", file=sys.stderr, flush=True)
        return 1
    where = f"; attached to parent run {info['parent_run_id']} under summary/" if info["logged_to_parent"] else ""
    print(f"{info['runs']} runs, {info['nonfinite']} non-finite -> {info['out_dir']}/summary.md, "
          f"summary.html{where}", flush=True)
    for i, text in enumerate(info["findings"], 1):  # the findings, without their links
        print(f"  {i}. " + re.sub(r" \(\[table\]\(#[\w-]+\)\)$", "", text).replace("`", ""), flush=True)
    print("  rules (decision tree, leaves predicting non-finite):", flush=True)
    for rule in info["rules"][:3]:
        print(f"    {rule}", flush=True)
    return 0
