"""Faults: killed processes, a second sweep on the same store, bad input. Each test starts the
real CLI in a session of its own and checks, after the fault, that no process of that session
is left (no orphans) and what the store holds."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, SWEEPS
from tools.fault_procs import session_pids
from nanbench.sweep.bookkeeping import PARENT_FILE

SMALL = ["dataset=doc000_clean,clean", "preprocess=none", "optimizer=sgd,adam"]  # 4 jobs x 3 runs


def sweep_cmd(store, folder, *extra, name="smoke"):
    return [sys.executable, "-m", "nanbench", "-m", "--config-dir", str(SWEEPS), "--config-name", name,
            f"tracking.uri={store}", f"sweep.results_dir={folder}", f"hydra.sweep.dir={folder}/hydra",
            "sweep.summarize=false", *extra]


def orphans_after(sid: int, seconds: float = 10.0) -> list[int]:
    """The session's processes still alive `seconds` after its leader ended; then ends them."""
    deadline = time.time() + seconds
    while time.time() < deadline and session_pids(sid):
        time.sleep(0.25)
    left = session_pids(sid)
    for pid in left:  # no test leaves a process behind, whatever it asserts
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return left


def finished(store, experiment="smoke", status="FINISHED"):
    from mlflow.entities import ViewType
    from mlflow.tracking import MlflowClient
    client = MlflowClient(store)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return []
    runs = client.search_runs([exp.experiment_id], "tags.`nanbench.role` = 'child'", ViewType.ALL, 10000)
    return [r for r in runs if status is None or r.info.status == status]


def wait_for(predicate, timeout=240.0, proc=None):
    deadline = time.time() + timeout
    while time.time() < deadline and (proc is None or proc.poll() is None):
        try:
            if predicate():
                return True
        except Exception:  # noqa: BLE001 - the store is not there yet
            pass
        time.sleep(0.5)
    return False


@pytest.mark.slow
def test_killing_a_parallel_sweep_leaves_no_worker_running(tmp_path):
    store = f"sqlite:///{tmp_path / 'm.db'}"
    cmd = sweep_cmd(store, tmp_path, *SMALL, "train.epochs=400", "hydra/launcher=joblib",
                    "hydra.launcher.n_jobs=2")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT,
                            start_new_session=True)
    try:
        assert wait_for(lambda: (tmp_path / "hydra" / PARENT_FILE).exists() and len(session_pids(proc.pid)) >= 3)
        time.sleep(3)  # the workers are training (or still importing TensorFlow)
        # the key of the served store is this user's only
        assert (tmp_path / "hydra" / PARENT_FILE).stat().st_mode & 0o077 == 0
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert orphans_after(proc.pid) == []
    finally:
        orphans_after(proc.pid, 0)


def child_pids(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def parents_of(store, experiment="smoke"):
    from mlflow.entities import ViewType
    from mlflow.tracking import MlflowClient
    client = MlflowClient(store)
    exp = client.get_experiment_by_name(experiment)
    return client.search_runs([exp.experiment_id], "tags.`nanbench.role` = 'parent'", ViewType.ALL, 100)


@pytest.mark.slow
def test_a_lost_store_process_fails_the_sweep_in_one_line_and_a_rerun_resumes(tmp_path):
    """Basic launcher: the store process is killed mid-sweep. The sweep records the rest from its
    own process, ends FAILED with the reason in one line, exit 1; re-running trains what was lost."""
    store = f"sqlite:///{tmp_path / 'm.db'}"
    cmd = sweep_cmd(store, tmp_path, *SMALL, "train.epochs=600")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            start_new_session=True)
    try:
        # not before the sweep has opened its new store (MLflow's client would create it too)
        assert wait_for(lambda: (tmp_path / "hydra" / PARENT_FILE).exists() and len(finished(store)) >= 3,
                        proc=proc)
        (store_pid,) = child_pids(proc.pid)
        os.kill(store_pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=600)
        assert orphans_after(proc.pid) == []
    finally:
        orphans_after(proc.pid, 0)
    assert proc.returncode == 1, err[-3000:]
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("nanbench: error")]
    assert len(errors) == 1 and "store process" in errors[0]
    (parent,) = parents_of(store)
    assert parent.info.status == "FAILED" and "store process" in parent.data.tags["error"]
    assert 3 <= len(finished(store)) <= 12
    rerun = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    hashes = [r.data.tags["config_hash"] for r in finished(store)]
    assert len(hashes) == 12 and len(set(hashes)) == 12
    assert not finished(store, status="RUNNING")


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


@pytest.mark.slow
def test_a_lost_worker_fails_the_sweep_in_one_line_and_a_rerun_resumes(tmp_path):
    store = f"sqlite:///{tmp_path / 'm.db'}"
    cmd = sweep_cmd(store, tmp_path, *SMALL, "train.epochs=600", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            start_new_session=True)
    try:
        assert wait_for(lambda: (tmp_path / "hydra" / PARENT_FILE).exists() and len(finished(store)) >= 2,
                        proc=proc)
        workers = [p for p in child_pids(proc.pid) if "popen_loky" in cmdline(p)]
        assert len(workers) == 2, [cmdline(p) for p in child_pids(proc.pid)]
        os.kill(workers[0], signal.SIGKILL)
        out, err = proc.communicate(timeout=600)
        assert orphans_after(proc.pid) == []
    finally:
        orphans_after(proc.pid, 0)
    assert proc.returncode == 1, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    errors = [line for line in err.splitlines() if line.startswith("nanbench: error")]
    assert len(errors) == 1 and "worker process ended unexpectedly" in errors[0], err[-3000:]
    (parent,) = parents_of(store)
    assert parent.info.status == "FAILED" and "worker" in parent.data.tags["error"]
    # the jobs were launched again on new workers: every run is there, none twice
    hashes = [r.data.tags["config_hash"] for r in finished(store)]
    assert len(hashes) == 12 and len(set(hashes)) == 12
    rerun = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    hashes = [r.data.tags["config_hash"] for r in finished(store)]
    assert len(hashes) == 12 and len(set(hashes)) == 12
    assert not finished(store, status="RUNNING")


@pytest.mark.slow
def test_the_fault_suites_fast_part_holds():
    """`make faults --fast`: every bad value and unusable store, single runs and sweeps: exit 2,
    one line, nothing written, no process left."""
    proc = subprocess.run([sys.executable, "-m", "tools.faults", "--fast"], capture_output=True, text=True,
                          cwd=ROOT, timeout=900)
    import json
    totals = json.loads(proc.stdout.strip().splitlines()[-1])
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert totals["failed"] == [] and totals["scenarios"] >= 20
    assert totals["lost"] == totals["duplicated"] == totals["orphans"] == totals["tracebacks"] == 0
