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
