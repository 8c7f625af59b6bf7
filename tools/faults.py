"""`make faults`: inject faults into real sweeps and check the store after each.

Every scenario runs the real CLI (``python -m nanbench -m ...``) in a session of its own, on a
small grid (4 jobs x 3 runs) and a temporary SQLite store, injects one fault, and then checks:

- the store: runs expected, FINISHED, duplicated (a configuration FINISHED twice), KILLED and
  RUNNING runs left, after a re-run of the same command where the fault allows one;
- the processes: any process of the sweep's session still alive 10 s after it ended (orphans);
- the messages: the exit status, and whether what the user read was one ``nanbench:`` line and
  no Python traceback.

Faults: kill -9 of the sweep process, of a worker, of the store process, early / in the middle /
late, for the basic launcher, JOBS=2 and JOBS=4; two identical and two different sweeps at
once; a store on a full disk, a read-only store, a corrupted store; every bad value of the list
below (single runs and sweeps). Round two (issue 32): an artifact folder on a full disk (no run
FINISHED without its steps.csv), Ctrl-C / SIGTERM / SIGHUP for the basic launcher and JOBS=2
(one line, parent KILLED, exit 128 + the signal, nothing left in TMPDIR), a stale pid in the
server's state.json (never signalled), an MLflow server stopped mid-sweep (failed within a
minute, retries said, what was recorded counted). ``--fast`` runs only the scenarios that train
nothing (the part ``make test`` runs); ``--only TEXT`` those whose name contains TEXT. It prints one Markdown table and, last, one JSON line; exit status 0 when
the whole suite has 0 lost, 0 duplicated, 0 orphans and 0 tracebacks, else 1. (For two sweeps
at once, "re-run exit" is the second sweep's exit status.)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from nanbench.config import ROOT
from tools.fault_procs import (EPOCHS, EXPECTED, GRID, Row, _env, children_of, cmdline, corrupt, count, finish, finished_now, judge_message, run, start, sweep_cmd, wait_until)
POINTS = {"early": 0, "middle": 4, "late": 9}  # FINISHED runs in the store before the kill

# (name, overrides, single run or sweep): every value nanbench must refuse with exit 2
BAD_VALUES = [
    ("optimizer.lr=-1", ["optimizer.lr=-1"], "run"),
    ("train.epochs=0", ["train.epochs=0"], "run"),
    ("train.batch_size=0", ["train.batch_size=0"], "run"),
    ("clipping.threshold=-1", ["clipping=clipnorm", "clipping.threshold=-1"], "run"),
    ("dataset.nan_fraction=1.5", ["dataset=nan_inputs", "dataset.nan_fraction=1.5"], "run"),
    ("train.precision=fp8", ["train.precision=fp8"], "run"),
    ("train.engine=other", ["train.engine=other"], "run"),
    ("train.device=tpu", ["train.device=tpu"], "run"),
    ("train.device=gpu (no GPU)", ["train.device=gpu"], "run"),
    ("optimizer=adagrad", ["optimizer=adagrad"], "run"),
    ("tracking.uri=http://127.0.0.1:9", ["tracking.uri=http://127.0.0.1:9"], "run"),
    ("tracking.uri=file:///tmp/mlruns", ["tracking.uri=file:///tmp/mlruns"], "run"),
    ("store in /proc", ["tracking.uri=sqlite:////proc/nonexistent/m.db"], "run"),
    ("store in a missing folder", ["tracking.uri=sqlite:////nonexistent_dir_nanbench/x.db"], "run"),
    ("store is a folder", ["tracking.uri=sqlite:///{tmp}/folder.db"], "run"),
    ("store is not SQLite", ["tracking.uri=sqlite:///{tmp}/garbage.db"], "run"),
    ("store is corrupted", ["tracking.uri=sqlite:///{tmp}/corrupted.db"], "run"),
    ("sweep: optimizer.lr=-1,0.1 (also inner)", ["optimizer.lr=-1,0.1"], "sweep"),
    ("sweep: nested sweep.inner", ["+sweep.inner.optimizer.lr=[0.1,1]"], "sweep"),
    ("sweep: empty sweep.inner list", ["sweep.inner={optimizer.lr:[]}"], "sweep"),
    ("sweep: dataset=foo,clean", ["dataset=foo,clean"], "sweep"),
    ("sweep: train.device=gpu (no GPU)", ["train.device=gpu"], "sweep"),
    ("sweep: store is corrupted", ["tracking.uri=sqlite:///{tmp}/corrupted.db"], "sweep"),
    ("sweep: store is a folder", ["tracking.uri=sqlite:///{tmp}/folder.db"], "sweep"),
]


# --------------------------------------------------------------------------------------------
# Processes


# --------------------------------------------------------------------------------------------
# The store


# --------------------------------------------------------------------------------------------
# Scenarios


def kill_scenario(launcher: str, target: str, point: str, tmp: Path) -> Row:
    """kill -9 of `target` (sweep, worker, store) at `point`; then re-run and count."""
    row = Row(f"kill {target} {point}, {launcher}", expected=EXPECTED)
    db = tmp / "m.db"
    extra = [] if launcher == "basic" else ["hydra/launcher=joblib", f"hydra.launcher.n_jobs={launcher.split('=')[1]}"]
    cmd = sweep_cmd(f"sqlite:///{db}", tmp, *GRID, EPOCHS, *extra)
    proc = start(cmd)
    reached = wait_until(lambda: (tmp / "hydra" / "nanbench_parent.json").exists()
                         and finished_now(db) >= POINTS[point], proc=proc)
    if not reached:
        row.note = "ended before the kill point"
    else:
        if target == "worker":  # early: the workers may still be starting
            wait_until(lambda: any("popen_loky" in cmdline(p) for p in children_of(proc.pid)), 120, proc)
        kids = children_of(proc.pid)
        if target == "sweep":
            victim = proc.pid
        elif target == "worker":
            workers = [p for p in kids if "popen_loky" in cmdline(p)]
            victim = workers[0] if workers else None
        else:  # the store process: the basic launcher's forked child
            stores = [p for p in kids if "popen_loky" not in cmdline(p) and "resource_tracker" not in cmdline(p)]
            victim = stores[0] if stores else None
        if victim is None:
            row.note = f"no {target} process found"
        else:
            os.kill(victim, signal.SIGKILL)
    finish(proc, row)
    if row.rc == 0:  # a lost process the sweep recovered from (e.g. a worker still warming up)
        first = Row("first")
        count(db, first)
        if first.finished - first.duplicates < EXPECTED:
            row.problems.append("exit 0 with runs missing")
    rerun = run(cmd, Row("rerun"))
    row.rerun_rc = rerun.returncode
    judge_message(rerun.stderr, row)
    count(db, row)
    if row.rerun_rc != 0:
        row.problems.append(f"re-run exit {row.rerun_rc}")
    return row


def two_sweeps(same: bool, tmp: Path, wait: bool = False) -> Row:
    row = Row(("two identical sweeps at once" + (", the second with sweep.wait=true" if wait else ""))
              if same else "two different sweeps at once", expected=EXPECTED if same else 2 * EXPECTED)
    db = tmp / "m.db"
    names = ("smoke", "smoke") if same else ("smoke", "other")
    first = start(sweep_cmd(f"sqlite:///{db}", tmp / "1", *GRID, EPOCHS, f"sweep.name={names[0]}"))
    wait_until(lambda: (tmp / "1" / "hydra" / "nanbench_parent.json").exists(), proc=first)
    second = start(sweep_cmd(f"sqlite:///{db}", tmp / "2", *GRID, EPOCHS, f"sweep.name={names[1]}",
                             *(["sweep.wait=true"] if wait else [])))
    sub = Row("second")
    finish(second, sub)
    finish(first, row)
    row.orphans += sub.orphans
    row.traceback = row.traceback or sub.traceback
    row.one_line = row.one_line and sub.one_line
    row.rerun_rc = sub.rc  # the second sweep's exit status
    if same:
        if sub.rc != (0 if wait else 2):
            row.problems.append(f"second sweep exit {sub.rc}, not {0 if wait else 2}")
        count(db, row)
    else:
        if sub.rc != 0:
            row.problems.append(f"second sweep exit {sub.rc}")
        count(db, row, "smoke")
        other = Row("other")
        count(db, other, "other")
        row.finished += other.finished
        row.duplicates += other.duplicates
        row.killed += other.killed
        row.running += other.running
    if row.rc != 0:
        row.problems.append(f"first sweep exit {row.rc}")
    return row


def _mount_tmpfs(folder: Path, size: str) -> bool:
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                          capture_output=True)
    return done.returncode == 0


def _umount(folder: Path) -> None:
    subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def full_disk(tmp: Path) -> Row:
    """The store's folder is a 3 MB tmpfs: it fills up mid-sweep. The sweep must stop with one
    line; once the folder has room again, a re-run completes the grid exactly once."""
    row = Row("full disk for the store", expected=EXPECTED)
    folder = tmp / "small"
    if not _mount_tmpfs(folder, "2600k"):
        row.note = "skipped: cannot mount a tmpfs here (needs root)"
        return row
    try:
        db = folder / "m.db"
        cmd = sweep_cmd(f"sqlite:///{db}", tmp, *GRID, EPOCHS)
        first = run(cmd, row)
        if first.returncode == 0:
            row.note = "the disk did not fill up"
        subprocess.run(["mount", "-o", "remount,size=64m", str(folder)], capture_output=True)
        rerun = run(cmd, Row("rerun"))
        row.rerun_rc = rerun.returncode
        judge_message(rerun.stderr, row)
        count(db, row)
        if rerun.returncode != 0:
            row.problems.append(f"re-run exit {rerun.returncode}")
    finally:
        _umount(folder)
    return row


def read_only_store(tmp: Path) -> Row:
    row = Row("read-only store")
    folder = tmp / "ro"
    if not _mount_tmpfs(folder, "16m"):
        row.note = "skipped: cannot mount a tmpfs here (needs root)"
        return row
    try:
        db = folder / "m.db"
        seeded = subprocess.run([sys.executable, "-c", "import sys; from pathlib import Path; "
                                 "from nanbench.tracking import seed_sqlite_store; "
                                 "sys.exit(0 if seed_sqlite_store(Path(sys.argv[1])) else 1)", str(db)],
                                env=_env(), capture_output=True, cwd=ROOT)
        if seeded.returncode != 0:
            db.write_bytes(b"")
        subprocess.run(["mount", "-o", "remount,ro", str(folder)], capture_output=True)
        before = db.stat().st_mtime_ns
        result = run(sweep_cmd(f"sqlite:///{db}", tmp, *GRID, EPOCHS), row)
        if result.returncode != 2:
            row.problems.append(f"exit {result.returncode}, not 2")
        if db.stat().st_mtime_ns != before:
            row.problems.append("the store changed")
    finally:
        _umount(folder)
    return row


def bad_value(name: str, overrides: list[str], mode: str, tmp: Path) -> Row:
    row = Row(f"bad value: {name}" if mode == "run" else f"bad {name}")
    (tmp / "folder.db").mkdir()
    (tmp / "garbage.db").write_bytes(b"not an SQLite database " * 50)
    corrupt(tmp / "corrupted.db")
    before = sorted(str(p) for p in tmp.rglob("*"))
    overrides = [o.replace("{tmp}", str(tmp)) for o in overrides]
    if not any(o.startswith("tracking.uri=") for o in overrides):
        overrides.append(f"tracking.uri=sqlite:///{tmp}/m.db")
    if mode == "run":
        cmd = [sys.executable, "-m", "nanbench", "train.epochs=1", *overrides]
    else:
        uri = next(o for o in overrides if o.startswith("tracking.uri=")).split("=", 1)[1]
        cmd = sweep_cmd(uri, tmp / "sweep", *[o for o in overrides if not o.startswith("tracking.uri=")])
    result = run(cmd, row, timeout=300)
    if name.startswith("optimizer=adagrad"):  # Hydra's own error: the options there are
        if result.returncode == 0 or "sgd" not in result.stderr:
            row.problems.append("no list of the allowed options")
    else:
        lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
        if len(lines) != 1 or not lines[0].startswith("nanbench: error:"):
            row.one_line = False
        if result.returncode != 2:
            row.problems.append(f"exit {result.returncode}, not 2")
    after = sorted(str(p) for p in tmp.rglob("*"))
    if after != before:
        row.problems.append("wrote " + ", ".join(sorted(set(after) - set(before)))[:200])
    return row


# --------------------------------------------------------------------------------------------
# Round two (issue 32): artifacts before FINISHED, interrupts, a stale server pid, a stopped server


def stale_server_state(tmp: Path) -> Row:
    """results/server/state.json names a pid that is now an unrelated process (after a reboot, or
    once the server ended): ``make server-stop`` and ``make server`` must not signal it; they say
    the state is stale and clear it."""
    row = Row("stale server pid: server-stop, server")
    folder = tmp / "server"
    folder.mkdir()
    bystander = subprocess.Popen(["sleep", "600"], start_new_session=True)  # leads its own session
    try:
        import socket
        with socket.socket() as busy:  # `start` then stops at its port check, after the stale state
            busy.bind(("127.0.0.1", 0))
            busy.listen(1)
            port = busy.getsockname()[1]
            for action, wanted in (("stop", 0), ("start", 2)):
                (folder / "state.json").write_text(json.dumps(
                    {"folder": str(folder), "port": port, "pg_port": port, "workers": 1, "pid": bystander.pid}))
                done = run([sys.executable, "-m", "nanbench.cluster.server", action, "--folder", str(folder),
                            "--port", str(port), "--pg-port", str(port)], Row(action), timeout=120)
                judge_message(done.stderr, row)
                if bystander.poll() is not None:
                    row.problems.append(f"`{action}` ended the unrelated process (pid {bystander.pid})")
                    break
                if (folder / "state.json").exists():
                    row.problems.append(f"`{action}` left the stale state")
                if "stale" not in done.stderr:
                    row.problems.append(f"`{action}` did not say the state is stale")
                if done.returncode != wanted:
                    row.problems.append(f"`{action}` exit {done.returncode}, not {wanted}")
                row.rc = done.returncode
    finally:
        if bystander.poll() is None:
            bystander.kill()
        bystander.wait()
    return row


def finished_without_steps(db: Path, experiment: str = "smoke") -> int:
    """FINISHED training runs whose local steps.csv is missing (read with sqlite3)."""
    import sqlite3
    import urllib.request
    if not db.exists():
        return 0
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        uris = [u for (u,) in conn.execute(
            "select r.artifact_uri from runs r join experiments e on e.experiment_id = r.experiment_id "
            "join tags role on role.run_uuid = r.run_uuid and role.key = 'nanbench.role' and role.value = 'child' "
            "where e.name = ? and r.lifecycle_stage = 'active' and r.status = 'FINISHED'", (experiment,))]
    finally:
        conn.close()
    return sum(not (Path(urllib.request.url2pathname(u[len("file://"):])) / "steps.csv").is_file()
               for u in uris if u.startswith("file://"))


def full_artifact_disk(tmp: Path) -> Row:
    """The artifact folder (tracking.artifacts) is a 400 KB tmpfs: it fills up mid-sweep (a
    steps.csv is ~80 KB here). No run may end FINISHED without its steps.csv; once the folder has
    room again, a re-run trains what is missing and the grid is complete, each run with its file."""
    row = Row("full disk for the artifacts", expected=EXPECTED)
    folder = tmp / "artifacts"
    if not _mount_tmpfs(folder, "400k"):
        row.note = "skipped: cannot mount a tmpfs here (needs root)"
        return row
    try:
        db = tmp / "m.db"
        cmd = sweep_cmd(f"sqlite:///{db}", tmp, *GRID, EPOCHS, f"tracking.artifacts={folder}")
        first = run(cmd, row)
        if first.returncode == 0:
            row.note = "the disk did not fill up"
        elif first.returncode != 1:
            row.problems.append(f"exit {first.returncode}, not 1")
        if (n := finished_without_steps(db)):
            row.problems.append(f"{n} FINISHED without steps.csv after the full disk")
        subprocess.run(["mount", "-o", "remount,size=64m", str(folder)], capture_output=True)
        rerun = run(cmd, Row("rerun"))
        row.rerun_rc = rerun.returncode
        judge_message(rerun.stderr, row)
        count(db, row)
        if (n := finished_without_steps(db)):
            row.problems.append(f"{n} FINISHED without steps.csv after the re-run")
        if rerun.returncode != 0:
            row.problems.append(f"re-run exit {rerun.returncode}")
    finally:
        _umount(folder)
    return row


def parent_statuses(db: Path, experiment: str = "smoke") -> list[str]:
    import sqlite3
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return [status for (status,) in conn.execute(
            "select r.status from runs r join experiments e on e.experiment_id = r.experiment_id "
            "join tags role on role.run_uuid = r.run_uuid and role.key = 'nanbench.role' and role.value = 'parent' "
            "where e.name = ? order by r.start_time", (experiment,))]
    finally:
        conn.close()


# how each signal reaches a sweep: Ctrl-C and a closed terminal signal the whole foreground
# process group; `kill PID` the one process
SIGNALLED = {"SIGINT": ("group", 130), "SIGTERM": ("process", 143), "SIGHUP": ("group", 129)}


def interrupt_scenario(signame: str, launcher: str, tmp: Path) -> Row:
    """A sweep stopped by its user once 2 runs are FINISHED: one nanbench line saying so, exit
    128 + the signal's number, the runs recorded kept (expected: those FINISHED when the signal
    was sent), the parent run KILLED (never left RUNNING), no process and no served-store folder
    left in TMPDIR. After Ctrl-C, a re-run completes the grid (expected: all of it); the kill
    scenarios check resume already, so the other signals save the suite that minute."""
    rerun_too = signame == "SIGINT"
    row = Row(f"{signame} to the sweep's {SIGNALLED[signame][0]}, {launcher}", expected=EXPECTED)
    db = tmp / "m.db"
    tmpdir = tmp / "tmpdir"
    tmpdir.mkdir()
    extra = [] if launcher == "basic" else ["hydra/launcher=joblib", f"hydra.launcher.n_jobs={launcher.split('=')[1]}"]
    # 1,000 epochs: the second half of the grid trains for seconds after the first is recorded
    cmd = sweep_cmd(f"sqlite:///{db}", tmp, *GRID, "train.epochs=1000", *extra)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            env={**_env(), "TMPDIR": str(tmpdir)}, start_new_session=True)
    if (not wait_until(lambda: (tmp / "hydra" / "nanbench_parent.json").exists() and finished_now(db) >= 2, proc=proc)
            or finished_now(db) >= EXPECTED):
        row.note = "ended before the signal"
        row.problems.append("not interrupted")
    else:
        before = finished_now(db)
        if not rerun_too:
            row.expected = before
        signum = getattr(signal, signame)
        if SIGNALLED[signame][0] == "group":
            os.killpg(proc.pid, signum)
        else:
            os.kill(proc.pid, signum)
    _, err = finish(proc, row, timeout=180)
    if not row.note:
        lines = [line for line in err.splitlines() if line.startswith("nanbench:")]
        said = [line for line in lines if "interrupted" in line]
        if len(said) != 1 or "re-run" not in said[0] or "recorded" not in said[0]:
            row.one_line = False
            row.problems.append("no one line saying it was interrupted, what was recorded and how to resume")
        if row.rc != SIGNALLED[signame][1]:
            row.problems.append(f"exit {row.rc}, not {SIGNALLED[signame][1]}")
        if finished_now(db) < before:
            row.problems.append("FINISHED runs lost")
        parents = parent_statuses(db)
        if parents != ["KILLED"]:
            row.problems.append(f"parent run {', '.join(parents) or 'missing'}, not KILLED")
        left = [p.name for p in tmpdir.iterdir()]
        if left:
            row.problems.append("left in TMPDIR: " + ", ".join(left))
    if not rerun_too:
        count(db, row)
        return row
    rerun = run(cmd, Row("rerun"))
    row.rerun_rc = rerun.returncode
    judge_message(rerun.stderr, row)
    count(db, row)
    if rerun.returncode != 0:
        row.problems.append(f"re-run exit {rerun.returncode}")
    return row


def server_runs(url: str, experiment: str = "smoke") -> list[tuple[str, str]]:
    """(status, config_hash) of an MLflow server's active training runs, through its REST API."""
    import urllib.parse
    import urllib.request

    def ask(path: str, body: dict | None = None) -> dict:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url + path, data=data, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as reply:
            return json.loads(reply.read() or b"{}")

    try:
        exp = ask("/api/2.0/mlflow/experiments/get-by-name?" + urllib.parse.urlencode({"experiment_name": experiment}))
    except OSError:
        return []
    found, token = [], None
    while True:
        page = ask("/api/2.0/mlflow/runs/search", {
            "experiment_ids": [exp["experiment"]["experiment_id"]], "max_results": 1000,
            "filter": "tags.`nanbench.role` = 'child'", **({"page_token": token} if token else {})})
        for r in page.get("runs", []):
            tags = {t["key"]: t["value"] for t in r.get("data", {}).get("tags", [])}
            found.append((r["info"]["status"], tags.get("config_hash", "")))
        token = page.get("next_page_token")
        if not token:
            return found


def count_server(url: str, row: Row) -> None:
    runs = server_runs(url)
    hashes = [h for status, h in runs if status == "FINISHED"]
    row.finished, row.duplicates = len(hashes), len(hashes) - len(set(hashes))
    row.killed = sum(status == "KILLED" for status, _ in runs)
    row.running = sum(status == "RUNNING" for status, _ in runs)


def stopped_server(tmp: Path) -> Row:
    """`make server-stop` mid-sweep with STORE=http://... (the project's own PostgreSQL + mlflow
    server, on loopback): the sweep fails within a minute, its retries said on stderr as they
    happen, in one line; its last stdout line counts the runs the server did record (not "no new
    runs"). The server started again, a re-run completes the grid, each run once."""
    from nanbench.cluster import server
    from nanbench.cluster.check import free_port

    row = Row("MLflow server stopped mid-sweep", expected=EXPECTED)
    os.chmod(tmp, 0o755)  # as root, PostgreSQL runs as postgres, which must reach its folder
    folder = tmp / "server"
    ports = dict(port=free_port(), pg_port=free_port())
    try:
        try:
            srv = server.start(folder, workers=1, quiet=True, **ports)
        except server.ServerError as exc:
            row.note = f"skipped: no server here ({exc})"
            return row
        cmd = sweep_cmd(srv.url, tmp, *GRID, "train.epochs=1000")
        proc = start(cmd)
        if not wait_until(lambda: sum(s == "FINISHED" for s, _ in server_runs(srv.url)) >= 2, proc=proc):
            row.note = "ended before the server was stopped"
            row.problems.append("not stopped mid-sweep")
        server.stop(folder, quiet=True)
        stopped = time.time()
        out, err = finish(proc, row, timeout=600)
        took = time.time() - stopped
        row.note = f"ended {took:.0f} s after the server stopped"
        if took > 60:
            row.problems.append(f"failed {took:.0f} s after the server stopped, not within a minute")
        if row.rc != 1:
            row.problems.append(f"exit {row.rc}, not 1")
        if "try 2 of" not in err:
            row.problems.append("no retry said on stderr")
        if not any(line.startswith("nanbench: error") for line in err.splitlines()):
            row.one_line = False
        last = [line for line in out.splitlines() if line.startswith(f"nanbench: sweep smoke stopped")]
        srv = server.start(folder, workers=1, quiet=True, **ports)
        recorded = sum(s == "FINISHED" for s, _ in server_runs(srv.url))
        tail = last[-1].rsplit(": ", 1)[-1] if last else "nothing"
        said = sum(int(n) for n in re.findall(r"(\d+) [a-z]+", tail))
        if said != recorded:
            row.problems.append(f"stdout says {tail!r}; the server holds {recorded} FINISHED")
        rerun = run(cmd, Row("rerun"))
        row.rerun_rc = rerun.returncode
        judge_message(rerun.stderr, row)
        count_server(srv.url, row)
        if rerun.returncode != 0:
            row.problems.append(f"re-run exit {rerun.returncode}")
    finally:
        server.stop(folder, quiet=True)
    return row


ROUND_TWO_FAST = [("stale server pid", stale_server_state)]  # train nothing: part of --fast
ROUND_TWO = [("full artifact disk", full_artifact_disk), ("stopped server", stopped_server)] + [  # train: the full run only
    (f"interrupt {signame}, {launcher}", lambda tmp, a=(signame, launcher): interrupt_scenario(*a, tmp))
    for launcher in ("basic", "jobs=2") for signame in SIGNALLED]


def scenarios(fast: bool, launchers: list[str], points: list[str], targets: list[str]):
    for name, overrides, mode in BAD_VALUES:
        if "gpu" in name and any(Path("/dev").glob("nvidia[0-9]*")):
            continue  # a machine with a GPU accepts it
        yield name, lambda tmp, a=(name, overrides, mode): bad_value(*a, tmp)
    yield "read-only store", read_only_store
    yield from ROUND_TWO_FAST
    if fast:
        return
    yield from ROUND_TWO
    yield "two identical sweeps", lambda tmp: two_sweeps(True, tmp)
    yield "two identical sweeps, wait", lambda tmp: two_sweeps(True, tmp, wait=True)
    yield "two different sweeps", lambda tmp: two_sweeps(False, tmp)
    yield "full disk", full_disk
    for launcher in launchers:
        for target in targets:
            if target == "worker" and launcher == "basic":
                continue  # no workers with the basic launcher
            if target == "store" and launcher != "basic":
                continue  # with joblib, the store is served by the sweep's process
            for point in points:
                yield (f"kill {target} {point}, {launcher}",
                       lambda tmp, a=(launcher, target, point): kill_scenario(*a, tmp))


def judge(row: Row) -> Row:
    problems = list(row.problems)
    if row.lost:
        problems.append(f"{row.lost} lost")
    if row.duplicates:
        problems.append(f"{row.duplicates} duplicated")
    if row.running:
        problems.append(f"{row.running} RUNNING left")
    if row.orphans:
        problems.append(f"{row.orphans} orphans")
    if row.traceback:
        problems.append("traceback")
    if not row.one_line:
        problems.append("not one line")
    row.problems = problems
    row.ok = not problems
    return row


def table(rows: list[Row]) -> str:
    head = ("| scenario | expected | FINISHED | duplicates | KILLED left | orphans after 10 s | exit | "
            "re-run exit | one line | ok |\n|---|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    for r in rows:
        verdict = "yes" if r.ok else "NO: " + "; ".join(r.problems)
        if r.note:
            verdict += f" ({r.note})"
        lines.append(f"| {r.scenario} | {r.expected} | {r.finished} | {r.duplicates} | {r.killed} | {r.orphans} "
                     f"| {r.rc} | {'' if r.rerun_rc is None else r.rerun_rc} | "
                     f"{'yes' if r.one_line and not r.traceback else 'no'} | {verdict} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.faults", description=__doc__.split("\n")[0])
    parser.add_argument("--fast", action="store_true", help="only the scenarios that train nothing")
    parser.add_argument("--launchers", default="basic,jobs=2,jobs=4")
    parser.add_argument("--points", default="early,middle,late")
    parser.add_argument("--targets", default="sweep,worker,store")
    parser.add_argument("--only", default="", help="run only scenarios whose name contains this")
    parser.add_argument("--out", default=None, help="also write faults.md and faults.json here")
    args = parser.parse_args(argv)
    rows = []
    for name, make in scenarios(args.fast, args.launchers.split(","), args.points.split(","),
                                args.targets.split(",")):
        if args.only and args.only not in name:
            continue
        tmp = Path(tempfile.mkdtemp(prefix="nanbench-faults-"))
        try:
            row = judge(make(tmp))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        rows.append(row)
        print(f"  {'ok ' if row.ok else 'BAD'} {row.scenario}" + ("" if row.ok else f": {'; '.join(row.problems)}"),
              file=sys.stderr, flush=True)
    text = table(rows)
    totals = {"scenarios": len(rows), "failed": [r.scenario for r in rows if not r.ok],
              "lost": sum(r.lost for r in rows), "duplicated": sum(r.duplicates for r in rows),
              "orphans": sum(r.orphans for r in rows), "tracebacks": sum(r.traceback for r in rows),
              "not_one_line": sum(not r.one_line for r in rows)}
    print(text)
    print(json.dumps(totals))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "faults.md").write_text(text + "\n")
        (out / "faults.json").write_text(json.dumps({"totals": totals, "rows": [asdict(r) for r in rows]}, indent=1))
    return 0 if not totals["failed"] else 1


if __name__ == "__main__":
    sys.exit(main())
