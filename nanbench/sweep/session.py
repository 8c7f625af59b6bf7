"""The launching process's open sweep: what the callback, the jobs run here and the sweeper share.

One object instead of module globals: set by SweepCallback at the sweep's start, cleared at its
end, read by jobs that run in this process (their store) and by hydra/sweeper=nanbench (abort,
relaunch after a lost worker)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class Session:
    store: Any = None          # the launching process's store (nanbench.tracking.store)
    server: Any = None         # with joblib: the same store served to the workers (StoreServer)
    active: Any = None         # the open SweepCallback (for abort)
    lost: str | None = None    # why the store process was replaced mid-sweep, if it was
    failed: str | None = None  # a batch of runs the store could not write: the jobs left stop at once
    jobs_complete: bool = False  # set from the jobs' returns: no job had an errored run
    exit_status: int = 0       # read by nanbench.cli.main after Hydra returns


session = Session()
