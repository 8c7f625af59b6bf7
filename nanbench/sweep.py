"""Sweeps: Hydra multiruns where one Hydra job carries many training runs.

Hydra's sweeper expands the grid of *structural* factors (``hydra.sweeper.params`` of a file in
``sweeps/``) into jobs, and Hydra's launcher runs them (basic: in-process; joblib: local workers;
submitit/ray: clusters). Inside a job, ``sweep.inner`` names the numeric factors (learning rate,
clip threshold, seed, ...) looped over in-process, so that every run of a job reuses one traced
graph of the fused engine and Hydra's per-job cost (config composition, ~0.1 s) is paid once per
structure, not once per run.

Bookkeeping, all in MLflow (one experiment per sweep name):
- :class:`SweepCallback` (a Hydra callback, so it works with every launcher) creates the
  experiment and a parent run before any job starts, marks runs left RUNNING by an interrupted
  earlier invocation as KILLED, and writes the parent's id and the set of configurations already
  FINISHED to the sweep directory; at the end it records counts by outcome and wall time on the
  parent, summarizes, and sets the exit status.
- :func:`run_job` trains a job's runs, skipping configurations already FINISHED (resume), and
  records each run as a child of the parent on a background thread while the next one trains.
"""

from __future__ import annotations

import itertools
import json
import os
import queue
import sys
import threading
import time
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from hydra_plugins.nanbench_sweeper.nanbench_sweeper import JOBS_FILE, worker_count  # from the sweeper
from omegaconf import DictConfig, OmegaConf

PARENT_FILE = "nanbench_parent.json"
DONE_FILE = "nanbench_done.txt"
ROLE = "nanbench.role"

# Set by SweepCallback.on_multirun_end in the launching process; read by nanbench.cli.main.
exit_status = 0


def experiment_name(cfg: DictConfig) -> str:
    return cfg.sweep.name or cfg.tracking.experiment


def tracking_spec(cfg: DictConfig):
    """The store a sweep records into, as the key of its process's Tracker (tracker_for)."""
    from nanbench.spec import TrackingSpec
    return TrackingSpec(**OmegaConf.to_container(cfg.tracking, resolve=True))


def inner_grid(cfg: DictConfig) -> list[dict[str, Any]]:
    """The combinations of ``sweep.inner`` as dicts of dotted key -> value ([{}] when empty)."""
    inner = OmegaConf.to_container(cfg.sweep.inner, resolve=True) if cfg.sweep.inner else {}
    keys = list(inner)
    values = [v if isinstance(v, list) else [v] for v in inner.values()]
    return [dict(zip(keys, combo)) for combo in itertools.product(*values)]


def expand(cfg: DictConfig) -> list[dict]:
    """A job's runs as plain config dicts: the job's config with each inner combination applied."""
    base = OmegaConf.to_container(cfg, resolve=True)
    base.pop("hydra", None)
    runs = []
    for combo in inner_grid(cfg):
        run = json.loads(json.dumps(base))
        for dotted, value in combo.items():
            node = run
            *parents, leaf = dotted.split(".")
            for key in parents:
                node = node[key]
            node[leaf] = value
        runs.append(run)
    return runs


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in d.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


# --------------------------------------------------------------------------------------------
# Parent run (launching process)


class SweepCallback(Callback):
    """Creates the sweep's parent run before jobs start and closes it after they end."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from nanbench.spec import ConfigError, from_config

        try:
            from_config(config)  # a bad value stops the sweep here, with its one line
            if _jobs_run_here(config) and _can_fork():
                # The store's side (importing MLflow, opening or creating the store, the parent
                # run) runs in a forked child on another core while this process imports
                # TensorFlow for the jobs it is about to run; each is several seconds.
                setup = _forked(start_sweep_store, config)
                from nanbench.run import configure_tensorflow
                configure_tensorflow()
                import nanbench.engines.fused  # noqa: F401 - Keras, imported while the child works
                start = setup()
            else:
                start = start_sweep_store(config)
        except ConfigError as exc:
            print(f"nanbench: error: {exc}", file=sys.stderr, flush=True)
            sys.exit(2)
        self._start = time.time()
        self._parent = start["parent_run_id"]
        self._tracking = tracking_spec(config)
        self._exp_id = start["experiment_id"]
        msg = f"nanbench: sweep {start['experiment']}: {start['runs_per_job']} run(s) per job"
        if start["done"]:
            msg += (f"; {start['done']} configurations already FINISHED are skipped "
                    "(sweep.redo=true re-runs them)")
        if start["killed"]:
            msg += f"; marked {start['killed']} interrupted run(s) KILLED"
        print(msg, flush=True)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        global exit_status
        if not hasattr(self, "_parent"):
            return
        _progress_close()
        from nanbench.tracking import tracker_for
        tracker = tracker_for(self._tracking)
        client = tracker.client
        counts = tracker.count_children(self._exp_id, self._parent)
        wall = time.time() - self._start
        metrics = {f"runs_{k}": v for k, v in counts.items()}
        metrics["runs_total"] = sum(counts.values())
        metrics["wall_s"] = wall
        for key, value in metrics.items():
            client.log_metric(self._parent, key, value)
        client.set_tag(self._parent, "counts", json.dumps(counts, sort_keys=True))
        name = experiment_name(config)
        summary_line = ", ".join(f"{v} {k}" for k, v in sorted(counts.items())) or "no new runs"
        print(f"nanbench: sweep {name} done in {wall:.1f} s: {summary_line}", flush=True)
        try:  # a finished sweep stays finished whatever the summary does
            if config.sweep.get("summarize", True):
                _summarize(config, name, self._parent)
        except Exception as exc:  # noqa: BLE001
            print(f"nanbench: warning: summary failed ({type(exc).__name__}: {exc}); "
                  f"re-run it with `make summary SWEEP={name}`", file=sys.stderr, flush=True)
        client.set_terminated(self._parent, status="FINISHED")
        errors = counts.get("error", 0)
        if errors:
            print(f"nanbench: {errors} run(s) errored (recorded as FAILED runs in MLflow)",
                  file=sys.stderr, flush=True)
            exit_status = 1


def start_sweep_store(config: DictConfig) -> dict:
    """The store's side of a sweep's start: the experiment, runs an interrupted earlier invocation
    left RUNNING marked KILLED, the configurations already FINISHED (written to the sweep
    directory for the jobs to skip) and a new parent run (its id written there for the jobs)."""
    from nanbench.tracking import tracker_for

    tracker = tracker_for(tracking_spec(config))
    name = experiment_name(config)
    exp_id = tracker.experiment_id(name)
    client = tracker.client
    killed = mark_interrupted(client, exp_id)
    done = set() if config.sweep.redo else finished_hashes(client, exp_id)
    runs_per_job = len(inner_grid(config))
    overrides = list(config.hydra.overrides.task)
    parent = client.create_run(exp_id, run_name=f"sweep {name}", tags={
        ROLE: "parent", "sweep": name, "mlflow.runName": f"sweep {name}",
        "sweep_file": str(config.hydra.job.config_name),
        "overrides": " ".join(overrides)[:5000] or "(none)",
        "launcher": str(config.hydra.launcher.get("_target_", "")).rsplit(".", 1)[-1],
    })
    sweep_dir = Path(config.hydra.sweep.dir)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    (sweep_dir / DONE_FILE).write_text("\n".join(sorted(done)))
    (sweep_dir / PARENT_FILE).write_text(json.dumps({
        "parent_run_id": parent.info.run_id, "experiment": name, "experiment_id": exp_id,
        "runs_per_job": runs_per_job, "start": time.time()}))
    return {"parent_run_id": parent.info.run_id, "experiment": name, "experiment_id": exp_id,
            "runs_per_job": runs_per_job, "done": len(done), "killed": killed}


def _jobs_run_here(config: DictConfig) -> bool:
    """Whether the launcher runs the jobs in this process (Hydra's basic launcher)."""
    return str(config.hydra.launcher.get("_target_", "")).endswith("BasicLauncher")


def _can_fork() -> bool:
    """Forking is safe here only before TensorFlow or MLflow are loaded (their threads and open
    connections must not be copied into a child), on a platform that forks."""
    return (hasattr(os, "fork") and threading.active_count() == 1
            and not {"tensorflow", "mlflow", "sqlalchemy"} & set(sys.modules))


def _forked(fn, *args):
    """Start fn(*args) in a forked child; returns a function that waits for the child and returns
    fn's result or raises its exception (each sent back pickled)."""
    import pickle

    sys.stdout.flush()
    sys.stderr.flush()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: run fn, send back what came of it, leave without the parent's cleanup
        try:
            os.close(read)
            try:
                payload = pickle.dumps((True, fn(*args)))
            except BaseException as exc:  # noqa: BLE001 - raised again in the parent
                try:
                    payload = pickle.dumps((False, exc))
                except Exception:  # noqa: BLE001 - an exception that does not pickle
                    payload = pickle.dumps((False, RuntimeError(f"{type(exc).__name__}: {exc}")))
            with os.fdopen(write, "wb") as pipe:
                pipe.write(payload)
        finally:
            os._exit(0)
    os.close(write)

    def wait():
        with os.fdopen(read, "rb") as pipe:
            data = pipe.read()
        _, status = os.waitpid(pid, 0)
        if not data:
            raise RuntimeError(f"the sweep's store set-up process ended without a result (wait status {status})")
        ok, value = pickle.loads(data)
        if not ok:
            raise value
        return value

    return wait


def _summarize(config: DictConfig, name: str, parent_run_id: str) -> None:
    """Write results/<sweep>/ and attach it to the parent run, when the summary module exists."""
    try:
        from nanbench import summary
    except ImportError:
        return
    out = Path(config.sweep.results_dir) / name
    # every configuration of the experiment (its latest run), so a resumed sweep is summarized whole
    summary.summarize(name, config.tracking.uri, out, parent_run_id=parent_run_id, scope="experiment")
    print(f"nanbench: summary written to {out}/summary.md", flush=True)


def mark_interrupted(client, exp_id: str) -> int:
    """Runs left RUNNING by an earlier, interrupted invocation become KILLED (never FINISHED)."""
    from mlflow.entities import ViewType
    n = 0
    for run in _all_runs(client, exp_id, "attributes.status = 'RUNNING'", ViewType.ACTIVE_ONLY):
        client.set_terminated(run.info.run_id, status="KILLED")
        n += 1
    return n


def finished_hashes(client, exp_id: str) -> set[str]:
    """Configuration hashes that already have a FINISHED training run in the experiment."""
    return {run.data.tags.get("config_hash") for run in _all_runs(
        client, exp_id, f"attributes.status = 'FINISHED' and tags.`{ROLE}` = 'child'")} - {None}


def _all_runs(client, exp_id: str, filter_string: str, view=None):
    from mlflow.entities import ViewType
    token = None
    while True:
        page = client.search_runs([exp_id], filter_string=filter_string, max_results=5000,
                                  page_token=token, run_view_type=view or ViewType.ACTIVE_ONLY)
        yield from page
        token = page.token
        if not token:
            return


# --------------------------------------------------------------------------------------------
# Progress (a live bar on a terminal, one plain line per job otherwise)

_bar = None


def _progress(total: int | None):
    global _bar
    if _bar is None and sys.stdout.isatty():
        from tqdm import tqdm
        _bar = tqdm(total=total, unit="run", dynamic_ncols=True, smoothing=0.05, file=sys.stdout)
        _bar.counts = {"nan": 0, "inf": 0, "error": 0}
    return _bar


def _progress_close() -> None:
    global _bar
    if _bar is not None:
        _bar.close()
        _bar = None


# --------------------------------------------------------------------------------------------
# Jobs (any process: in-process for the basic launcher, a worker for joblib)


class _Writer:
    """Records finished runs on a background thread, overlapping MLflow writes with training.

    The thread also opens the store (importing MLflow, a few seconds in a new process) while the
    first runs train. Whatever has queued up while the last batch was written goes in as the
    next batch, in one transaction (Tracker.log_many), so the store sees a few large writes
    instead of many small ones. A batch is written whole or not at all: a sweep killed meanwhile
    loses only runs that were never recorded, and resume trains them again."""

    MAX_BATCH = 256

    def __init__(self, tracking, experiment: str, parent_run_id: str | None, tags: dict):
        self.tracking, self.experiment, self.parent, self.tags = tracking, experiment, parent_run_id, tags
        self.queue: queue.Queue = queue.Queue(maxsize=self.MAX_BATCH)
        self.errors: list[str] = []
        self._tracker = None
        self._opened = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    @property
    def tracker(self):
        """The store's Tracker, once the thread has opened it."""
        self._opened.wait()
        if self._tracker is None:
            raise RuntimeError(f"the tracking store could not be opened: {self.errors[0]}")
        return self._tracker

    def _loop(self) -> None:
        from nanbench.tracking import tracker_for
        try:
            self._tracker = tracker_for(self.tracking)
        except Exception as exc:  # noqa: BLE001 - surfaced by close()
            self.errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            self._opened.set()
        done = False
        while not done:
            batch = [self.queue.get()]
            while len(batch) < self.MAX_BATCH:
                try:
                    batch.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            if batch[-1] is None:
                batch.pop()
                done = True
            if not batch or self._tracker is None:
                continue
            try:
                _retry(lambda: self._tracker.log_many(batch, experiment=self.experiment,
                                                      parent_run_id=self.parent, tags=self.tags))
            except Exception as exc:  # noqa: BLE001 - surfaced by close()
                self.errors.append(f"{type(exc).__name__}: {exc}")

    def put(self, result, start: float) -> None:
        self.queue.put((result, start))

    def close(self) -> None:
        self.queue.put(None)
        self.thread.join()
        if self.errors:
            raise RuntimeError(f"{len(self.errors)} batch(es) of runs could not be recorded: {self.errors[0]}")


def _retry(fn, attempts: int = 8):
    """SQLite allows one writer at a time: retry 'database is locked' with backoff."""
    for i in range(attempts):
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001
            if "locked" not in str(exc) or i == attempts - 1:
                raise
            time.sleep(0.05 * 2 ** i)


def run_job(cfg: DictConfig) -> dict[str, int]:
    """Train every run of one Hydra job; return counts by outcome (skipped runs counted apart)."""
    from hydra.core.hydra_config import HydraConfig
    from nanbench.run import configure_tensorflow, execute, resolve_device
    from nanbench.spec import ConfigError, from_config

    hydra_cfg = HydraConfig.get()
    configure_tensorflow(threads=_threads_per_worker(hydra_cfg.launcher.get("n_jobs")))
    sweep_dir = Path(hydra_cfg.sweep.dir)
    meta = _read_json(sweep_dir / PARENT_FILE)
    jobs = _read_json(sweep_dir / JOBS_FILE).get("jobs")  # written by hydra/sweeper=nanbench
    done_file = sweep_dir / DONE_FILE
    done = set(done_file.read_text().split()) if done_file.exists() else set()
    name = meta.get("experiment") or experiment_name(cfg)
    runs = expand(cfg)
    writer = _Writer(tracking_spec(cfg), name,
                     meta.get("parent_run_id"), {"sweep": name, ROLE: "child", "hydra_job": str(hydra_cfg.job.num)})
    counts: dict[str, int] = {}
    bar = _progress(jobs * len(runs) if jobs else None)
    t0 = time.perf_counter()
    trained = 0
    for run in runs:
        try:
            spec = from_config(run)
        except ConfigError as exc:
            # An invalid combination is a FAILED run with its message; the sweep goes on.
            _record_invalid(writer.tracker, name, meta.get("parent_run_id"), run, f"ConfigError: {exc}",
                            writer.tags)
            counts["error"] = counts.get("error", 0) + 1
            _advance(bar, "error")
            continue
        if spec.config_hash() in done:
            counts["skipped"] = counts.get("skipped", 0) + 1
            _advance(bar, None)
            continue
        start = time.time()
        result = execute(spec, resolve_device(spec.train.device))
        writer.put(result, start)
        trained += 1
        counts[result.outcome] = counts.get(result.outcome, 0) + 1
        _advance(bar, result.outcome)
    writer.close()
    elapsed = time.perf_counter() - t0
    if bar is None:
        overrides = " ".join(hydra_cfg.overrides.task) or "(defaults)"
        total_jobs = jobs or "?"
        line = ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
        print(f"[job {hydra_cfg.job.num + 1}/{total_jobs}] {overrides}: {line} "
              f"({trained / elapsed if elapsed > 0 else 0:.1f} runs/s)", flush=True)
    return counts


def _threads_per_worker(n_jobs) -> int | None:
    """Cores per worker when a launcher runs n_jobs workers on this machine (joblib); else None."""
    workers = worker_count(n_jobs)
    if workers == 1:
        return None
    cores = os.cpu_count() or 1
    return max(1, cores // min(workers, cores))


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def _advance(bar, outcome: str | None) -> None:
    if bar is None:
        return
    if outcome in bar.counts:
        bar.counts[outcome] += 1
    bar.set_postfix_str(f"nan {bar.counts['nan']} inf {bar.counts['inf']} error {bar.counts['error']}",
                        refresh=False)
    bar.update(1)


def _record_invalid(tracker, experiment: str, parent: str | None, run: dict, message: str, tags: dict) -> None:
    """Record a combination rejected by validation as a FAILED run carrying its message."""
    from mlflow.entities import Param, RunTag
    client = tracker.client
    exp_id = tracker.experiment_id(experiment)
    flat = {k: v for k, v in _flatten(run).items() if not k.startswith(("tracking.", "sweep."))}
    all_tags = {**tags, "outcome": "error", "error": message[:5000], "mlflow.runName": "invalid: " + message[:200]}
    if parent:
        all_tags["mlflow.parentRunId"] = parent
    created = _retry(lambda: client.create_run(exp_id, run_name=all_tags["mlflow.runName"]))
    _retry(lambda: client.log_batch(created.info.run_id, params=[Param(k, str(v)[:6000]) for k, v in list(flat.items())[:100]],
                                    tags=[RunTag(k, str(v)) for k, v in all_tags.items()]))
    _retry(lambda: client.set_terminated(created.info.run_id, status="FAILED"))
