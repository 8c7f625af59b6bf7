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
from nanbench.validate import check_device

from nanbench.config import CONF_DIR

CONFIG_DIR = str(CONF_DIR)


def fail(message: str) -> None:
    print(f"nanbench: error: {message}", file=sys.stderr, flush=True)
    sys.exit(2)


def run_one(cfg: DictConfig) -> dict:
    try:
        spec = from_config(cfg)
        from nanbench.run import check_user_model
        check_user_model(spec)  # a user's model against the data (Keras): before any store
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
    tracker.checkpoint()  # the .db file alone holds the run
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
    try:
        _hydra_main()
    except KeyboardInterrupt as exc:  # Ctrl-C; during a sweep also SIGTERM, SIGHUP (nanbench.sweep.interrupts)
        from nanbench.sweep import interrupted
        sys.exit(interrupted(exc))
    from nanbench.sweep import session
    if session.exit_status:
        sys.exit(session.exit_status)


def ui_main(argv: list[str]) -> int:
    """`make ui`: MLflow's UI over a store, on 127.0.0.1:PORT. A port something already answers on
    (another UI: its runs would be what the printed URL shows) and an unusable store are one
    line and exit 2, before MLflow starts; MLflow's server itself would log and exit 0."""
    import argparse
    import os
    import socket

    from nanbench.tracking import check_uri, experiments, ui_runs_url

    parser = argparse.ArgumentParser(prog="nanbench.cli ui")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--store", default="sqlite:///results/mlflow.db")
    args = parser.parse_args(argv)
    with socket.socket() as probe:
        probe.settimeout(1)
        if probe.connect_ex(("127.0.0.1", args.port)) == 0:
            print(f"nanbench: error: PORT must be a free port (got {args.port}: 127.0.0.1:{args.port} is "
                  "already in use, e.g. by another UI); try make ui PORT=" f"{args.port + 1}",
                  file=sys.stderr, flush=True)
            return 2
    try:
        check_uri(args.store)
    except ConfigError as exc:
        print(f"nanbench: error: STORE: {exc}", file=sys.stderr, flush=True)
        return 2
    base = f"http://127.0.0.1:{args.port}"
    print(f"MLflow UI: {base}", flush=True)
    for experiment_id, name in experiments(args.store):  # each opens on its training runs
        print(f"  {name}: {ui_runs_url(base, experiment_id)}", flush=True)
    mlflow = str(Path(sys.executable).with_name("mlflow"))
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_DISABLE_TELEMETRY": "true"}
    os.execve(mlflow, [mlflow, "ui", "--backend-store-uri", args.store, "--host", "127.0.0.1",
                       "--port", str(args.port), "--workers", "1"], env)
    return 0  # not reached


if __name__ == "__main__" and sys.argv[1:2] == ["ui"]:
    sys.exit(ui_main(sys.argv[2:]))
