"""`python -m nanbench.studies.boundary`: ``--grid FILE`` runs a sweep file's searches in this
process (nanbench.studies.boundary.grid); anything else is the Hydra app (one search, or ``-m``)."""

from __future__ import annotations

import argparse
import sys

from nanbench.studies.boundary.app import hydra_app
from nanbench.studies.boundary.grid import run_grid


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if any(a == "--grid" or a.startswith("--grid=") for a in argv):
        parser = argparse.ArgumentParser(
            prog="python -m nanbench.studies.boundary",
            description="One stability-boundary search per configuration of a grid file.")
        parser.add_argument("--grid", required=True, help="grid file, e.g. sweeps/boundaries.yaml")
        parser.add_argument("--out", default="results", help="folder for boundaries.{json,md,png}")
        parser.add_argument("overrides", nargs="*",
                            help="Hydra overrides added to every configuration, e.g. tracking.uri=...")
        args = parser.parse_args(argv)
        run_grid(args.grid, args.out, args.overrides)
        return
    hydra_app()()
