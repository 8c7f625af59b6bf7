"""Beyond one machine: an MLflow server on PostgreSQL, a Ray cluster, and the check of both.

- :mod:`nanbench.cluster.server`: ``make server`` / ``make server-stop``, a PostgreSQL cluster in
  a folder of the project (``initdb``, its own port, loopback only) with ``mlflow server`` in
  front of it on 127.0.0.1; ``make sweep STORE=http://127.0.0.1:PORT`` records there.
- :mod:`nanbench.cluster.ray_cluster`: a Ray cluster of a head and worker nodes started (and
  stopped) by this project, on loopback addresses when it is checked on one machine.
- :mod:`nanbench.cluster.check`: ``make cluster-check``, both of the above and a sweep through
  Hydra's Ray launcher, with a worker node killed mid-sweep; one JSON line.

Everything here is started in a session of its own (``start_new_session``) and stopped by the
same module, session and all (Ray's workers are process groups of their own, within the node's
session), so nothing it starts outlives its ``stop``.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path


def stop_group(pid: int, grace: float = 10.0) -> bool:
    """End the session led by `pid`: SIGTERM to its leader's process group (``ray start --block``
    and ``mlflow server`` stop their children on it), then SIGKILL to every process of the
    session still there after `grace` seconds; the leader is reaped when it is this process's
    child. Returns whether anything was running."""
    if not group_alive(pid):
        _reap(pid)
        return False
    try:
        os.killpg(pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        pass
    deadline = time.time() + grace
    while time.time() < deadline and group_alive(pid):
        _reap(pid)
        time.sleep(0.1)
    kill_session(pid)
    _reap(pid)
    return True


def kill_session(sid: int) -> None:
    """SIGKILL every process of session `sid` at once, and wait (5 s at most) until none is left."""
    for pid in group_pids(sid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.time() + 5
    while time.time() < deadline and group_alive(sid):
        _reap(sid)
        time.sleep(0.05)


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def group_pids(sid: int) -> list[int]:
    """The live (not zombie) processes of session `sid`."""
    pids = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[3]) == sid and fields[0] != "Z":
            pids.append(int(entry.name))
    return pids


def group_alive(sid: int) -> bool:
    return bool(group_pids(sid))


def process_start(pid: int) -> str | None:
    """Which process `pid` is, for as long as it lives: this boot's id and the process's start
    time (clock ticks after boot, /proc/PID/stat field 22). A pid is reused once its process has
    ended, after a reboot at once, so a pid alone recorded in a file may name an unrelated process
    later; the pair does not. None when no process has that pid."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None
    return f"{boot} {stat[stat.rindex(')') + 2:].split()[19]}"


def process_cmdline(pid: int) -> str:
    """The command line of process `pid`, its arguments joined by spaces ('' when none)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""
