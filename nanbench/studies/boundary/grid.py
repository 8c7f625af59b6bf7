"""Grid mode (`make boundaries`): one search per job of a Hydra sweep file, all in this process.

The jobs are the sweep file's ``hydra.sweeper.params`` expanded as Hydra's basic sweeper expands
them (nanbench.config.sweep_jobs), each composed as `python -m nanbench.studies.boundary -m`
would (nanbench.config.compose), and all validated before anything trains.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from nanbench.config import compose, sweep_jobs
from nanbench.spec import ConfigError
from nanbench.studies.boundary.report import write_plot, write_table
from nanbench.studies.boundary.run import find_boundary
from nanbench.studies.boundary.spec import fail, prepare


def load_grid(path: str | Path, extra: list[str] | None = None) -> list[list[str]]:
    """The jobs of a sweep file (e.g. sweeps/boundaries.yaml), as Hydra's basic sweeper expands
    its ``hydra.sweeper.params``: one override list per combination, in Hydra's order.

    `extra` overrides apply first, so ``hydra.sweeper.params.dataset=doc000_clean`` narrows the grid.
    """
    jobs = sweep_jobs(path, list(extra or []))
    if not any(jobs):  # no hydra.sweeper.params: the product of no axes is one empty job
        raise ConfigError("hydra.sweeper.params", f"a mapping of key -> options in {Path(path)}", None)
    return [list(job) for job in jobs]


def compose_job(path: str | Path, job: list[str], extra: list[str] | None = None):
    """One job of a sweep file, composed exactly as `python -m nanbench.studies.boundary -m` would."""
    path = Path(path)
    return compose([*(extra or []), *job], config_name=path.stem, config_dir=path.parent)


def run_grid(grid_path: str | Path, out_dir: str | Path, extra: list[str] | None = None) -> list[dict]:
    """One search per job of a sweep file, in this process; writes boundaries.{json,md,png} to out_dir.

    Every job is composed and validated before anything is trained, so a bad grid fails at once
    with one line naming the key and the job.
    """
    from nanbench.run import resolve_device
    from nanbench.tracking import Tracker

    t0 = time.perf_counter()
    extra = list(extra or [])
    try:
        jobs = load_grid(grid_path, extra)
    except ConfigError as exc:
        fail(f"{grid_path}: {exc}")
    except Exception as exc:  # noqa: BLE001 - missing file, bad YAML or override syntax
        fail(f"{grid_path}: {type(exc).__name__}: {exc}".replace("\n", " "))
    prepared, trackers, devices = [], {}, {}
    for job in jobs:
        where = f" (job: {' '.join(job)})"
        try:
            spec, bs = prepare(compose_job(grid_path, job, extra))
            if spec.tracking not in trackers:
                trackers[spec.tracking] = Tracker(spec.tracking)
            if spec.train.device not in devices:
                devices[spec.train.device] = resolve_device(spec.train.device)
        except ConfigError as exc:
            fail(f"{exc}{where}")
        except Exception as exc:  # noqa: BLE001 - Hydra cannot compose it (unknown option, bad value)
            fail(f"{type(exc).__name__}: {exc}{where}".replace("\n", " "))
        prepared.append((job, spec, bs))

    summaries = []
    for i, (job, spec, bs) in enumerate(prepared, 1):
        result = find_boundary(spec, bs, tracker=trackers[spec.tracking], device=devices[spec.train.device])
        s = result.summary()
        s["overrides"] = job
        summaries.append(s)
        theory_part = f"; theory {s['lr_theory']:.3g}" if s["lr_theory"] is not None else ""
        print(f"[{i}/{len(prepared)}] {' '.join(job)}: {s['note']}; {s['trains_note']}{theory_part} "
              f"({s['evaluations']} runs, {s['wall_s']:.1f} s)", flush=True)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "boundaries.json").write_text(json.dumps(summaries, indent=1, allow_nan=False) + "\n")
    write_table(summaries, out / "boundaries.md",
                command=" ".join(["python -m nanbench.studies.boundary --grid", str(grid_path), *extra]))
    write_plot(summaries, out / "boundaries.png")
    print(json.dumps({"configurations": len(summaries), "json": str(out / "boundaries.json"),
                      "table": str(out / "boundaries.md"), "plot": str(out / "boundaries.png"),
                      "wall_s": time.perf_counter() - t0}), flush=True)
    return summaries
