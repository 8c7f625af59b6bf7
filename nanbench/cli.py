"""The Hydra application behind `python -m nanbench`.

Config is validated into a RunSpec before anything is trained or recorded; a bad value exits with
status 2 and one line on stderr naming the key. The last stdout line of a run is its JSON summary.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import hydra
from omegaconf import DictConfig

from nanbench.spec import ConfigError, from_config

CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "conf")


def fail(message: str) -> None:
    print(f"nanbench: error: {message}", file=sys.stderr, flush=True)
    sys.exit(2)


def run_one(cfg: DictConfig) -> dict:
    from nanbench.run import execute, resolve_device
    from nanbench.tracking import Tracker

    try:
        spec = from_config(cfg)
        tracker = Tracker(spec.tracking)
        device = resolve_device(spec.train.device)
    except ConfigError as exc:
        fail(str(exc))
    start = time.time()
    result = execute(spec, device)
    result.run_id = tracker.log(result, start_time=start)
    print(result.to_json(), flush=True)
    return result.summary()


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def _hydra_main(cfg: DictConfig):
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if HydraConfig.get().mode == RunMode.MULTIRUN:
        from nanbench.sweep import run_job
        return run_job(cfg)
    summary = run_one(cfg)
    if summary["outcome"] == "error":
        print(f"nanbench: run failed: {summary['error']}", file=sys.stderr, flush=True)
        sys.exit(1)
    return summary


def main() -> None:
    _hydra_main()
    from nanbench import sweep
    if sweep.exit_status:
        sys.exit(sweep.exit_status)
