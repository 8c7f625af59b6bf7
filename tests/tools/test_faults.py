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


def paused_after(runs: int) -> dict:
    """The environment of a sweep whose recording process stops itself (SIGSTOP) once it has
    recorded `runs` runs: nanbench's pause hook (nanbench.tracking.protocol._FaultHook), so the
    fault below lands mid-sweep whatever the runs cost, without long training."""
    return {**os.environ, "NANBENCH_TEST_PAUSE_AFTER": str(runs)}


def stopped(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in "Tt"
    except (OSError, IndexError):
        return False


@pytest.mark.slow
def test_killing_a_parallel_sweep_leaves_no_worker_running(tmp_path):
    store = f"sqlite:///{tmp_path / 'm.db'}"
    cmd = sweep_cmd(store, tmp_path, *SMALL, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT,
                            start_new_session=True, env=paused_after(1))
    try:
        # the sweep's process serves the store to its workers: paused after the first run, with
        # its workers alive and the rest of the grid still to train
        assert wait_for(lambda: stopped(proc.pid), proc=proc), "the sweep never paused"
        assert len(session_pids(proc.pid)) >= 3  # the sweep and its two workers
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
    cmd = sweep_cmd(store, tmp_path, *SMALL)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            start_new_session=True, env=paused_after(3))
    try:
        # the store process stops itself once 3 runs are recorded; the sweep trains on
        assert wait_for(lambda: any(stopped(pid) for pid in child_pids(proc.pid)), proc=proc), \
            "the store process never paused"
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
    cmd = sweep_cmd(store, tmp_path, *SMALL, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            start_new_session=True, env=paused_after(2))
    try:
        # the sweep's process (which serves the store) stops itself once 2 runs are recorded: a
        # worker that sent runs waits on it, so the worker killed now is one with a job to lose
        assert wait_for(lambda: stopped(proc.pid), proc=proc), "the sweep never paused"
        workers = [p for p in child_pids(proc.pid) if "popen_loky" in cmdline(p)]
        assert len(workers) == 2, [cmdline(p) for p in child_pids(proc.pid)]
        os.kill(workers[0], signal.SIGKILL)
        os.kill(proc.pid, signal.SIGCONT)
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
def test_the_fault_suites_fast_part_holds_on_the_paths_no_other_test_runs():
    """`make faults --fast` through its own CLI, on the one scenario no other test starts: a
    read-only store (exit 2, the store untouched, one line, no process left). Its bad values run
    in-process below; each of their CLI paths runs once in tests/test_cli.py (a run) and
    tests/sweep/test_sweep.py (a sweep)."""
    proc = subprocess.run([sys.executable, "-m", "tools.faults", "--fast", "--only", "read-only store"],
                          capture_output=True, text=True, cwd=ROOT, timeout=900)
    import json
    totals = json.loads(proc.stdout.strip().splitlines()[-1])
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert totals["failed"] == [] and totals["scenarios"] == 1
    assert totals["lost"] == totals["duplicated"] == totals["orphans"] == totals["tracebacks"] == 0


@pytest.mark.slow
def test_the_fault_suites_bad_value_check_holds_on_a_run(tmp_path):
    """The suite's own judge of a bad value (exit 2, one line, nothing written, no traceback, no
    process left) on one value no CLI test gives: train.precision=fp8."""
    from tools import faults
    (name, overrides, mode), = [v for v in faults.BAD_VALUES if v[0] == "train.precision=fp8"]
    row = faults.judge(faults.bad_value(name, overrides, mode, tmp_path))
    assert row.ok and row.rc == 2 and row.one_line and not row.traceback and not row.orphans, row.problems


def _run_bad_values():
    from tools.faults import BAD_VALUES
    return [pytest.param(name, overrides, id=name) for name, overrides, mode in BAD_VALUES if mode == "run"]


@pytest.mark.parametrize("name,overrides", _run_bad_values())
def test_every_bad_value_of_the_fault_suite_is_refused_by_the_checks(tmp_path, name, overrides):
    """Every single-run value `make faults` gives is refused by the checks the CLI runs before
    anything is written (the spec, the device, the store URI), naming its key; in-process, where the suite
    starts a process per value. The CLI's one line and exit 2 for each kind of check:
    tests/test_cli.py; the sweep's values are tests/sweep/test_sweep.py's bad sweeps."""
    from nanbench.config import compose
    from nanbench.spec import ConfigError, from_config
    from nanbench.tracking.uri import check_uri
    from nanbench.validate import check_device
    from tools.fault_procs import corrupt

    if "gpu" in name and any(Path("/dev").glob("nvidia[0-9]*")):
        pytest.skip("this machine has a GPU device")
    (tmp_path / "folder.db").mkdir()
    (tmp_path / "garbage.db").write_bytes(b"not an SQLite database " * 50)
    corrupt(tmp_path / "corrupted.db")
    overrides = [o.replace("{tmp}", str(tmp_path)) for o in overrides]
    uris = [o.split("=", 1)[1] for o in overrides if o.startswith("tracking.uri=")]
    if name == "optimizer=adagrad":  # Hydra's own error, listing the options there are
        with pytest.raises(Exception, match="sgd"):
            compose(overrides)
        return
    with pytest.raises(ConfigError) as err:  # the checks nanbench/cli.py makes, in its order
        check_uri(uris[0]) if uris else check_device(from_config(compose(overrides)).train.device)
    key = "tracking.uri" if uris else name.split("=")[0]
    assert str(err.value).startswith(key) and "must be" in str(err.value) and "\n" not in str(err.value)
