"""nanbench.sweep: the smoke sweep end to end through the real CLI, resume, failures, workers."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient

from conftest import ROOT, SWEEPS
from hydra_plugins.nanbench_sweeper.nanbench_sweeper import dispatch_batch_size, structure_key
from nanbench.spec import from_config
from nanbench.config import compose, sweep_jobs
from nanbench.sweep.bookkeeping import PARENT_FILE
from nanbench.sweep import expand, inner_grid

SMOKE_RUNS = 24


def sweep_cmd(store, results, *extra, name="smoke"):
    return [sys.executable, "-m", "nanbench", "-m", "--config-dir", str(SWEEPS), "--config-name", name,
            f"tracking.uri={store}", f"sweep.results_dir={results}",
            f"hydra.sweep.dir={results}/hydra", *extra]


def children(store, experiment="smoke", status=None):
    client = MlflowClient(store)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], "tags.`nanbench.role` = 'child'", ViewType.ALL, 10000)
    return [r for r in runs if status is None or r.info.status == status]


def parents(store, experiment="smoke"):
    client = MlflowClient(store)
    exp = client.get_experiment_by_name(experiment)
    return client.search_runs([exp.experiment_id], "tags.`nanbench.role` = 'parent'", ViewType.ALL, 100)


def test_smoke_sweep_records_every_run_once_under_one_parent(tmp_path, store):
    # Hydra's own sweep folder, as `make sweep` has it: outputs/multirun/${now:...}, resolved once
    # for the store's side and the jobs alike (they meet there), however long TensorFlow takes
    cmd = [arg for arg in sweep_cmd(store, tmp_path) if not arg.startswith("hydra.sweep.dir=")]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(list((tmp_path / "outputs" / "multirun").iterdir())) == 1
    runs = children(store)
    assert len(runs) == SMOKE_RUNS
    assert all(r.info.status == "FINISHED" for r in runs)
    (parent,) = parents(store)
    assert parent.info.status == "FINISHED"
    assert {r.data.tags["mlflow.parentRunId"] for r in runs} == {parent.info.run_id}
    assert {r.data.tags["sweep"] for r in runs} == {"smoke"}
    assert len({r.data.tags["config_hash"] for r in runs}) == SMOKE_RUNS
    assert parent.data.metrics["runs_total"] == SMOKE_RUNS
    outcomes = [r.data.tags["outcome"] for r in runs]
    for outcome in set(outcomes):
        assert parent.data.metrics[f"runs_{outcome}"] == outcomes.count(outcome)
    assert "nan" in outcomes or "inf" in outcomes  # the smoke grid holds failures to find
    # not a terminal: one plain line per job; the grid's 8 combinations are 2 jobs (its datasets
    # and scalings fold into one job per optimizer), and the start line counts the sweep's runs
    assert sum(line.startswith("[job ") for line in proc.stdout.splitlines()) == 2
    assert f"nanbench: sweep smoke: {SMOKE_RUNS} run(s)" in proc.stdout
    # re-running the same grid has nothing to do, and says so before importing TensorFlow
    again = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert again.returncode == 0 and "nothing to do: all 24 configurations" in again.stdout
    assert "[job " not in again.stdout and len(children(store)) == SMOKE_RUNS
    # once a run is deleted, the sweep runs again and trains just that one
    MlflowClient(store).delete_run(runs[0].info.run_id)
    third = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert third.returncode == 0 and "23 configurations already FINISHED" in third.stdout
    assert len([r for r in children(store) if r.info.lifecycle_stage == "active"]) == SMOKE_RUNS


KILL_AFTER = 6


def hooked(**hooks: int) -> dict:
    """The environment of a sweep with nanbench's fault hooks set (nanbench.tracking.protocol._FaultHook):
    NANBENCH_TEST_KILL_AFTER / NANBENCH_TEST_PAUSE_AFTER, so a fault lands at a known run."""
    return {**os.environ, **{f"NANBENCH_TEST_{k.upper()}": str(v) for k, v in hooks.items()}}


def stopped(pid: int) -> bool:
    """Whether the process has stopped itself (state T: the pause hook)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in "Tt"
    except (OSError, IndexError):
        return False


@pytest.mark.slow
def test_killed_sweep_resumes_to_exactly_once(tmp_path, store):
    # the kill hook SIGKILLs the sweep's whole process group once KILL_AFTER runs are recorded:
    # mid-sweep by construction, however fast the runs train
    cmd = sweep_cmd(store, tmp_path)
    proc = subprocess.run(cmd, capture_output=True, cwd=ROOT, timeout=600, start_new_session=True,
                          env=hooked(kill_after=KILL_AFTER))
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    recorded = len(children(store, status="FINISHED"))
    assert recorded == KILL_AFTER, "the kill must land mid-sweep, after the runs the hook counted"
    rerun = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"{KILL_AFTER} configurations already FINISHED" in rerun.stdout
    finished = children(store, status="FINISHED")
    hashes = [r.data.tags["config_hash"] for r in finished]
    assert len(hashes) == SMOKE_RUNS and len(set(hashes)) == SMOKE_RUNS  # 0 lost, 0 duplicated
    assert not children(store, status="RUNNING")  # cut-off runs are KILLED, never FINISHED


def test_an_invalid_combination_is_a_failed_run_and_the_sweep_goes_on(tmp_path, store):
    # model=mlp with width 0 is rejected by validation: those runs are FAILED, the rest train
    proc = subprocess.run(sweep_cmd(store, tmp_path, "model=linear,mlp", "model.width=0",
                                    "dataset=doc000_clean", "preprocess=none"),
                          capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 1
    assert "6 run(s) errored" in proc.stderr
    runs = children(store)
    failed = [r for r in runs if r.info.status == "FAILED"]
    assert len(runs) == 12 and len(failed) == 6
    assert all("model.width" in r.data.tags["error"] for r in failed)
    assert all(r.data.tags["outcome"] == "error" for r in failed)


@pytest.mark.parametrize("uri", ["http://127.0.0.1:9", "sqlite:////proc/nonexistent/m.db"])
def test_an_unusable_store_stops_the_sweep_with_one_line(tmp_path, uri):
    """The store is opened (in a forked child, while the sweep imports TensorFlow) before any
    job: a bad tracking.uri is one line naming the key, exit 2, and nothing trained."""
    proc = subprocess.run(sweep_cmd(uri, tmp_path), capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.startswith("nanbench:")]
    assert len(lines) == 1 and "tracking.uri must be" in lines[0]
    assert "[job" not in proc.stdout and not (tmp_path / "hydra" / "0").exists()


def test_a_sweep_that_cannot_start_stops_with_one_line(tmp_path):
    """Any failure of the sweep's start (here its folder cannot be made: a file is in the way)
    stops it with one line and exit 2, before any job: Hydra itself would log a callback's
    exception as a warning and run the jobs without a parent run."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    proc = subprocess.run(sweep_cmd(f"sqlite:///{tmp_path}/m.db", blocker), capture_output=True, text=True,
                          cwd=ROOT, timeout=600)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith("nanbench:")]
    assert len(lines) == 1 and "could not start" in lines[0] and "NotADirectoryError" in lines[0]
    assert "Traceback" not in proc.stderr and "[job" not in proc.stdout


@pytest.mark.slow
def test_parallel_workers_record_every_run_exactly_once(tmp_path, store):
    # 2 workers, as many as CI's cores (4 on 2 cores only timeshared them); how the grid is dealt
    # to more workers than that: test_parallel_dispatch_keeps_each_structure_group_in_one_batch
    jobs = 2
    proc = subprocess.run(sweep_cmd(store, tmp_path, "hydra/launcher=joblib", f"hydra.launcher.n_jobs={jobs}"),
                          capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = children(store, status="FINISHED")
    hashes = [r.data.tags["config_hash"] for r in runs]
    assert len(hashes) == SMOKE_RUNS and len(set(hashes)) == SMOKE_RUNS
    assert "locked" not in proc.stderr
    # whole structure groups per worker: each graph traced once, as with one process
    structures = {(r.data.params["optimizer.name"], r.data.params["dataset.name"]) for r in runs}
    traced = [r for r in runs if r.data.metrics["first_step_s"] > 0]
    assert len(traced) == len(structures) == 4


def test_parallel_dispatch_keeps_each_structure_group_in_one_batch():
    jobs = sorted(_grid("default"), key=structure_key)
    groups_in_grid = {structure_key(job)[:-1] for job in jobs}  # equal in all but the dataset
    size = dispatch_batch_size(jobs, workers=2)
    assert size == len(jobs) // len(groups_in_grid)  # a batch is a whole group
    batches = [jobs[i:i + size] for i in range(0, len(jobs), size)]
    groups = [{structure_key(job)[:-1] for job in batch} for batch in batches]
    assert all(len(g) == 1 for g in groups) and set().union(*groups) == groups_in_grid
    assert len(batches) == len(groups_in_grid)
    # within a batch, jobs with the same dataset (same feature count) are next to each other
    datasets = [next(o for o in job if o.startswith("dataset=")) for job in batches[0]]
    assert datasets == sorted(datasets)
    # more workers than groups: groups are split so that every worker gets batches
    assert dispatch_batch_size(jobs, workers=len(groups_in_grid)) == size // 2  # 2 batches a worker
    assert dispatch_batch_size(jobs[:4], workers=2) == 1


def _grid(name):
    """Every job's overrides of a sweep file, as Hydra's basic sweeper expands them."""
    return sweep_jobs(SWEEPS / f"{name}.yaml")


def _pairwise(jobs: list[tuple[str, ...]]) -> list[tuple[str, ...]]:
    """Jobs of a grid that together hold every value of every axis and every pair of two axes'
    values (greedy, in the grid's order: deterministic)."""
    covers = [{(a,) for a in job} | set(itertools.combinations(job, 2)) for job in jobs]
    need, chosen = set().union(*covers), []
    while need:
        best = max(range(len(jobs)), key=lambda i: len(covers[i] & need))
        chosen.append(jobs[best])
        need -= covers[best]
    return chosen


@pytest.mark.parametrize("name", sorted(p.stem for p in SWEEPS.glob("*.yaml")))
def test_every_sweep_file_composes_for_every_combination(name):
    jobs = _grid(name)
    assert jobs
    # compose the jobs that hold every pair of the grid's values (a stride of 40 jobs before:
    # more composes, and no guarantee that a value met every other), every run of each
    for job in _pairwise(jobs):
        cfg = compose(job, config_name=name, config_dir=SWEEPS)
        runs = expand(cfg)
        assert len(runs) == len(inner_grid(cfg))
        for run in runs:
            from_config(run)


def test_sweep_sizes():
    assert len(_grid("smoke")) * 3 == SMOKE_RUNS


@pytest.mark.parametrize("overrides,key", [
    (["optimizer.lr=-1,0.1"], "optimizer.lr"),                       # a grid key sweep.inner also sets
    (["optimizer.lr=0.5"], "optimizer.lr"),                          # ... or a plain command-line value
    (["+sweep.inner.optimizer.lr=[0.1,1]"], "sweep.inner.optimizer"),  # nested: replaces the group
    (["sweep.inner={optimizer.lr:[]}"], "sweep.inner.optimizer.lr"),  # no runs at all
    (["+sweep.inner={train.sed:[1]}"], "sweep.inner.train.sed"),      # not a key of the config
    (["dataset=nonexistent,clean"], "dataset=nonexistent"),            # a job that does not compose
    (["train.device=gpu"], "train.device"),                            # no GPU on this machine
])
def test_a_bad_sweep_stops_before_any_store_with_one_line(tmp_path, overrides, key):
    if key == "train.device" and any(Path("/dev").glob("nvidia[0-9]*")):
        pytest.skip("this machine has a GPU device")
    db = tmp_path / "m.db"
    proc = subprocess.run(sweep_cmd(f"sqlite:///{db}", tmp_path, *overrides), capture_output=True, text=True,
                          cwd=ROOT, timeout=600)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nanbench: error: ") and key in lines[0], proc.stderr
    assert "must be" in lines[0] and "Traceback" not in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no store, no lock, no sweep folder


@pytest.mark.slow
def test_a_second_sweep_of_the_same_experiment_is_refused_while_the_first_runs(tmp_path, store):
    # the pause hook stops the first sweep's store process after its first recorded batch, so the
    # first sweep cannot end (its parent open, its lock held) until this test continues it
    first = subprocess.Popen(sweep_cmd(store, tmp_path, "sweep.summarize=false"), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, cwd=ROOT, env=hooked(pause_after=1))
    try:
        deadline = time.time() + 300
        while not (tmp_path / "hydra" / PARENT_FILE).exists() and time.time() < deadline:
            time.sleep(0.2)
        second = subprocess.run(sweep_cmd(store, tmp_path / "2"), capture_output=True, text=True, cwd=ROOT,
                                timeout=600)
        paused = None
        while paused is None and first.poll() is None and time.time() < deadline:
            paused = next((pid for pid in _descendants(first.pid) if stopped(pid)), None)
            time.sleep(0.2)
        assert paused is not None, "the first sweep never paused"
        os.kill(paused, signal.SIGCONT)
        out, err = first.communicate(timeout=600)
    finally:
        first.kill()
        first.wait()
    assert second.returncode == 2
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and "already running" in lines[0] and f"pid {first.pid}" in lines[0]
    assert first.returncode == 0, err[-2000:]
    # a clean end folds the write-ahead log into the file: a copy of mlflow.db alone has every run
    import shutil
    shutil.copyfile(tmp_path / "mlflow.db", tmp_path / "copy.db")
    assert len(children(f"sqlite:///{tmp_path / 'copy.db'}")) == SMOKE_RUNS
    runs = children(store)
    hashes = [r.data.tags["config_hash"] for r in runs]
    assert len(hashes) == SMOKE_RUNS and len(set(hashes)) == SMOKE_RUNS
    assert all(r.info.status == "FINISHED" for r in runs)
    assert [p.info.status for p in parents(store)] == ["FINISHED"]  # the live first was never KILLED


def _descendants(pid: int) -> list[int]:
    """The process's children, their children, ... (from /proc)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            kids = [int(c) for c in Path(f"/proc/{p}/task/{p}/children").read_text().split()]
        except OSError:
            kids = []
        out += kids
        todo += kids
    return out
