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


def check_device(requested: str) -> None:
    """``train.device=gpu`` on a machine with no GPU device file fails now, in well under a second,
    before TensorFlow is imported or any store exists. Where a GPU device is there, TensorFlow
    decides later (nanbench.run.resolve_device), still before anything is recorded."""
    if requested != "gpu" or sys.platform == "darwin":  # macOS: Metal, no device file to look for
        return
    if "tensorflow" in sys.modules:  # already loaded: ask it
        import tensorflow as tf
        if tf.config.list_physical_devices("GPU"):
            return
    elif any(Path("/dev").glob("nvidia[0-9]*")) or Path("/dev/dxg").exists() or Path("/dev/kfd").exists():
        return
    raise ConfigError("train.device", "auto or cpu on this machine (no GPU is visible)", "gpu")


def run_one(cfg: DictConfig) -> dict:
    try:
        spec = from_config(cfg)
        check_device(spec.train.device)
        from nanbench.tracking import check_uri
        check_uri(spec.tracking.uri)
        from nanbench.run import execute, resolve_device
        device = resolve_device(spec.train.device)  # before the store: a bad device creates nothing
        from nanbench.tracking import Tracker
        tracker = Tracker(spec.tracking)
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
