"""The fault suite's means: sweeps started in sessions of their own, their processes found and
judged (orphans), their stores counted, files corrupted. tools.faults composes the scenarios."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from nanbench.cluster import group_pids as session_pids  # a session's live processes
from nanbench.config import ROOT


SWEEPS = ROOT / "sweeps"


GRID = ["dataset=doc000_clean,clean", "preprocess=none", "optimizer=sgd,adam"]  # 4 jobs x 3 runs


EXPECTED = 12


EPOCHS = "train.epochs=200"


TIMEOUT = 600


@dataclass
class Row:
    scenario: str
    expected: int = 0
    finished: int = 0
    duplicates: int = 0
    killed: int = 0
    running: int = 0
    orphans: int = 0
    rc: int | None = None
    rerun_rc: int | None = None
    one_line: bool = True
    traceback: bool = False
    ok: bool = True
    note: str = ""
    problems: list = field(default_factory=list)

    @property
    def lost(self) -> int:
        return max(0, self.expected - (self.finished - self.duplicates))


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    return env


def sweep_cmd(store: str, folder: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "nanbench", "-m", "--config-dir", str(SWEEPS), "--config-name", "smoke",
            f"tracking.uri={store}", f"sweep.results_dir={folder}", f"hydra.sweep.dir={folder}/hydra",
            "sweep.summarize=false", *extra]


def start(cmd: list[str]) -> subprocess.Popen:
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            env=_env(), start_new_session=True)


def orphans_after(sid: int, seconds: float = 10.0) -> int:
    """The session's processes alive `seconds` after its leader ended; they are then killed."""
    deadline = time.time() + seconds
    while time.time() < deadline and session_pids(sid):
        time.sleep(0.25)
    left = session_pids(sid)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return len(left)


def children_of(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def finish(proc: subprocess.Popen, row: Row, timeout: float = TIMEOUT) -> tuple[str, str]:
    """Wait for a faulted invocation; record its exit status, its message and its orphans."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        row.problems.append("hung")
    row.rc = proc.returncode
    row.orphans += orphans_after(proc.pid)
    judge_message(err, row)
    return out, err


def judge_message(err: str, row: Row) -> None:
    lines = [line for line in err.splitlines() if line.startswith("nanbench: error")]
    row.traceback = row.traceback or "Traceback" in err
    if len(lines) > 1:
        row.one_line = False


def run(cmd: list[str], row: Row, timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
    proc = start(cmd)
    out, err = finish(proc, row, timeout)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def count(store_path: Path, row: Row, experiment: str = "smoke") -> None:
    """FINISHED, duplicated, KILLED and RUNNING child runs of `experiment` (read with sqlite3:
    the suite must not depend on the code it checks)."""
    row.finished = row.duplicates = row.killed = row.running = 0
    if not store_path.exists():
        return
    conn = sqlite3.connect(f"file:{store_path}?mode=ro", uri=True, timeout=30)
    try:
        rows = conn.execute(
            "select r.status, h.value from runs r join experiments e on e.experiment_id = r.experiment_id "
            "join tags role on role.run_uuid = r.run_uuid and role.key = 'nanbench.role' and role.value = 'child' "
            "left join tags h on h.run_uuid = r.run_uuid and h.key = 'config_hash' "
            "where e.name = ? and r.lifecycle_stage = 'active'", (experiment,)).fetchall()
    except sqlite3.DatabaseError:
        rows = []
    finally:
        conn.close()
    hashes = [h for status, h in rows if status == "FINISHED"]
    row.finished += len(hashes)
    row.duplicates += len(hashes) - len(set(hashes))
    row.killed += sum(status == "KILLED" for status, _ in rows)
    row.running += sum(status == "RUNNING" for status, _ in rows)


def finished_now(store_path: Path) -> int:
    probe = Row("probe")
    try:
        count(store_path, probe)
    except sqlite3.Error:
        return 0
    return probe.finished


def corrupt(path: Path) -> None:
    """An SQLite file with one page whose header is overwritten (what a torn write leaves)."""
    conn = sqlite3.connect(path)
    conn.execute("create table t (k text primary key, v text)")
    conn.executemany("insert into t values (?, ?)", [(f"k{i}", "x" * 200) for i in range(2000)])
    conn.commit()
    conn.close()
    with open(path, "r+b") as f:
        f.seek(4096 * 20)
        f.write(b"\xff" * 16)


def _mount_tmpfs(folder: Path, size: str) -> bool:
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                          capture_output=True)
    return done.returncode == 0


def _umount(folder: Path) -> None:
    subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def wait_until(predicate, timeout: float = 300.0, proc: subprocess.Popen | None = None) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            if predicate():
                return True
        except Exception:  # noqa: BLE001 - the store or folder is not there yet
            pass
        time.sleep(0.2)
    return False
