"""Beyond one machine: the MLflow server on PostgreSQL and the loopback Ray cluster (nanbench.cluster).

The slow tests start real processes: PostgreSQL (initdb, pg_ctl), ``mlflow server`` and a
two-node Ray cluster on 127.0.0.2/127.0.0.3. Where PostgreSQL or Ray cannot start on the machine
they skip with the one-line reason; in CI (``CI`` set) they fail instead, never skip.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from conftest import ROOT

PY = sys.executable


def _cannot_start(reason: str):
    if os.environ.get("CI"):
        pytest.fail(f"in CI the cluster tests must run: {reason}")
    pytest.skip(reason)


# --------------------------------------------------------------------------------------------
# Fast: configuration and bad input


def test_ray_cluster_preset_attaches_with_the_workarounds():
    """hydra/launcher=ray_cluster: an explicit address, object_store_memory present as null (so
    the 1.2.2 launcher does not set it and Ray accepts the attach), no task retries."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", return_hydra_config=True,
                      overrides=["hydra/launcher=ray_cluster", "hydra.launcher.ray.init.address=127.0.0.2:6390"])
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("RayLauncher")
    assert launcher.ray.init.address == "127.0.0.2:6390"
    assert "object_store_memory" in launcher.ray.init and launcher.ray.init.object_store_memory is None
    assert launcher.ray.remote.max_retries == 0 and launcher.ray.remote.num_cpus == 1
    assert "max_calls" not in launcher.ray.remote  # workers reused: TensorFlow and traces kept
    from nanbench.cluster.launcher import task_threads
    assert task_threads(launcher) == 1  # TensorFlow in a job: the one CPU its task reserves
    assert task_threads(compose_config_hydra([]).hydra.launcher) is None  # the basic launcher: TF's default


def compose_config_hydra(overrides):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose(config_name="config", return_hydra_config=True, overrides=overrides)


@pytest.mark.parametrize("address,why", [(None, "explicit"), ("127.0.0.2:9", "a reachable Ray head")])
def test_ray_sweep_without_a_reachable_address_is_one_line_and_exit_2(tmp_path, address, why):
    """No address (Ray would attach to a stale cluster file's, or start a private one) or one
    nothing answers on: one line naming the key, exit 2, before any store or parent run exists."""
    store = tmp_path / "mlflow.db"
    cmd = [PY, "-m", "nanbench", "-m", "--config-dir", str(ROOT / "sweeps"), "--config-name", "smoke",
           "hydra/launcher=ray_cluster", f"tracking.uri=sqlite:///{store}", f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    if address:
        cmd.append(f"hydra.launcher.ray.init.address={address}")
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 2, out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "hydra.launcher.ray.init.address" in lines[0] and why in lines[0], out.stderr
    assert not store.exists()


def test_make_sweep_passes_store_only_when_given():
    def dry(*args: str) -> str:
        env = {k: v for k, v in os.environ.items() if k not in ("STORE", "MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
        out = subprocess.run(["make", "-n", "-o", ".venv/.installed", "sweep", "SWEEP=smoke", *args], cwd=ROOT,
                             capture_output=True, text=True, env=env)  # a fresh make, even under `make test`
        lines = [line for line in out.stdout.splitlines() if "-m nanbench -m" in line]
        assert len(lines) == 1, out.stdout
        return lines[0]
    assert "tracking.uri=http://127.0.0.1:5000" in dry("STORE=http://127.0.0.1:5000")
    assert "tracking.uri" not in dry()  # the config's default (or MLFLOW_TRACKING_URI) stays in charge


def test_expected_configurations_of_the_smoke_sweep():
    from nanbench.cluster.check import expected_per_sweep
    assert expected_per_sweep(ROOT / "sweeps" / "smoke.yaml") == 2 * 2 * 2 * 3  # datasets, scalers, optimizers, lrs


def test_server_on_a_busy_port_is_one_line_and_exit_2(tmp_path):
    import socket
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        out = subprocess.run([PY, "-m", "nanbench.cluster.server", "start", "--folder", str(tmp_path / "s"),
                              "--port", str(port)], cwd=ROOT, capture_output=True, text=True, timeout=120,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nanbench: error: PORT must be a free port"), out.stderr
    assert not (tmp_path / "s" / "pg").exists()  # nothing started, no database made


def test_server_stop_when_nothing_runs(tmp_path):
    out = subprocess.run([PY, "-m", "nanbench.cluster.server", "stop", "--folder", str(tmp_path / "s")],
                         cwd=ROOT, capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0 and "was not running" in out.stdout


def test_a_stale_server_pid_is_never_signalled(tmp_path):
    """state.json naming a live, unrelated session leader (a pid reused after a reboot): `stop`
    leaves it alone, says the state is stale and clears it."""
    from nanbench.cluster import process_start, server
    bystander = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        folder = tmp_path / "s"
        folder.mkdir()
        state = server.Server(folder=str(folder), port=5999, pg_port=5998, workers=1, pid=bystander.pid)
        assert not server.ours(state)  # `sleep`: not an mlflow server
        state.started = "another-boot 1"
        assert not server.ours(state)
        server._write_state(state)
        out = subprocess.run([PY, "-m", "nanbench.cluster.server", "stop", "--folder", str(folder)], cwd=ROOT,
                             capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert out.returncode == 0 and "stale" in out.stderr, out.stderr
        assert bystander.poll() is None and process_start(bystander.pid) is not None
        assert not (folder / "state.json").exists()
    finally:
        bystander.kill()
        bystander.wait()


# --------------------------------------------------------------------------------------------
# Slow: real PostgreSQL, mlflow server and Ray


@pytest.mark.slow
def test_cluster_check():
    """`make cluster-check` trimmed to its essentials: smoke through a two-node loopback Ray
    cluster into the server, the worker node killed mid-sweep, the re-run: every configuration
    FINISHED exactly once with its parent, nothing left running. (The full check first runs one
    more, uninterrupted sweep; a re-run that ends 0 with every run is that case too.)"""
    from nanbench.cluster.check import CheckSetupError, run
    try:
        record = run(first_sweep=False)
    except CheckSetupError as exc:
        _cannot_start(str(exc))
    print(json.dumps(record))  # the line make cluster-check prints (pytest -s shows it)
    assert record["runs_expected"] == 24
    assert record["exit_first"] is None  # not run
    assert record["killed_at_finished"] is not None, "the worker node was never killed mid-sweep"
    assert record["exit_killed"] == 1  # the lost node's job fails the sweep: parent FAILED, one line
    assert record["exit_rerun"] == 0
    assert record["runs_finished"] == 24 and record["duplicates"] == 0
    assert record["parentless"] == 0 and record["running_left"] == 0
    assert record["killed_left"] == 0 and record["processes_left"] == 0
    assert record["ok"] is True


@pytest.fixture(scope="module")
def mlflow_server():
    """A fresh PostgreSQL + mlflow server on free loopback ports, shared by this module's tests
    (each writes its own experiment) and stopped after the last."""
    from nanbench.cluster import group_pids, server
    from nanbench.cluster.check import free_port
    folder = Path(tempfile.mkdtemp(prefix="nb-server-test-"))
    os.chmod(folder, 0o755)  # as root, PostgreSQL runs as postgres, which must reach its folder
    try:
        try:
            srv = server.start(folder / "server", port=free_port(), pg_port=free_port(), workers=2, quiet=True)
        except server.ServerError as exc:
            _cannot_start(str(exc))
        yield srv
        server.stop(folder / "server", quiet=True)
        assert not group_pids(srv.pid)
        assert not server._postgres_running(folder / "server" / "pg")
    finally:
        server.stop(folder / "server", quiet=True)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.slow
def test_two_concurrent_sweeps_into_the_server_record_each_run_once(mlflow_server, tmp_path):
    """Two identical sweeps started at once against STORE=http://127.0.0.1:PORT (with
    sweep.wait=true): one trains, the other waits for it and then finds every configuration
    FINISHED. The server holds each of the 24 exactly once, each a child of a parent run."""
    from nanbench.cluster.check import store_state

    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("MLFLOW_TRACKING_URI", None)

    def sweep(n: int, *extra: str) -> subprocess.Popen:
        return subprocess.Popen([PY, "-m", "nanbench", "-m", "--config-dir", str(ROOT / "sweeps"),
                                 "--config-name", "smoke", f"tracking.uri={mlflow_server.url}",
                                 "sweep.name=concurrent", "sweep.summarize=false",
                                 f"hydra.sweep.dir={tmp_path / str(n)}", *extra],
                                cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    procs = [sweep(1, "sweep.wait=true"), sweep(2, "sweep.wait=true")]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert sum("configurations already FINISHED are skipped" in out for out in outs) == 1, outs
    assert sum("nanbench: waiting for sweep concurrent" in out for out in outs) == 1, outs
    state = store_state(mlflow_server.url, "concurrent")
    assert state == {"finished": 24, "duplicates": 0, "parentless": 0, "running": 0}
    from mlflow.tracking import MlflowClient
    client = MlflowClient(tracking_uri=mlflow_server.url)
    exp = client.get_experiment_by_name("concurrent")
    assert exp.artifact_location.startswith("mlflow-artifacts:")  # served: workers need only the URL
    child = client.search_runs([exp.experiment_id], "tags.`nanbench.role` = 'child'", max_results=1)[0]
    assert [a.path for a in client.list_artifacts(child.info.run_id)] == ["steps.csv"]


@pytest.mark.slow
def test_a_sweep_straight_into_postgresql_is_read_by_the_server(mlflow_server, tmp_path):
    """The recording path past the server's saturation: workers write the database itself
    (tracking.uri=postgresql+psycopg://..., nanbench's bulk path: a batch of runs per
    transaction; the password from PGPASSWORD, artifacts in a shared folder). The MLflow server
    in front of the same database then shows every run once, with its steps.csv."""
    from nanbench.cluster import server
    from nanbench.cluster.check import store_state

    folder = Path(mlflow_server.folder)
    uri = f"postgresql+psycopg://{server.ROLE}@127.0.0.1:{mlflow_server.pg_port}/{server.DATABASE}"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2", "PGPASSWORD": server._secret(folder)}
    env.pop("MLFLOW_TRACKING_URI", None)
    out = subprocess.run([PY, "-m", "nanbench", "-m", "--config-dir", str(ROOT / "sweeps"), "--config-name", "smoke",
                          f"tracking.uri={uri}", f"tracking.artifacts={tmp_path / 'artifacts'}",
                          "sweep.name=direct", "sweep.summarize=false", f"hydra.sweep.dir={tmp_path / 'sweep'}"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert store_state(mlflow_server.url, "direct") == {"finished": 24, "duplicates": 0, "parentless": 0, "running": 0}
    assert len(list((tmp_path / "artifacts").rglob("steps.csv"))) == 24
