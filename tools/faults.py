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
minute, retries said, what was recorded counted): tools.faults_round_two. ``--fast`` runs only
the scenarios that train nothing (the part ``make test`` runs); ``--only TEXT`` those whose name
contains TEXT. It prints one Markdown table and, last, one JSON line; exit status 0 when the
whole suite has 0 lost, 0 duplicated, 0 orphans and 0 tracebacks, else 1. (For two sweeps at
once, "re-run exit" is the second sweep's exit status.)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from nanbench.config import ROOT
from tools.fault_procs import _mount_tmpfs, _umount
from tools.faults_round_two import ROUND_TWO, ROUND_TWO_FAST  # issue 32's scenarios
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
    # issue 32, round two (items 2, 4, 8): a name used as a path, a grid too large, a store URI
    # MLflow reads otherwise than nanbench (the rest: tests/test_spec.py, tests/sweep/test_grid.py,
    # tests/tracking/test_uri.py)
    ("sweep: sweep.name=../escape_rel", ["sweep.name=../escape_rel"], "sweep"),
    ("sweep: a grid of 2.4e9 runs (sweep.max_runs)", ["train.seed=range(0,10000)", "dataset.seed=range(0,10000)"],
     "sweep"),
    ("tracking.uri=sqlite:///.../q.db?mode=ro", ["tracking.uri='sqlite:///{tmp}/q.db?mode=ro'"], "run"),
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


def scenarios(fast: bool, launchers: list[str], points: list[str], targets: list[str]):
    for name, overrides, mode in BAD_VALUES:
        if "gpu" in name and any(Path("/dev").glob("nvidia[0-9]*")):
            continue  # a machine with a GPU accepts it
        yield name, lambda tmp, a=(name, overrides, mode): bad_value(*a, tmp)
    yield from round_two_b(fast)  # issue 32's items 7 and 9 (section below)
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


# --------------------------------------------------------------------------------------------
# Issue 32, round two: counts (item 7) and messages (item 9)

BUILDER_THAT_EXITS = "def build(input_shape, task):\n    import sys\n    sys.exit(3)\n"


def builder_that_exits(tmp: Path) -> Row:
    """model.builder is a function calling sys.exit(3): one line naming model.builder, exit 2
    (it exited 3 with no message), nothing written."""
    row = Row("bad value: a model.builder calling sys.exit(3)")
    (tmp / "exits_builder.py").write_text(BUILDER_THAT_EXITS)
    (tmp / "data.csv").write_text("a,b,y\n" + "".join(f"{i},{i % 3},{i + 0.5}\n" for i in range(8)))
    before = sorted(str(p) for p in tmp.rglob("*"))
    cmd = [sys.executable, "-m", "nanbench", "train.epochs=1", "dataset=csv", f"dataset.path={tmp}/data.csv",
           "dataset.target=y", "model=builder", "model.builder=exits_builder:build", f"tracking.uri=sqlite:///{tmp}/m.db"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp, env=_env(),
                            start_new_session=True)  # from tmp: the builder's module is found there
    _, err = finish(proc, row, timeout=300)
    lines = [line for line in err.strip().splitlines() if line.startswith("nanbench")]
    if len(lines) != 1 or not lines[0].startswith("nanbench: error: model.builder"):
        row.one_line = False
    elif "SystemExit" not in lines[0]:
        row.problems.append("the line does not say the builder called sys.exit")
    if row.rc != 2:
        row.problems.append(f"exit {row.rc}, not 2")
    after = sorted(str(p) for p in tmp.rglob("*") if "__pycache__" not in str(p))
    if after != [p for p in before if "__pycache__" not in p]:
        row.problems.append("wrote " + ", ".join(sorted(set(after) - set(before)))[:200])
    return row


def counts_scenario(tmp: Path) -> Row:
    """An axis given in the sweep file and on the command line is counted once (smoke with
    optimizer=sgd said "24 run(s)" and trained 12); after sweep.redo=true the same grid has
    nothing to do at once, and says its 12 configurations (it said the runs, 24)."""
    row = Row("counts: smoke with optimizer=sgd, then a redo", expected=12)
    db = tmp / "m.db"
    cmd = sweep_cmd(f"sqlite:///{db}", tmp, "optimizer=sgd")
    first = run(cmd, row)
    if "nanbench: sweep smoke: 12 run(s)" not in first.stdout:
        row.problems.append("the start line does not say 12 run(s)")
    redo = run([*cmd, "sweep.redo=true"], Row("redo"))
    again = run(cmd, Row("again"))
    row.rerun_rc = again.returncode
    judge_message(again.stderr, row)
    if "nothing to do: all 12 configurations" not in again.stdout:
        row.problems.append("after a redo, not 'nothing to do: all 12 configurations': "
                            + " ".join(again.stdout.split())[:120])
    if first.returncode or redo.returncode or again.returncode:
        row.problems.append(f"exits {first.returncode}, {redo.returncode}, {again.returncode}")
    count(db, row)
    if row.duplicates == 12:  # the redo's second run of each configuration: asked for
        row.duplicates, row.note = 0, "24 FINISHED: the redo's 12 asked for"
    return row


def round_two_b(fast: bool):
    yield "bad value: a model.builder calling sys.exit(3)", builder_that_exits
    if not fast:
        yield "counts: smoke with optimizer=sgd, then a redo", counts_scenario


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
