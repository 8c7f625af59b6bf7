"""A Hydra job of a sweep: train every run it carries, in whatever process runs it (the
launching process with the basic launcher, a worker with joblib or a cluster launcher).

A job skips configurations already FINISHED (resume), trains the rest in calls of up to
``sweep.side_by_side`` runs (runs of one structure side by side, wherever they are in the job:
nanbench.run.execute_calls), records each run as a child of the sweep's parent run while the
next call trains, records invalid combinations as FAILED runs, and goes on recording from its
own process if the store process is lost. A job killed mid-call loses that call's runs; a
re-run trains them.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from pathlib import Path

from omegaconf import DictConfig

from nanbench import vocab
from nanbench.sweep import fold
from nanbench.sweep.bookkeeping import DONE_FILE, PARENT_FILE, record_invalid
from nanbench.sweep.grid import experiment_name, inner_grid, iter_runs, tracking_spec
from nanbench.sweep.progress import advance, progress
from nanbench.sweep.session import session
from nanbench.sweep.workers import JOBS_FILE, threads_per_worker, watch_launcher
from nanbench.tracking.protocol import BatchLost, StoreLost


def run_job(cfg: DictConfig) -> dict[str, int]:
    """Train every run of one Hydra job; return counts by outcome (skipped runs counted apart)."""
    from hydra.core.hydra_config import HydraConfig
    from nanbench.run import check_user_model, configure_tensorflow, execute_calls, resolve_device
    from nanbench.spec import ConfigError, from_config

    hydra_cfg = HydraConfig.get()
    threads = threads_per_worker(hydra_cfg.launcher.get("n_jobs"))
    if threads is None:  # Hydra's Ray launcher: the CPUs the job's task reserves
        from nanbench.cluster.launcher import task_threads
        threads = task_threads(hydra_cfg.launcher)
    configure_tensorflow(threads=threads)
    sweep_dir = Path(hydra_cfg.sweep.dir)
    meta = read_json(sweep_dir / PARENT_FILE)
    jobs = read_json(sweep_dir / JOBS_FILE).get("jobs")  # written by hydra/sweeper=nanbench
    done_file = sweep_dir / DONE_FILE
    done = set(done_file.read_text().split()) if done_file.exists() else set()
    name = meta.get("experiment") or experiment_name(cfg)
    rows = fold.rows(sweep_dir, cfg.sweep.get("fold"))
    runs = iter_runs(cfg, rows)  # one at a time: only each run's spec is kept until the job trains
    n_runs = len(rows) * len(inner_grid(cfg))
    store = job_store(cfg, meta)
    if session.failed and store is session.store:  # the store lost a batch: train nothing more
        raise BatchLost(session.failed)
    if meta.get("launcher_pid") not in (None, os.getpid()):
        watch_launcher()  # a worker: it ends when the sweep's process does
    tags = {"sweep": name, vocab.ROLE: vocab.CHILD, "hydra_job": str(hydra_cfg.job.num)}
    writer = store.writer(name, meta.get("parent_run_id"), tags)

    def recover(exc: BaseException):
        """The store process is gone: this process opens the store and records from here on."""
        nonlocal store, writer
        store = store_lost(cfg, store, exc)
        writer = store.writer(name, meta.get("parent_run_id"), tags)

    counts: dict[str, int] = {}
    bar = progress(jobs * n_runs if jobs else None)
    t0 = time.perf_counter()
    trained = 0
    side_by_side = int(cfg.sweep.get("side_by_side", 1))
    pending: list = []  # the job's specs to train: side by side where they share a structure

    for run in runs:
        try:
            spec = from_config(run, multirun=True)
            check_user_model(spec)  # a user's model against this run's data (cached per model and data)
        except ConfigError as exc:
            # An invalid combination is a FAILED run with its message; the sweep goes on.
            try:
                store.call(record_invalid, name, meta.get("parent_run_id"), run, f"ConfigError: {exc}", tags)
            except (OSError, EOFError, StoreLost) as lost:
                recover(lost)
                store.call(record_invalid, name, meta.get("parent_run_id"), run, f"ConfigError: {exc}", tags)
            counts["error"] = counts.get("error", 0) + 1
            advance(bar, "error")
            continue
        if spec.config_hash() in done:
            counts["skipped"] = counts.get("skipped", 0) + 1
            advance(bar, None)
            continue
        try:
            resolve_device(spec.train.device)
        except ConfigError as exc:  # a GPU device file, but none TensorFlow can use
            store.call(record_invalid, name, meta.get("parent_run_id"), run, f"ConfigError: {exc}", tags)
            counts["error"] = counts.get("error", 0) + 1
            advance(bar, "error")
            continue
        pending.append(spec)
    start = time.time()
    try:
        for call in execute_calls(pending, side_by_side=side_by_side):
            stopped()
            for _, result in call:
                try:
                    writer.put(result, start)
                except (OSError, EOFError, StoreLost) as exc:
                    recover(exc)
                    writer.put(result, start)
                trained += 1
                counts[result.outcome] = counts.get(result.outcome, 0) + 1
                advance(bar, result.outcome)
            start = time.time()
        try:
            # the launching process's own store process writes this job's last runs while the next
            # job trains (its answer is read by the next request, at the latest the sweep's end);
            # a worker's store connection may end with its process, so a worker waits
            writer.close(wait=store is not session.store)
        except (OSError, EOFError, StoreLost) as exc:  # what it had been sent is lost: resume trains it again
            recover(exc)
            writer.close()
    except BatchLost as exc:  # a full disk, a server gone: the jobs still to come train nothing
        if store is session.store:
            session.failed = str(exc)
        raise
    elapsed = time.perf_counter() - t0
    if bar is None:
        folded = {key for row in rows for key in row}  # their values are the runs'; the line names the job's own
        overrides = " ".join(o for o in hydra_cfg.overrides.task
                             if o.split("=", 1)[0] not in folded) or "(defaults)"
        total_jobs = jobs or "?"
        line = ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
        print(f"[job {hydra_cfg.job.num + 1}/{total_jobs}] {overrides}: {line} "
              f"({trained / elapsed if elapsed > 0 else 0:.1f} runs/s)", flush=True)
    return counts


def stopped() -> None:
    """Raise the user's interrupt here if one arrived and was swallowed on its way (a signal's
    handler that raised inside a callback or a finalizer, where Python only prints it): the
    sweep stops between calls rather than training on (nanbench.sweep.interrupts)."""
    from nanbench.sweep import interrupts
    if interrupts.received is not None:
        raise interrupts.Interrupted(interrupts.received)


def store_lost(cfg: DictConfig, store, exc: BaseException):
    """The launching process's store process ended mid-sweep (killed, out of memory): reap it,
    note why (the sweep ends FAILED with it, see SweepCallback.finish), and go on with the store
    opened in this process, so that every job still to come is trained and recorded. Runs it had
    been sent and not yet written are lost; a re-run trains them. A worker's lost connection to
    a served store is not recoverable here: it is raised."""
    from nanbench.tracking.store import LocalStore, ProcessStore
    if not isinstance(store, ProcessStore):
        if isinstance(store, LocalStore) and store is session.store:
            return store
        raise exc
    with contextlib.suppress(OSError, ChildProcessError):
        os.waitpid(store.pid, os.WNOHANG)
    session.lost = f"the store process (pid {store.pid}) ended unexpectedly; runs it had not yet written are lost"
    print(f"nanbench: warning: {session.lost}; recording from this process from here on", file=sys.stderr, flush=True)
    session.store = LocalStore(tracking_spec(cfg))
    return session.store


_remote = None  # a worker's connection to the launching process's store, kept across its jobs


def job_store(cfg: DictConfig, meta: dict):
    """Where a job records its runs: the launching process's store when the job runs there
    (basic launcher) or it serves its store to this process (joblib workers), else this
    process's own."""
    global _remote
    from nanbench.tracking.server import RemoteStore
    from nanbench.tracking.store import LocalStore
    if session.store is not None and getattr(session.store, "owner", None) == os.getpid():
        return session.store
    served = meta.get("store")
    if served:
        if _remote is None or _remote.address != served["address"] or _remote.owner != os.getpid():
            try:
                _remote = RemoteStore(served["address"], served["key"])
            except OSError:  # not reachable from here: record from this process
                return LocalStore(tracking_spec(cfg))
        return _remote
    return LocalStore(tracking_spec(cfg))


def read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}
