"""The sweep's Hydra callback, in the launching process: checks, the parent run, the end.

:class:`SweepCallback` (a Hydra callback, so it works with every launcher) checks everything it
can before the store is touched, creates the experiment and a parent run before any job starts,
and at the end records counts by outcome and wall time on the parent, summarizes, and sets the
exit status. A sweep that loses a worker or its store process finishes what it can, ends its
parent FAILED with the reason, and exits 1 (:func:`abort`, :func:`before_relaunch`).
"""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from nanbench.sweep import interrupts
from nanbench.sweep.bookkeeping import (DONE_FILE, completed, end_sweep_store, finish_parent, finished_now,
                                        record_invalid, recorded_here, start_sweep_store)
from nanbench.sweep.grid import (check_base, check_inner, check_jobs, experiment_name, grid_fingerprint, one_line,
                                 tracking_spec)
from nanbench.sweep.grid import check_size
from nanbench.sweep.progress import progress_close
from nanbench.sweep.session import session
from nanbench.sweep.workers import (describe_fault, is_joblib, jobs_run_here, start_resource_tracker, start_workers,
                                    stop_workers)


class SweepCallback(Callback):
    """Creates the sweep's parent run before jobs start and closes it after they end."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        session.lost, session.failed, session.jobs_complete = None, None, False
        interrupts.install()  # Ctrl-C, SIGTERM, SIGHUP: the sweep's end, in one line (see interrupt)
        from nanbench.cluster.launcher import check_launcher
        from nanbench.validate import check_device
        from nanbench.spec import ConfigError
        from nanbench.tracking.lock import SweepBusy, SweepLock
        from nanbench.tracking.server import StoreServer
        from nanbench.tracking.store import LocalStore, ProcessStore, can_fork
        from nanbench.tracking import check_uri

        try:
            check_base(config)  # a bad value stops the sweep here, with its one line
            # everything that can be checked before the store is touched: no parent run, no new store
            check_uri(config.tracking.uri)
            check_inner(config)
            check_size(config)  # sweep.max_runs: before any axis is listed or composed value by value
            check_device(config.train.device)
            check_launcher(config)  # Ray: an explicit, reachable head address
            check_jobs(config)
            self._lock = SweepLock(str(config.tracking.uri), experiment_name(config),
                                   wait=bool(config.sweep.get("wait", False)))
            self._fingerprint = grid_fingerprint(config)
            done = None if config.sweep.redo else completed(config, self._fingerprint)
            if done is not None:
                print(f"nanbench: sweep {experiment_name(config)}: nothing to do: all {done} configurations "
                      "of this grid are FINISHED (sweep.redo=true re-runs them)", flush=True)
                self._lock.release()
                sys.exit(0)
            # resolved here, once: the default folder is ${now:...}, and Hydra's cache of it is
            # this process's (a store process resolving it itself could land a second later)
            sweep_dir = str(config.hydra.sweep.dir)
            if jobs_run_here(config) and can_fork():
                # The store's side (importing MLflow, opening the store, the parent run) runs in
                # a forked store process on another core while this process imports TensorFlow
                # for the jobs it is about to run; each is several seconds.
                store = ProcessStore(tracking_spec(config))
                started = store.submit(start_sweep_store, config, sweep_dir)
                from nanbench.run import configure_tensorflow
                configure_tensorflow()
                import nanbench.engines.fused  # noqa: F401 - Keras, imported while the child works
            else:
                if is_joblib(config):
                    start_resource_tracker()
                warming = start_workers(config)
                store = LocalStore(tracking_spec(config))
                if is_joblib(config):  # its workers are this machine's processes: they send runs here
                    session.server = StoreServer(tracking_spec(config), calls=(record_invalid,))
                started = store.submit(start_sweep_store, config, sweep_dir, session.server.address if session.server else None)
                if warming is not None:
                    warming.join()
            start = started()
        except (ConfigError, SweepBusy) as exc:
            print(f"nanbench: error: {exc}", file=sys.stderr, flush=True)
            sys.exit(2)
        except Exception as exc:  # noqa: BLE001 - Hydra would only warn, and run jobs with no parent run
            print(f"nanbench: error: the sweep could not start: {type(exc).__name__}: {one_line(exc)}",
                  file=sys.stderr, flush=True)
            sys.exit(2)
        session.store, session.active = store, self
        self._store, self._config = store, config
        self._start = time.time()
        self._parent = start["parent_run_id"]
        self._sweep_dir, self._redo = sweep_dir, bool(config.sweep.redo)
        self._exp_id = start["experiment_id"]
        msg = f"nanbench: sweep {start['experiment']}: {start['runs']} run(s)"
        if start["done"]:
            msg += (f"; {start['done']} configurations already FINISHED are skipped "
                    "(sweep.redo=true re-runs them)")
        if start["killed"]:
            msg += f"; marked {start['killed']} interrupted run(s) KILLED"
        if start.get("incomplete"):
            msg += f"; marked {start['incomplete']} FINISHED run(s) missing their steps.csv KILLED (trained again)"
        print(msg, flush=True)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self.finish(config)

    def finish(self, config: DictConfig, failure: str | None = None, signum: int | None = None) -> None:
        """Close the sweep: counts on the parent, the summary, the parent FINISHED (FAILED, with
        `failure` or the lost store's reason, when the sweep could not run to its end; KILLED
        when the user stopped it with signal `signum`)."""
        if not hasattr(self, "_parent") or session.active is not self:
            return
        session.active = None
        interrupts.hold()  # closed whole, whatever arrives meanwhile
        with contextlib.suppress(Exception):  # a broken executor: its workers are already gone
            stop_workers(config)
        progress_close()
        if session.store is not None and session.store is not self._store:  # the store process was lost: see store_lost
            self._store = session.store
        if signum is not None:
            self._store = self._store_after_interrupt(config)
            failure = f"interrupted by {interrupts.NAMES.get(signum, f'signal {signum}')}"
        failure = failure or session.lost
        wall = time.time() - self._start
        name = experiment_name(config)
        try:  # the last jobs' answers: whether all their runs were written
            if hasattr(self._store, "settle"):
                self._store.settle()
        except Exception as exc:  # noqa: BLE001 - a full or broken store, said in the one line
            failure = failure or describe_fault(exc)
        try:
            counts = self._store.call(end_sweep_store, self._exp_id, self._parent, wall)
        except Exception as exc:  # noqa: BLE001 - a full or broken store: say so, in the one line
            failure = failure or f"the store could not record the sweep's end ({describe_fault(exc)})"
            try:  # what this sweep's store process did record, counted there
                counts = self._store.call(recorded_here, self._parent)
            except Exception:  # noqa: BLE001 - the store process itself is gone
                counts = {}
        summary_line = ", ".join(f"{v} {k}" for k, v in sorted(counts.items())) or "no new runs"
        print(f"nanbench: sweep {name} {'stopped' if failure else 'done'} in {time.time() - self._start:.1f} s: "
              f"{summary_line}", flush=True)
        try:  # a finished sweep stays finished whatever the summary does
            if config.sweep.get("summarize", True) and not failure:
                summarize_sweep(config, name, self._parent)
        except Exception as exc:  # noqa: BLE001
            print(f"nanbench: warning: summary failed ({type(exc).__name__}: {exc}); "
                  f"re-run it with `make summary SWEEP={name}`", file=sys.stderr, flush=True)
        parent_state = "FAILED"
        complete = (self._fingerprint if not failure and not counts.get("error") and session.jobs_complete
                    and not session.lost else None)
        if signum is not None:
            parent_state = "KILLED"
        try:
            self._store.call(finish_parent, self._parent, failure, complete, self._exp_id,
                             "KILLED" if signum is not None else None)
        except Exception as exc:  # noqa: BLE001 - left RUNNING: the next invocation marks it KILLED
            failure = failure or f"the store could not close the parent run ({describe_fault(exc)})"
            parent_state = "left RUNNING (the next run of this sweep marks it KILLED)"
        with contextlib.suppress(Exception):
            self._store.close()
        if session.server is not None:
            session.server.close()
            session.server = None
        session.store = None
        self._lock.release()
        interrupts.restore()
        errors = counts.get("error", 0)
        if signum is not None:
            recorded = sum(counts.values())
            print(f"nanbench: sweep {name} {failure}: {recorded} run(s) recorded by this invocation are kept"
                  f"{'' if counts else ' (the store could not be read)'}; its parent run is {parent_state}; "
                  "re-run the same command to train the rest", file=sys.stderr, flush=True)
            session.exit_status = interrupts.exit_status(signum)
        elif failure:
            print(f"nanbench: error: sweep {name} stopped: {failure}; its parent run is {parent_state}; "
                  "re-run the same command to train what is missing", file=sys.stderr, flush=True)
            session.exit_status = 1
        elif errors:
            print(f"nanbench: {errors} run(s) errored (recorded as FAILED runs in MLflow)",
                  file=sys.stderr, flush=True)
            session.exit_status = 1






    def _store_after_interrupt(self, config: DictConfig):
        """The store to close an interrupted sweep with. What the workers had sent a served store
        is written first (their connections end with them); a store process is closed (it writes
        everything it was sent, then ends) and this process opens the store itself: the
        interrupt may have cut a message to that process in half."""
        from nanbench.tracking.store import LocalStore, ProcessStore
        if session.server is not None:
            session.server.drain(timeout=30)
        if isinstance(self._store, ProcessStore):
            with contextlib.suppress(Exception):
                self._store.close()
            self._store = session.store = LocalStore(tracking_spec(config))
        return self._store


def interrupted(exc: BaseException) -> int:
    """A KeyboardInterrupt reached ``python -m nanbench`` (Ctrl-C, or SIGTERM or SIGHUP during a
    sweep: nanbench.sweep.interrupts): close the open sweep (its parent KILLED, the runs recorded
    kept, one line) and return the exit status for that signal."""
    signum = interrupts.signal_of(exc)
    interrupts.hold()
    progress_close()
    active = session.active
    if active is None:
        print(f"nanbench: interrupted by {interrupts.NAMES.get(signum, f'signal {signum}')}", file=sys.stderr,
              flush=True)
        return interrupts.exit_status(signum)
    active.finish(active._config, signum=signum)
    return session.exit_status


def abort(config: DictConfig, exc: BaseException) -> None:
    """The jobs could not all run (a worker or the store process was lost, a job raised): close
    the open sweep with its parent FAILED and the reason in one line, and exit 1. Called by
    hydra/sweeper=nanbench in place of Hydra's traceback."""
    if interrupts.received is not None:  # the signal's own workers' deaths came first
        sys.exit(interrupted(interrupts.Interrupted(interrupts.received)))
    reason = describe_fault(exc)
    if session.active is None:
        print(f"nanbench: error: the sweep stopped: {reason}", file=sys.stderr, flush=True)
        sys.exit(1)
    session.active.finish(config, failure=reason)
    sys.exit(session.exit_status or 1)


def before_relaunch(exc: BaseException) -> bool:
    """joblib lost a worker (killed, out of memory) and with it the batch's executor: once per
    sweep, wait until the served store has written everything the workers sent, refresh the
    configurations FINISHED (the jobs skip them), note the loss (the sweep ends FAILED with it)
    and have the batch launched again. False: not that fault, or it happened twice: give up."""
    if interrupts.received is not None:  # stopped by the user: nothing is launched again
        return False
    if type(exc).__name__ != "TerminatedWorkerError" or session.lost or session.active is None or session.server is None:
        return False
    reason = describe_fault(exc)
    print(f"nanbench: warning: {reason}; launching the jobs left on new workers", file=sys.stderr, flush=True)
    if not session.server.drain():
        return False
    sweep_dir = Path(session.active._sweep_dir)
    done = session.active._store.call(finished_now, session.active._exp_id) if not session.active._redo else set()
    (sweep_dir / DONE_FILE).write_text("\n".join(sorted(done)))
    session.lost = f"{reason}; the jobs were launched again on new workers"
    return True


def jobs_returned(returns) -> None:
    """The jobs' returns (Hydra's JobReturns, by batch): whether every run was FINISHED or skipped."""
    session.jobs_complete = all("error" not in (r.return_value or {}) for batch in returns for r in batch)


def summarize_sweep(config: DictConfig, name: str, parent_run_id: str) -> None:
    """Write results/<sweep>/ and attach it to the parent run."""
    from nanbench import summary

    out = Path(config.sweep.results_dir) / name
    # every configuration of the experiment (its latest run), so a resumed sweep is summarized whole
    summary.summarize(name, config.tracking.uri, out, parent_run_id=parent_run_id, scope="experiment")
    print(f"nanbench: summary written to {out}/summary.md", flush=True)
