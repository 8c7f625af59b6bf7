"""One sweep of an experiment on a store at a time: a lock file beside the store (or in the cache
folder for other stores), held while the sweep runs, with `sweep.wait` to wait for it."""

from __future__ import annotations

import os
import time

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
