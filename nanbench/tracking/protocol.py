"""The wire between a sweep's trainers and the process that writes its store: requests, batches
of finished runs, and the restricted unpickler that admits only nanbench's records.

:func:`serve` answers one connection (a forked store process's, or a worker's at the sweep's
StoreServer); :class:`Connection` is the calling side both ProcessStore and RemoteStore use."""

from __future__ import annotations

import collections
import contextlib
import os
import pickle
import signal

from nanbench.tracking.sqlite import retry

MAX_BATCH = 256  # runs per transaction at most


def log_batch(tracker, batch: list, experiment: str, parent_run_id: str | None, tags: dict) -> None:
    retry(lambda: tracker.log_many(batch, experiment=experiment, parent_run_id=parent_run_id, tags=tags))


class _FaultHook:
    """A test hook (nanbench never sets it): a fault at a known point of a sweep, instead of a
    kill timed against training that must run long enough for the timer to land mid-sweep.

    It acts in :func:`serve`, where the process that records a sweep's runs for its trainers
    (the sweep's forked store process, or the sweep's process serving its joblib workers) writes
    them. ``NANBENCH_TEST_KILL_AFTER=N``: once that process has recorded N runs, it sends
    SIGKILL to its whole process group: the sweep dies at once, as on a lost machine, with
    exactly N runs recorded (a batch that would cross N records only its first runs; the rest
    are lost, as a real kill loses a batch it cuts off). ``NANBENCH_TEST_PAUSE_AFTER=N``: it
    stops itself (SIGSTOP) after the batch that reaches N, so a test can inject its own fault
    (kill the store process or a worker, start a second sweep) and then SIGCONT it. Either acts
    once per process; a process recording its own runs (a lost store's sweep) is never stopped."""

    def __init__(self):
        self.recorded, self.limit, self.action = 0, None, None
        for name, action in (("NANBENCH_TEST_KILL_AFTER", "kill"), ("NANBENCH_TEST_PAUSE_AFTER", "pause")):
            if os.environ.get(name):
                self.limit, self.action = int(os.environ[name]), action

    def cut(self, batch: list) -> list:
        """The part of `batch` to record before the kill."""
        return batch[:max(self.limit - self.recorded, 1)] if self.action == "kill" else batch

    def recorded_now(self, n: int) -> None:
        self.recorded += n
        if self.action is None or self.recorded < self.limit:
            return
        action, self.action = self.action, None  # once: a continued process records on
        if action == "kill":
            os.killpg(os.getpgid(0), signal.SIGKILL)
        else:
            os.kill(os.getpid(), signal.SIGSTOP)


fault_hook = _FaultHook()


class StoreLost(RuntimeError):
    """The process at the other end of a store's connection is gone."""


class BatchLost(RuntimeError):
    """A batch of runs sent to the store could not be written (a full disk, a server that
    stopped answering): the message says how many and the first reason."""


class Connection:
    """A store at the other end of a connection (``self.conn``), answered by :func:`serve`."""

    owed = 0  # answers still to read for writers closed without waiting (ProcessWriter.close)

    def _recv(self):
        try:
            return self.conn.recv()
        except (EOFError, OSError):
            raise StoreLost("the store process ended unexpectedly") from None

    def settle(self, block: bool = True) -> None:
        """Read the answers owed to writers closed without waiting (ProcessWriter.close): all of
        them, or with ``block=False`` those already there. A batch that could not be written
        raises here, in whatever asks the store next."""
        failures = []
        while self.owed and (block or self.conn.poll()):
            self.owed -= 1
            ok, value = self._recv()
            if ok and value:
                failures += value
        if failures:
            raise BatchLost(f"{len(failures)} batch(es) of runs could not be recorded: {failures[0]}")

    def _reply(self):
        self.settle()
        ok, value = self._recv()
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


class ProcessWriter:
    """A job's writer when the store is at the end of a connection (a store process or a
    server): each finished run is sent as it comes."""

    def __init__(self, store: Connection, experiment: str, parent_run_id: str | None, tags: dict):
        self.store, self.key, self.tags = store, (experiment, parent_run_id, tags), tags

    def put(self, result, start: float) -> None:
        self.store.settle(block=False)  # an earlier batch lost (answered meanwhile): stop the job now
        self.store.conn.send(("log", (result, start), self.key))

    def close(self, wait: bool = True) -> None:
        """Ask whether every run sent was written. ``wait=False`` does not wait for the answer
        (the store may still be writing this writer's runs while the next job trains): it is read
        by the connection's next request, which raises if a batch was lost (Connection.settle)."""
        self.store.settle(block=False)
        self.store.conn.send(("errors",))
        if not wait:
            self.store.owed += 1
            return
        errors = self.store._reply()
        if errors:
            raise BatchLost(f"{len(errors)} batch(es) of runs could not be recorded: {errors[0]}")


def serve(conn, tracking, lock=None, calls=None) -> None:
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
        return restricted_loads(conn.recv_bytes(), calls)

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
                    batch = fault_hook.cut(batch)
                    log_batch(tracker, batch, *key)
                    fault_hook.recorded_now(len(batch))
            except Exception as exc:  # noqa: BLE001 - reported at the writer's close
                errors.append(f"{type(exc).__name__}: {exc}")


# What a served store's caller may send: nanbench's own classes (RunResult and the specs and
# series in it), NumPy's array and scalar reconstruction, and the functions the server serves.
_NUMPY_SAFE = {("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
               ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "scalar"), ("numpy.dtypes", None)}


class RestrictedUnpickler(pickle.Unpickler):
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


def restricted_loads(data: bytes, calls):
    """Unpickle a served store's request, refusing any global but those above: a caller can
    send runs and name the served functions, never call anything of its choosing."""
    return RestrictedUnpickler(data, calls).load()
