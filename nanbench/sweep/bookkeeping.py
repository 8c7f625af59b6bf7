"""The store's side of a sweep, run where the store is (nanbench.tracking.store), each given the
Tracker: the parent run's start and end, runs an interrupted invocation left RUNNING, the
configurations already FINISHED (resume), a re-run with nothing to do, and invalid combinations
recorded as FAILED runs."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from omegaconf import DictConfig

from nanbench import vocab
from nanbench.sweep.grid import experiment_name, flatten, grid_size

PARENT_FILE = "nanbench_parent.json"


DONE_FILE = "nanbench_done.txt"


def completed(cfg: DictConfig, fingerprint: str) -> int | None:
    """The number of distinct FINISHED configurations, when an earlier sweep of this very grid left
    every one of them FINISHED and the experiment still holds exactly the FINISHED configurations
    it held then (none deleted, none added by another grid; a re-run of one, sweep.redo=true,
    adds none); else None (then the sweep runs, and
    skips what is FINISHED). Read from an SQLite store's tables directly, in milliseconds,
    before TensorFlow or MLflow are imported; other stores always take the long way."""
    import sqlite3

    from nanbench.tracking import sqlite_path
    path = sqlite_path(str(cfg.tracking.uri))
    if path is None or not path.is_file() or not path.stat().st_size:
        return None
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
        try:
            name = experiment_name(cfg)
            marks = conn.execute(
                "select n.value from runs r join experiments e on e.experiment_id = r.experiment_id "
                "join tags c on c.run_uuid = r.run_uuid and c.key = ? and c.value = ? "
                "join tags n on n.run_uuid = r.run_uuid and n.key = ? "
                "where e.name = ? and e.lifecycle_stage = 'active' and r.lifecycle_stage = 'active' "
                "and r.status = 'FINISHED'", (vocab.COMPLETE_TAG, fingerprint, vocab.FINISHED_TAG, name)).fetchall()
            if not marks:
                return None
            rows = conn.execute(
                "select r.artifact_uri, h.value from runs r "
                "join experiments e on e.experiment_id = r.experiment_id "
                "join tags t on t.run_uuid = r.run_uuid and t.key = ? and t.value = ? "
                "join tags h on h.run_uuid = r.run_uuid and h.key = ? "
                "where e.name = ? and r.lifecycle_stage = 'active' and r.status = 'FINISHED'",
                (vocab.ROLE, vocab.CHILD, vocab.CONFIG_HASH, name)).fetchall()
        finally:
            conn.close()
    except sqlite3.Error:
        return None
    # distinct configurations, not runs: after sweep.redo=true each has two FINISHED runs, and the
    # grid is still all FINISHED (a mark written before this counted runs: equal where no redo was)
    configurations = len({h for _, h in rows})
    if str(configurations) not in {m for (m,) in marks}:
        return None
    # every one with its steps.csv (one deleted since: the sweep runs, and trains it again)
    from nanbench.tracking.uri import steps_missing
    if any(steps_missing(u or "") for u, _ in rows):
        return None
    return configurations


def start_sweep_store(tracker, config: DictConfig, sweep_dir: str, server: dict | None = None) -> dict:
    """The store's side of a sweep's start: the experiment, runs an interrupted earlier invocation
    left RUNNING marked KILLED (and FINISHED runs missing their steps.csv), the configurations already FINISHED (written to the jobs' sweep
    directory, for them to skip) and a new parent run (its id written there for the jobs, with
    `server`: where the jobs send their runs, when the launching process serves its store)."""
    name = experiment_name(config)
    exp_id = tracker.experiment_id(name)
    killed = tracker.mark_interrupted(exp_id)
    incomplete = tracker.mark_incomplete(exp_id)  # FINISHED without steps.csv: trained again
    done = set() if config.sweep.redo else tracker.finished_hashes(exp_id)
    runs = grid_size(config)
    overrides = list(config.hydra.overrides.task)
    parent = tracker.start_parent(name, f"sweep {name}", tags={
        "sweep": name, "sweep_file": str(config.hydra.job.config_name),
        "overrides": " ".join(overrides)[:5000] or "(none)",
        "launcher": str(config.hydra.launcher.get("_target_", "")).rsplit(".", 1)[-1],
    })
    sweep_dir = Path(sweep_dir)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    (sweep_dir / DONE_FILE).write_text("\n".join(sorted(done)))
    write_private(sweep_dir / PARENT_FILE, json.dumps({
        "parent_run_id": parent, "experiment": name, "experiment_id": exp_id,
        "runs": runs, "start": time.time(), "store": server,
        "launcher_pid": os.getpid() if server else None}))  # served: this is the launching process
    return {"parent_run_id": parent, "experiment": name, "experiment_id": exp_id,
            "runs": runs, "done": len(done), "killed": killed, "incomplete": incomplete}


def write_private(path: Path, text: str) -> None:
    """Write a file only this user can read (it may hold the served store's key), whole or not at all."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def end_sweep_store(tracker, exp_id: str, parent_run_id: str, wall: float) -> dict[str, int]:
    """The parent's counts by outcome and wall time, recorded on it; returns the counts."""
    counts = tracker.count_children(exp_id, parent_run_id)
    metrics = {f"runs_{k}": v for k, v in counts.items()}
    metrics["runs_total"] = sum(counts.values())
    metrics["wall_s"] = wall
    tracker.annotate(parent_run_id, metrics=metrics, tags={"counts": json.dumps(counts, sort_keys=True)})
    return counts


def finish_parent(tracker, parent_run_id: str, failure: str | None = None, complete: str | None = None,
                  exp_id: str | None = None, status: str | None = None) -> None:
    """The parent run's end (Tracker.finish_parent; `status`: KILLED for a sweep its user
    stopped). `complete`: the grid's fingerprint, when every run of every job is FINISHED;
    recorded with the experiment's FINISHED training runs at this moment (distinct
    configurations), for the next invocation's "nothing to do" (see completed)."""
    tags = {}
    if complete and exp_id is not None:
        tags = {vocab.COMPLETE_TAG: complete, vocab.FINISHED_TAG: str(len(tracker.finished_hashes(exp_id)))}
    tracker.finish_parent(parent_run_id, failure=failure, tags=tags, status=status)


def recorded_here(tracker, parent_run_id: str) -> dict[str, int]:
    """The runs of this parent that this store's process recorded, by outcome, without asking
    the store (what a sweep says it kept when the store no longer answers)."""
    return dict(tracker.recorded.get(parent_run_id, {}))


def finished_now(tracker, exp_id: str) -> set[str]:
    return tracker.finished_hashes(exp_id)


def record_invalid(tracker, experiment: str, parent: str | None, run: dict, message: str, tags: dict) -> None:
    """Record a combination rejected by validation as a FAILED run carrying its message."""
    params = {k: v for k, v in flatten(run).items() if not k.startswith(("tracking.", "sweep."))}
    tracker.log_invalid(experiment, parent, params, message, tags)
