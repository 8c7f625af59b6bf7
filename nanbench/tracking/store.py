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

import collections
import contextlib
import os
import pickle
import queue
import signal
import sys
import threading
import time

MAX_BATCH = 256  # runs per transaction at most


def retry(fn, attempts: int = 8):
    """SQLite allows one writer at a time: retry 'database is locked' with backoff."""
    for i in range(attempts):
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001
            if "locked" not in str(exc) or i == attempts - 1:
                raise
            time.sleep(0.05 * 2 ** i)


def _log_batch(tracker, batch: list, experiment: str, parent_run_id: str | None, tags: dict) -> None:
    retry(lambda: tracker.log_many(batch, experiment=experiment, parent_run_id=parent_run_id, tags=tags))


def can_fork() -> bool:
    """Forking is safe only before TensorFlow or MLflow are loaded (their threads, locks and open
    connections must not be copied into a child), with no other thread running, where the
    platform forks."""
    return (hasattr(os, "fork") and threading.active_count() == 1
            and not {"tensorflow", "mlflow", "sqlalchemy"} & set(sys.modules))


# --------------------------------------------------------------------------------------------
# In the training process


class LocalStore:
    """The store, opened in this process (once per process: nanbench.tracking.tracker_for)."""

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
                _log_batch(tracker, batch, self.experiment, self.parent, self.tags)
            except Exception as exc:  # noqa: BLE001 - surfaced by close()
                self.errors.append(f"{type(exc).__name__}: {exc}")

    def put(self, result, start: float) -> None:
        self.queue.put((result, start))

    def close(self) -> None:
        self.queue.put(None)
        self.thread.join()
        if self.errors:
            raise RuntimeError(f"{len(self.errors)} batch(es) of runs could not be recorded: {self.errors[0]}")


# --------------------------------------------------------------------------------------------
# In a forked store process


class StoreLost(RuntimeError):
    """The process at the other end of a store's connection is gone."""


class _Connected:
    """A store at the other end of a connection (``self.conn``), answered by :func:`_serve`."""

    def _reply(self):
        try:
            ok, value = self.conn.recv()
        except (EOFError, OSError):
            raise StoreLost("the store process ended unexpectedly") from None
        if not ok:
            raise value
        return value

    def submit(self, fn, *args):
        self.conn.send(("call", fn, args))
        return self._reply

    def call(self, fn, *args):
        return self.submit(fn, *args)()

    def writer(self, experiment: str, parent_run_id: str | None, tags: dict) -> "ProcessWriter":
        return ProcessWriter(self, experiment, parent_run_id, tags)

    def _hang_up(self) -> None:
        try:
            self.conn.send(("close",))
            self.conn.close()
        except OSError:
            pass


class ProcessStore(_Connected):
    """A child process, forked now, that opens the store and does this process's MLflow work.

    Requests go over a pipe, in order: ``submit`` (a module-level function and its arguments,
    answered with its result or exception) and the writer's runs (not answered: the child batches
    whatever has arrived while it wrote the last batch, and reports failures at the writer's
    close). The child ignores Ctrl-C, writes what it was sent, and ends when this process closes
    the store or exits."""

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
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                _serve(there, tracking)
            finally:
                os._exit(0)
        there.close()
        self.conn, self.pid = here, pid

    def close(self) -> None:
        self._hang_up()
        os.waitpid(self.pid, 0)


# --------------------------------------------------------------------------------------------
# Shared with the launching process's other processes (joblib workers)


class StoreServer:
    """This process's store, opened to this machine's other processes over a local socket.

    joblib's workers send their runs here (:class:`RemoteStore`) rather than each importing
    MLflow and opening the store (seconds of a core per worker), and one process writes the
    store (SQLite takes one writer at a time). Each connection is authenticated and served by
    :func:`_serve` on a thread of its own, one at a time at the store, so a caller that connects
    and hangs up (or never answers the handshake) costs only its own thread: the server keeps
    accepting. The socket is in a folder only this user can open (checked), a connection must
    also prove it has the key (``address`` gives both; the sweep writes it to a 0600 file), and
    a connection may only send runs and ask for the functions in `calls`, never one of its own."""

    def __init__(self, tracking, calls=()):
        import tempfile
        from multiprocessing.connection import Listener

        self.tracking, self.key, self.calls = tracking, os.urandom(16), frozenset(calls)
        self.folder = tempfile.mkdtemp(prefix="nanbench-store-")  # 0700, this user's
        info = os.stat(self.folder)
        if info.st_uid != os.getuid() or info.st_mode & 0o077:
            raise RuntimeError(f"{self.folder}: not private to this user; the store is not served")
        # no authkey here: the handshake runs on each connection's thread (see _handshake)
        self.listener = Listener(os.path.join(self.folder, "store.sock"), family="AF_UNIX")
        self.address = {"address": self.listener.address, "key": self.key.hex()}  # RemoteStore(**address)
        self.lock = threading.Lock()
        self.closed = False
        self.threads: list[threading.Thread] = []  # one per connection
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                conn = self.listener.accept()
            except Exception:  # noqa: BLE001 - closed (then the loop ends), or one failed connect
                if self.closed:
                    return
                time.sleep(0.01)
                continue
            thread = threading.Thread(target=self._handshake, args=(conn,), daemon=True)
            self.threads = [t for t in self.threads if t.is_alive()] + [thread]
            thread.start()

    def _handshake(self, conn) -> None:
        from multiprocessing.connection import answer_challenge, deliver_challenge
        try:
            deliver_challenge(conn, self.key)
            answer_challenge(conn, self.key)
        except Exception:  # noqa: BLE001 - a caller without the key, or one that hung up: refused
            conn.close()
            return
        _serve(conn, self.tracking, self.lock, calls=self.calls)

    def drain(self, timeout: float = 60.0) -> bool:
        """Wait until every connection has been served to its end (its runs written): after its
        workers are gone, what they sent is in the store. Returns whether all ended in time."""
        deadline = time.time() + timeout
        for thread in list(self.threads):
            thread.join(max(0.0, deadline - time.time()))
        return not any(t.is_alive() for t in self.threads)

    def close(self) -> None:
        self.closed = True
        self.listener.close()
        with contextlib.suppress(OSError):
            os.rmdir(self.folder)


class RemoteStore(_Connected):
    """A :class:`StoreServer` of another process on this machine, as this process's store."""

    def __init__(self, address: str, key: str):
        from multiprocessing.connection import Client

        self.address, self.owner = address, os.getpid()
        self.conn = Client(address, family="AF_UNIX", authkey=bytes.fromhex(key))

    def close(self) -> None:
        self._hang_up()


class ProcessWriter:
    """A job's writer when the store is at the end of a connection (a store process or a
    server): each finished run is sent as it comes."""

    def __init__(self, store: _Connected, experiment: str, parent_run_id: str | None, tags: dict):
        self.store, self.key, self.tags = store, (experiment, parent_run_id, tags), tags

    def put(self, result, start: float) -> None:
        self.store.conn.send(("log", (result, start), self.key))

    def close(self) -> None:
        self.store.conn.send(("errors",))
        errors = self.store._reply()
        if errors:
            raise RuntimeError(f"{len(errors)} batch(es) of runs could not be recorded: {errors[0]}")


def _serve(conn, tracking, lock=None, calls=None) -> None:
    """Open the store, then answer one connection's requests until it is closed; with `lock`,
    each use of the store holds it (connections served on threads of one process); with `calls`,
    a "call" request is answered only for one of those functions (a served store's callers)."""
    from nanbench.tracking.tracker import tracker_for

    held = lock if lock is not None else contextlib.nullcontext()

    try:
        with held:
            tracker, opened = tracker_for(tracking), None
    except Exception as exc:  # noqa: BLE001 - the answer to every request
        tracker, opened = None, exc
    inbox: collections.deque = collections.deque()
    errors: list[str] = []

    def answer(ok: bool, value) -> None:
        try:
            payload = pickle.dumps((ok, value))
        except Exception:  # noqa: BLE001 - an exception that does not pickle
            payload = pickle.dumps((False, RuntimeError(f"{type(value).__name__}: {value}")))
        conn.send_bytes(payload)

    def receive():
        if calls is None:  # this process's own fork: anything it sends is this program's
            return conn.recv()
        return _restricted_loads(conn.recv_bytes(), calls)

    while True:
        try:
            msg = inbox.popleft() if inbox else receive()
        except (EOFError, OSError):
            return
        except pickle.UnpicklingError as exc:  # not a message nanbench sends: refused, connection closed
            with contextlib.suppress(Exception):
                answer(False, PermissionError(f"refused: {exc}"))
            return
        kind = msg[0]
        if kind == "close":
            return
        if kind == "errors":
            answer(True, list(errors))
            errors.clear()
        elif kind == "call":
            fn, args = msg[1], msg[2]
            if calls is not None and fn not in calls:
                answer(False, PermissionError(f"the store does not serve {getattr(fn, '__name__', fn)!r}"))
                continue
            if tracker is None:
                answer(False, opened)
                continue
            try:
                with held:
                    value = fn(tracker, *args)
                answer(True, value)
            except Exception as exc:  # noqa: BLE001 - raised again in the parent
                answer(False, exc)
        elif kind == "log":
            batch, key = [msg[1]], msg[2]
            while len(batch) < MAX_BATCH and conn.poll():  # whatever else has arrived meanwhile
                try:
                    nxt = receive()
                except (EOFError, OSError, pickle.UnpicklingError):
                    break
                if nxt[0] == "log" and nxt[2] == key:
                    batch.append(nxt[1])
                else:
                    inbox.append(nxt)
                    break
            if tracker is None:
                errors.append(f"{type(opened).__name__}: {opened}")
                continue
            try:
                with held:
                    _log_batch(tracker, batch, *key)
            except Exception as exc:  # noqa: BLE001 - reported at the writer's close
                errors.append(f"{type(exc).__name__}: {exc}")


# What a served store's caller may send: nanbench's own classes (RunResult and the specs and
# series in it), NumPy's array and scalar reconstruction, and the functions the server serves.
_NUMPY_SAFE = {("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
               ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "scalar"), ("numpy.dtypes", None)}


class _Restricted(pickle.Unpickler):
    def __init__(self, data: bytes, calls):
        import io
        super().__init__(io.BytesIO(data))
        self.calls = {(fn.__module__, fn.__qualname__) for fn in calls}

    def find_class(self, module: str, name: str):
        if (module, name) in self.calls or (module, name) in _NUMPY_SAFE or (module == "numpy.dtypes"):
            return super().find_class(module, name)
        if module.startswith("nanbench.") or module == "builtins" and name in ("set", "frozenset", "complex"):
            found = super().find_class(module, name)
            if isinstance(found, type) and not issubclass(found, BaseException) or module == "builtins":
                return found
        raise pickle.UnpicklingError(f"{module}.{name} is not something a sweep's worker sends")


def _restricted_loads(data: bytes, calls):
    """Unpickle a served store's request, refusing any global but those above: a caller can
    send runs and name the served functions, never call anything of its choosing."""
    return _Restricted(data, calls).load()


# --------------------------------------------------------------------------------------------
# One sweep per (store, experiment) at a time


class SweepBusy(RuntimeError):
    """Another live sweep holds this store's experiment (the message says who)."""


class SweepLock:
    """An exclusive lock on (store, experiment), held by the sweep's process for its life.

    Two sweeps of one experiment on one store would train every configuration twice (each skips
    only what was FINISHED when it started) and the second would mark the first's live runs
    KILLED. The lock is an ``flock`` on a small file (beside an SQLite store; in nanbench's cache
    folder for any other store, so it holds between sweeps of this machine), which the kernel
    releases when the process ends however it ends: a killed sweep never leaves it taken. The
    file names its holder (pid, host, start), for the message a second sweep gets."""

    def __init__(self, uri: str, experiment: str, wait: bool = False):
        import fcntl
        import hashlib
        import json
        import socket

        from nanbench.tracking.sqlite import cache_dir
        from nanbench.tracking.uri import sqlite_path

        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in experiment)[:80]
        path = sqlite_path(uri)
        if path is not None:
            self.path = path.with_name(f".{path.name}.{safe}.lock")
        else:
            folder = cache_dir() / "locks"
            folder.mkdir(parents=True, exist_ok=True)
            self.path = folder / f"{hashlib.sha256(f'{uri} {experiment}'.encode()).hexdigest()[:16]}.{safe}.lock"
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self._holder()
            if not wait:
                os.close(self.fd)
                raise SweepBusy(f"sweep {experiment} is already running on {uri} ({holder}); "
                                "wait for it to end, or add sweep.wait=true to start when it does") from None
            print(f"nanbench: waiting for sweep {experiment} on {uri} ({holder}) to end", flush=True)
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                       "since": time.strftime("%Y-%m-%d %H:%M:%S %Z")}).encode(), 0)

    def _holder(self) -> str:
        import json
        try:
            info = json.loads(os.pread(self.fd, 4096, 0) or b"{}")
            return f"pid {info['pid']} on {info['host']}, since {info['since']}"
        except (OSError, ValueError, KeyError):
            return "another process"

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
