"""`make faults`, round two (issue 32): scenarios found by probing beyond the first suite.

- an artifact folder (``tracking.artifacts``) on a full disk: no run FINISHED without its
  steps.csv, and a re-run completes the grid;
- Ctrl-C, SIGTERM and SIGHUP, basic launcher and JOBS=2: one line, the runs recorded kept, the
  parent run KILLED, exit 128 + the signal, no process and nothing left in TMPDIR;
- a stale pid in the server's state.json: ``make server-stop`` / ``make server`` never signal it;
- an MLflow server (the project's own, on loopback) stopped mid-sweep: the sweep fails within a
  minute, its retries said as they happen, and counts what the server recorded.

tools.faults runs them with the rest: ROUND_TWO_FAST in ``--fast`` too, ROUND_TWO in the full run.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from nanbench.config import ROOT
from tools.fault_procs import (EPOCHS, EXPECTED, GRID, Row, _env, _mount_tmpfs, _umount, count, finish, finished_now,
                               judge_message, run, start, sweep_cmd, wait_until)


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
# train: the full run only
ROUND_TWO = [("full artifact disk", full_artifact_disk), ("stopped server", stopped_server)] + [
    (f"interrupt {signame}, {launcher}", lambda tmp, a=(signame, launcher): interrupt_scenario(*a, tmp))
    for launcher in ("basic", "jobs=2") for signame in SIGNALLED]


