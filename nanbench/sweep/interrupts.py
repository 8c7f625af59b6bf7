"""A sweep stopped by its user: Ctrl-C (SIGINT, to the terminal's whole process group), SIGTERM
(``kill``, a scheduler's end of job) or SIGHUP (the terminal closed).

Each becomes :class:`Interrupted` in the launching process's main thread (a KeyboardInterrupt,
so that Hydra and joblib unwind as they do for Ctrl-C), which ``python -m nanbench`` turns into
the sweep's end (nanbench.sweep.callback.SweepCallback.interrupt): the runs recorded so far
kept, the parent run KILLED, one line, and the shell's status for that signal (128 + its
number: 130, 143, 129). Python's default would print a traceback for SIGINT and nothing at all
for SIGTERM and SIGHUP, leaving the parent run RUNNING and the served store's folder behind.
"""

from __future__ import annotations

import signal

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
NAMES = {signal.SIGINT: "Ctrl-C (SIGINT)", signal.SIGTERM: "SIGTERM", signal.SIGHUP: "SIGHUP"}


class Interrupted(KeyboardInterrupt):
    """The user stopped the sweep with `signum`."""

    def __init__(self, signum: int = signal.SIGINT):
        super().__init__(NAMES.get(signum, f"signal {signum}"))
        self.signum = signum


received: int | None = None  # the signal that stopped this sweep, once one has
_previous: dict = {}  # the handlers before install(), put back by restore()


def _raise(signum, _frame) -> None:
    global received
    received = signum
    raise Interrupted(signum)


def install() -> None:
    """SIGINT, SIGTERM and SIGHUP raise :class:`Interrupted` in this process (its main thread)."""
    global received
    received = None
    for signum in SIGNALS:
        _previous.setdefault(signum, signal.getsignal(signum))
        signal.signal(signum, _raise)


def hold() -> None:
    """While the sweep is being closed, a signal is ignored (the parent run, the counts and the
    served store's folder are being written or removed; kill -9 still ends it): a sweep whose
    jobs are all done ends as it would have, one interrupted ends KILLED, never half-closed."""
    for signum in SIGNALS:
        signal.signal(signum, signal.SIG_IGN)


def restore() -> None:
    """The handlers this process had before the sweep (once it is closed); the sweep's signal is
    forgotten with them (the next sweep in this process starts unstopped)."""
    global received
    received = None
    for signum, handler in _previous.items():
        signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
    _previous.clear()


def signal_of(exc: BaseException) -> int:
    """The signal behind a KeyboardInterrupt (Python's own, for Ctrl-C: SIGINT)."""
    return getattr(exc, "signum", signal.SIGINT)


def exit_status(signum: int) -> int:
    """The status a shell gives a command ended by `signum`: 128 + its number."""
    return 128 + int(signum)

