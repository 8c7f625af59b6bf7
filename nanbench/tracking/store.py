"""Where a sweep's MLflow work runs: in a forked store process, or in the process that trains.

MLflow costs a new process seconds before it records anything (importing it and opening the
store), and every recorded run costs Python work. When a sweep's jobs train in the launching
process (Hydra's basic launcher), :class:`ProcessStore` hands all of it to a child forked before
TensorFlow is imported: the child imports MLflow and opens the store while the parent imports
TensorFlow, then records finished runs on the other core while the parent trains. Elsewhere
(a process that already loaded TensorFlow or MLflow, which must not be forked)
:class:`LocalStore` does the same work in the training process, recording from a thread. When the
jobs train in other processes on this machine (joblib's workers), the launching process opens its
store to them (:class:`StoreServer`) and each worker sends its runs there (:class:`RemoteStore`),
instead of each importing MLflow and opening the store itself. All are used alike:

    store.submit(fn, *args)()  # fn(tracker, *args) where the store is: its result or its exception
    store.writer(experiment, parent_run_id, tags)  # put(result, start), close(): runs recorded in batches
"""
from __future__ import annotations

import os
import queue
import signal
import sys
import threading
import time

from nanbench.tracking.protocol import MAX_BATCH, BatchLost, Connection, log_batch, serve



def can_fork() -> bool:
    """Forking is safe only before TensorFlow or MLflow are loaded (their threads, locks and open
    connections must not be copied into a child), with no other thread running, where the
    platform forks."""
    return (hasattr(os, "fork") and threading.active_count() == 1
            and not {"tensorflow", "mlflow", "sqlalchemy"} & set(sys.modules))


class LocalStore:
    """The store, opened in this process (once per process: nanbench.tracking.tracker.tracker_for)."""

    def __init__(self, tracking):
        self.tracking = tracking

    def submit(self, fn, *args):
        from nanbench.tracking.tracker import tracker_for
        try:
            value = fn(tracker_for(self.tracking), *args)
        except Exception as exc:  # noqa: BLE001 - raised by the returned function, as a child's would be
            def fail(exc=exc):
                raise exc
            return fail
        return lambda: value

    def call(self, fn, *args):
        return self.submit(fn, *args)()

    def writer(self, experiment: str, parent_run_id: str | None, tags: dict) -> "ThreadWriter":
        return ThreadWriter(self.tracking, experiment, parent_run_id, tags)

    def close(self) -> None:
        pass


class ThreadWriter:
    """Records finished runs on a background thread, overlapping MLflow writes with training.

    The thread also opens the store (importing MLflow, seconds in a new process) while the first
    runs train. Whatever has queued up while the last batch was written goes in as the next
    batch, in one transaction (Tracker.log_many), so the store sees a few large writes instead
    of many small ones. A batch is written whole or not at all: a sweep killed meanwhile loses
    only runs that were never recorded, and resume trains them again."""

    def __init__(self, tracking, experiment: str, parent_run_id: str | None, tags: dict):
        self.tracking, self.experiment, self.parent, self.tags = tracking, experiment, parent_run_id, tags
        self.queue: queue.Queue = queue.Queue(maxsize=MAX_BATCH)
        self.errors: list[str] = []
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        from nanbench.tracking.tracker import tracker_for
        try:
            tracker = tracker_for(self.tracking)
        except Exception as exc:  # noqa: BLE001 - surfaced by close()
            tracker = None
            self.errors.append(f"{type(exc).__name__}: {exc}")
        done = False
        while not done:
            batch = [self.queue.get()]
            while len(batch) < MAX_BATCH:
                try:
                    batch.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            if batch[-1] is None:
                batch.pop()
                done = True
            if not batch or tracker is None:
                continue
            try:
                log_batch(tracker, batch, self.experiment, self.parent, self.tags)
            except Exception as exc:  # noqa: BLE001 - surfaced by close()
                self.errors.append(f"{type(exc).__name__}: {exc}")

    def put(self, result, start: float) -> None:
        self.queue.put((result, start))

    def close(self, wait: bool = True) -> None:  # always waits: the thread is this process's
        self.queue.put(None)
        self.thread.join()
        if self.errors:
            raise BatchLost(f"{len(self.errors)} batch(es) of runs could not be recorded: {self.errors[0]}")


class ProcessStore(Connection):
    """A child process, forked now, that opens the store and does this process's MLflow work.

    Requests go over a pipe, in order: ``submit`` (a module-level function and its arguments,
    answered with its result or exception) and the writer's runs (not answered: the child batches
    whatever has arrived while it wrote the last batch, and reports failures at the writer's
    close). The child ignores Ctrl-C, SIGTERM and SIGHUP, writes what it was sent, and ends when
    this process closes the store or exits."""

    def __init__(self, tracking):
        import multiprocessing

        self.owner = os.getpid()
        here, there = multiprocessing.Pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            try:
                here.close()
                # Ctrl-C, SIGTERM and SIGHUP reach the whole process group: this process writes
                # what it was sent and ends when the sweep, closing, hangs up (or exits)
                for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                    signal.signal(signum, signal.SIG_IGN)
                serve(there, tracking)
            finally:
                os._exit(0)
        there.close()
        self.conn, self.pid = here, pid

    def close(self) -> None:
        self._hang_up()
        os.waitpid(self.pid, 0)
