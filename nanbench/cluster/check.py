"""`make cluster-check`: a sweep through a Ray cluster into an MLflow server on PostgreSQL, with a
worker node killed mid-sweep, and the store checked after it.

On this one machine, as on real ones but on loopback addresses:

1. PostgreSQL and ``mlflow server`` (nanbench.cluster.server) in a fresh folder, on free ports;
2. a Ray cluster (nanbench.cluster.ray_cluster): the head on 127.0.0.2, a worker node on
   127.0.0.3, one CPU each, with token authentication;
3. ``sweeps/smoke.yaml`` through Hydra's Ray launcher (``hydra/launcher=ray_cluster``) into the
   server;
4. a second sweep (the same grid at ``train.seed=1``: every configuration new) whose worker node
   is killed (SIGKILL to all its processes, as a lost machine) once some of its runs are FINISHED
   and the node is running a job; the sweep ends FAILED (exit 1) and the same command is re-run
   on what is left of the cluster;
5. the store: every configuration of both grids FINISHED exactly once, each a child of one of
   the experiment's parent runs, no run left RUNNING; the killed node's processes gone;
6. everything it started stopped (the Ray nodes, the MLflow server, PostgreSQL).

It prints one JSON line last: ``runs_expected``, ``runs_finished``, ``duplicates``,
``killed_left`` (processes of the killed node alive 10 s after the kill), ``wall_s``, and the
details (the sweeps' exit statuses, runs without a parent, runs left RUNNING, processes left after
the stop); exit status 0 when all hold. PostgreSQL or Ray that cannot start: one line, exit 2.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from nanbench.cluster import group_pids, kill_session, ray_cluster, server
from nanbench.cluster.ray_cluster import ClusterError
from nanbench.cluster.server import ServerError

ROOT = Path(__file__).resolve().parent.parent.parent
SWEEP = "smoke"
EXPERIMENT = "cluster_check"
KILL_AFTER = 6          # FINISHED runs of the second sweep before its worker node is killed
SWEEP_TIMEOUT = 600


class CheckSetupError(RuntimeError):
    """PostgreSQL or Ray could not start here (the only reason a test may skip this check)."""


def free_port(host: str = "127.0.0.1", span: int = 1) -> int:
    """A port free on `host`, with the `span - 1` ports after it free too."""
    for _ in range(100):
        with socket.socket() as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        if port + span < 65535 and all(_free(host, port + i) for i in range(span)):
            return port
    raise RuntimeError(f"no free port on {host}")


def _free(host: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
            return True
        except OSError:
            return False


def expected_per_sweep(sweep_file: Path) -> int:
    """Configurations of a sweep file: its grid's combinations times its inner loop's."""
    import yaml
    cfg = yaml.safe_load(sweep_file.read_text())
    n = 1
    for values in (cfg.get("hydra", {}).get("sweeper", {}).get("params") or {}).values():
        n *= len(str(values).split(","))
    for values in (cfg.get("sweep", {}).get("inner") or {}).values():
        n *= len(values) if isinstance(values, list) else 1
    return n


def store_state(url: str, experiment: str) -> dict:
    """What the server holds of the experiment: FINISHED configurations (distinct config_hash of
    child runs whose parent is one of the experiment's parent runs), duplicates, runs without a
    parent and runs left RUNNING."""
    from mlflow.entities import ViewType
    from mlflow.tracking import MlflowClient

    from nanbench.tracking import all_runs
    client = MlflowClient(tracking_uri=url)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return {"finished": 0, "duplicates": 0, "parentless": 0, "running": 0}
    runs = list(all_runs(client, exp.experiment_id, "", ViewType.ALL))  # paginated: past 1,000 runs too
    parents = {r.info.run_id for r in runs if r.data.tags.get("nanbench.role") == "parent"}
    finished: dict[str, int] = {}
    parentless = running = 0
    for r in runs:
        if r.info.status == "RUNNING":
            running += 1
        if r.data.tags.get("nanbench.role") != "child" or r.info.status != "FINISHED":
            continue
        if r.data.tags.get("mlflow.parentRunId") not in parents:
            parentless += 1
        key = r.data.tags.get("config_hash")
        finished[key] = finished.get(key, 0) + 1
    return {"finished": len(finished), "duplicates": sum(n - 1 for n in finished.values()),
            "parentless": parentless, "running": running}


def _sweep_cmd(cluster, url: str, sweep_dir: Path, extra: list[str]) -> list[str]:
    return [sys.executable, "-m", "nanbench", "-m", "--config-dir", str(ROOT / "sweeps"), "--config-name", SWEEP,
            f"tracking.uri={url}", f"sweep.name={EXPERIMENT}", "sweep.summarize=false",
            f"hydra.sweep.dir={sweep_dir}", *cluster.launcher_overrides(), *extra]


def sweep_env(cluster) -> dict:
    """The environment of a sweep sent to `cluster`: its token, this checkout on the path."""
    env = cluster.env()
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def run(folder: Path | None = None, log=None, server_workers: int = 2, first_sweep: bool = True) -> dict:
    """The whole check; returns its JSON record. Raises CheckSetupError when PostgreSQL or Ray
    cannot start here. ``first_sweep=False`` (the test suite's trimmed check) leaves out step 3,
    the uninterrupted sweep: the killed sweep and its re-run, which must also end 0 with every
    run, are the check's essentials."""
    t0 = time.time()
    own = folder is None
    folder = Path(folder or tempfile.mkdtemp(prefix="nb-cluster-check-"))
    os.chmod(folder, 0o755)  # as root, PostgreSQL runs as postgres, which must reach its folder
    own_log = log is None
    log = log or open(folder / "check.log", "a")
    record: dict = {"runs_expected": (2 if first_sweep else 1) * expected_per_sweep(ROOT / "sweeps" / f"{SWEEP}.yaml"),
                    "exit_first": None}
    srv = cluster = None
    groups: list[int] = []  # the sessions this check started: the server, the nodes, the sweeps
    sweeps: list[int] = []
    try:
        try:
            srv = server.start(folder / "server", port=free_port(), pg_port=free_port(),
                               workers=server_workers, quiet=True)
            groups.append(srv.pid)
            cluster = ray_cluster.start(port=free_port("127.0.0.2", span=2), folder=tempfile.mkdtemp(prefix="nb-ray-"))
            groups += [cluster.head.pid] + [w.pid for w in cluster.workers]
        except (ServerError, ClusterError) as exc:
            raise CheckSetupError(str(exc)) from None
        env = sweep_env(cluster)

        def sweep(n: int, extra: list[str], **kwargs):
            print(f"--- sweep {n}: {' '.join(extra) or '(smoke)'}", file=log, flush=True)
            proc = subprocess.Popen(_sweep_cmd(cluster, srv.url, folder / "sweeps" / str(n), extra), env=env,
                                    cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True, **kwargs)
            groups.append(proc.pid)
            sweeps.append(proc.pid)
            return proc

        if first_sweep:
            first = sweep(1, [])
            record["exit_first"] = first.wait(SWEEP_TIMEOUT)
        before = store_state(srv.url, EXPERIMENT)["finished"]

        second = sweep(2, ["train.seed=1"])
        worker = cluster.workers[0]
        deadline = time.time() + SWEEP_TIMEOUT
        killed = False
        while second.poll() is None and time.time() < deadline:
            try:
                now = store_state(srv.url, EXPERIMENT)["finished"]
            except Exception:  # noqa: BLE001 - the server busy: try again
                now = before
            if now - before >= KILL_AFTER and _node_busy(worker):
                ray_cluster.kill_node(worker)
                killed = True
                break
            time.sleep(0.5)
        record["killed_at_finished"] = (now - before) if killed else None
        record["killed_left"] = ray_cluster.node_left(worker) if killed else None
        record["exit_killed"] = second.wait(SWEEP_TIMEOUT)
        # the sweep's process is gone; Ray ends its jobs still running on the head: wait for them
        deadline = time.time() + 60
        while ray_cluster.busy_workers(cluster) and time.time() < deadline:
            time.sleep(0.5)
        rerun = sweep(3, ["train.seed=1"])
        record["exit_rerun"] = rerun.wait(SWEEP_TIMEOUT)

        state = store_state(srv.url, EXPERIMENT)
        record.update(runs_finished=state["finished"], duplicates=state["duplicates"],
                      parentless=state["parentless"], running_left=state["running"])
    finally:
        for sid in sweeps:  # a sweep still there (a timeout, an interrupted check): ended first
            kill_session(sid)
        if cluster is not None:
            ray_cluster.stop(cluster)
        if srv is not None:
            server.stop(folder / "server", quiet=True)
        record["processes_left"] = sum(len(group_pids(g)) for g in groups)
        record["wall_s"] = round(time.time() - t0, 1)
        if own_log:
            log.close()
        if own:
            shutil.rmtree(folder, ignore_errors=True)
    record["ok"] = bool(record["runs_finished"] == record["runs_expected"] and record["duplicates"] == 0
                        and record["parentless"] == 0 and record["running_left"] == 0
                        and record["killed_at_finished"] is not None  # the node was lost mid-sweep
                        and record["killed_left"] == 0 and record["exit_first"] == (0 if first_sweep else None)
                        and record["exit_rerun"] == 0 and record["processes_left"] == 0)
    return record


def _node_busy(node) -> bool:
    """Whether the node's Ray workers are running a job (its death then loses one)."""
    for pid in group_pids(node.pid):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if f.read().startswith(b"ray::_run_job"):
                    return True
        except OSError:
            continue
    return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nanbench.cluster.check", description=__doc__.split("\n")[0])
    parser.add_argument("--log", help="write the sweeps' output here (default: a temporary file, removed)")
    args = parser.parse_args(argv)
    log = open(args.log, "a") if args.log else None
    try:
        record = run(log=log)
    except CheckSetupError as exc:
        print(f"nanbench: error: the cluster check cannot run here: {exc}", file=sys.stderr, flush=True)
        return 2
    finally:
        if log:
            log.close()
    print(json.dumps(record), flush=True)
    return 0 if record["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
