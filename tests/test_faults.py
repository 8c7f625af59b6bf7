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
from nanbench.sweep import PARENT_FILE

SMALL = ["dataset=doc000_clean,clean", "preprocess=none", "optimizer=sgd,adam"]  # 4 jobs x 3 runs


def sweep_cmd(store, folder, *extra, name="smoke"):
    return [sys.executable, "-m", "nanbench", "-m", "--config-dir", str(SWEEPS), "--config-name", name,
            f"tracking.uri={store}", f"sweep.results_dir={folder}", f"hydra.sweep.dir={folder}/hydra",
            "sweep.summarize=false", *extra]


def session_pids(sid: int) -> list[int]:
    """Every live process of session `sid` (what a sweep started with start_new_session leaves)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[3]) == sid and fields[0] != "Z":
            pids.append(int(entry.name))
    return pids


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


def wait_for(predicate, timeout=240.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
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
