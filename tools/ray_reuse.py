"""Ray worker reuse for nanbench: a sweep with Ray's default (worker processes reused from job to
job, ``max_calls`` 0) against ``max_calls=1`` (a fresh process per job).

On the loopback cluster of ``make cluster-check`` (head 127.0.0.2 and a worker node 127.0.0.3,
one CPU each) and its MLflow server, the same smoke grid is swept with each setting, at
different seeds so that neither skips the other's runs, alternating for ``--repeats`` rounds. A
fresh process imports TensorFlow (seconds) and traces every graph of its job again; a reused one
pays both once. A sweep's time is its parent run's ``wall_s`` (the sweep's own clock, recorded
in the server). Prints each and, last, one JSON line.

    .venv/bin/python -m tools.ray_reuse --repeats 2
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from nanbench.cluster import ray_cluster, server
from nanbench.cluster.check import ROOT, sweep_env, free_port

SETTINGS = {"reuse (max_calls 0)": [], "fresh (max_calls=1)": ["+hydra.launcher.ray.remote.max_calls=1"]}


def _last_parent_wall(url: str) -> float:
    """The wall time the latest sweep of experiment `reuse` recorded on its parent run."""
    from mlflow.tracking import MlflowClient
    client = MlflowClient(tracking_uri=url)
    exp = client.get_experiment_by_name("reuse")
    parent = client.search_runs([exp.experiment_id], "tags.`nanbench.role` = 'parent'",
                                order_by=["attributes.start_time DESC"], max_results=1)[0]
    return parent.data.metrics["wall_s"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="nb-reuse-"))
    os.chmod(folder, 0o755)
    srv = cluster = None
    walls: dict[str, list[float]] = {k: [] for k in SETTINGS}
    seed = 100
    try:
        srv = server.start(folder / "server", port=free_port(), pg_port=free_port(), quiet=True)
        cluster = ray_cluster.start(port=free_port("127.0.0.2", span=2), folder=tempfile.mkdtemp(prefix="nb-ray-"))
        env = sweep_env(cluster)
        for _ in range(args.repeats):
            for name, extra in SETTINGS.items():
                seed += 1
                cmd = [sys.executable, "-m", "nanbench", "-m", "--config-dir", str(ROOT / "sweeps"),
                       "--config-name", "smoke", f"tracking.uri={srv.url}", "sweep.name=reuse",
                       "sweep.summarize=false", f"train.seed={seed}", f"hydra.sweep.dir={folder / str(seed)}",
                       *cluster.launcher_overrides(), *extra]
                t0 = time.time()
                out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
                wall = time.time() - t0
                if out.returncode:
                    print(f"{name}: the sweep failed (exit {out.returncode}): {out.stderr[-500:]}", file=sys.stderr)
                    return 1
                walls[name].append(round(_last_parent_wall(srv.url), 1))
                print(f"{name}: sweep {walls[name][-1]} s (process {wall:.1f} s)", file=sys.stderr, flush=True)
    finally:
        if cluster is not None:
            ray_cluster.stop(cluster)
        server.stop(folder / "server", quiet=True)
        shutil.rmtree(folder, ignore_errors=True)
    print(json.dumps({name: {"sweep_s": w, "median_s": statistics.median(w)} for name, w in walls.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
