"""nanbench.sweep.interrupts: SIGINT, SIGTERM and SIGHUP become one exception carrying the signal,
and the handlers before the sweep come back after it."""

from __future__ import annotations

import os
import signal

import pytest

from nanbench.sweep import interrupts


@pytest.mark.parametrize("signum,status", [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_a_signal_is_an_interrupt_with_its_exit_status(signum, status):
    before = {s: signal.getsignal(s) for s in interrupts.SIGNALS}
    interrupts.install()
    try:
        with pytest.raises(KeyboardInterrupt) as caught:
            os.kill(os.getpid(), signum)
            signal.sigtimedwait([], 0)  # let the handler run here
        assert interrupts.signal_of(caught.value) == signum and interrupts.received == signum
        assert interrupts.exit_status(interrupts.signal_of(caught.value)) == status
    finally:
        interrupts.restore()
    assert {s: signal.getsignal(s) for s in interrupts.SIGNALS} == before
    assert interrupts.signal_of(KeyboardInterrupt()) == signal.SIGINT  # Python's own Ctrl-C


def test_a_swallowed_interrupt_stops_the_job_between_calls_and_is_forgotten_after_the_sweep():
    """A signal whose handler raised where Python only prints the exception (a callback, a
    finalizer) has still been received: the job loop raises it between calls. restore() forgets
    it, so a later sweep in this process is not stopped by it."""
    from nanbench.sweep.jobs import stopped

    interrupts.install()
    try:
        stopped()  # nothing received: nothing raised
        interrupts.received = signal.SIGHUP
        with pytest.raises(interrupts.Interrupted) as caught:
            stopped()
        assert caught.value.signum == signal.SIGHUP
    finally:
        interrupts.restore()
    assert interrupts.received is None
    stopped()
