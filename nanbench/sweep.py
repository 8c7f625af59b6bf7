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
  records each run as a child of the parent while the next one trains.

Before any of it, everything that can be checked is (the store, ``sweep.inner``, every value of
every grid axis composed once, the device), so a bad sweep is one line and exit 2 with nothing
written; one sweep of an experiment runs on a store at a time (nanbench.store.SweepLock). A
sweep that loses a worker or its store process finishes what it can, ends its parent FAILED with
the reason, and exits 1 (:func:`abort`); joblib's workers end with the sweep's process
(:func:`watch_launcher`). A re-run of a grid an earlier sweep left all FINISHED says "nothing to
do" at once (:func:`completed`).

Where the MLflow side runs is nanbench.store's business: with the basic launcher, a store
process forked at the sweep's start (MLflow is imported there while this process imports
TensorFlow, and runs are recorded there on the other core); elsewhere, a thread of the process.
With joblib, the workers are started at the sweep's start and import TensorFlow while this process
opens the store (:func:`start_workers`), so the first jobs start ready, and they send their runs
to this process's store over a local socket (nanbench.store.StoreServer), so that no worker
imports MLflow.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from hydra_plugins.nanbench_sweeper.nanbench_sweeper import JOBS_FILE, worker_count  # from the sweeper
from omegaconf import DictConfig, OmegaConf

from nanbench import fold
from nanbench.store import StoreLost
from nanbench.tracking import all_runs

PARENT_FILE = "nanbench_parent.json"
DONE_FILE = "nanbench_done.txt"
ROLE = "nanbench.role"

# Set by SweepCallback.on_multirun_end in the launching process; read by nanbench.cli.main.
exit_status = 0
# The launching process's store (nanbench.store), from the sweep's start to its end.
_store = None
# With joblib, the same store served to the workers (nanbench.store.StoreServer; not a field of
# the callback, which Hydra sends to every worker).
_server = None


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


def expand(cfg: DictConfig, folded: list[dict[str, Any]] | None = None) -> list[dict]:
    """A job's runs as plain config dicts: the job's config with each of its folded rows (the
    runtime values of the Hydra jobs it replaced, nanbench.fold) and each inner combination
    applied."""
    base = OmegaConf.to_container(cfg, resolve=True)
    base.pop("hydra", None)
    runs = []
    for combo in ({**row, **inner} for row in folded or [{}] for inner in inner_grid(cfg)):
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


def _one_line(exc: BaseException) -> str:
    """An exception's message on one line, without SQLAlchemy's statement and parameters."""
    text = str(exc).split("[SQL:", 1)[0].split("(Background on this error", 1)[0]
    return " ".join(text.split())[:500]


def check_inner(cfg: DictConfig) -> None:
    """``sweep.inner`` must be flat ({dotted.key: [values]}), name keys the config has, give at
    least one run, and share no key with the grid (the inner value would silently win)."""
    from nanbench.spec import ConfigError
    inner = OmegaConf.to_container(cfg.sweep.inner, resolve=True) if cfg.sweep.inner else {}
    if not isinstance(inner, dict):
        raise ConfigError("sweep.inner", "a mapping {dotted.key: [values]}", inner)
    for key, values in inner.items():
        if isinstance(values, dict):
            sub = next(iter(values), "KEY")
            raise ConfigError(f"sweep.inner.{key}", "a list of values under a dotted key (a nested "
                              f"mapping replaces the whole {key} group): write "
                              f"'sweep.inner={{{key}.{sub}:[...]}}'", values)
        if isinstance(values, list) and not values:
            raise ConfigError(f"sweep.inner.{key}", "a non-empty list of values", values)
    grid = {_override_key(o) for o in _grid_overrides(cfg)}
    both = sorted(grid & set(inner))
    if both:
        raise ConfigError(both[0], "set in one place: the grid (the command line or hydra.sweeper.params) "
                          "or sweep.inner", "set in both")


def _override_key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~").split("@", 1)[0]


def _grid_overrides(cfg: DictConfig) -> list[str]:
    """The sweep's grid as Hydra's sweeper gets it: the file's sweeper params, then the command line's."""
    params = cfg.hydra.sweeper.get("params") or {}
    return [f"{k}={v}" for k, v in params.items()] + list(cfg.hydra.overrides.task)


COMPLETE_TAG = "nanbench.complete"   # on a parent run: the fingerprint of a grid it left all FINISHED
FINISHED_TAG = "nanbench.finished"   # ... and the experiment's FINISHED training runs at that moment
_jobs_complete = False  # set by hydra/sweeper=nanbench: no job of this sweep had an errored run


def jobs_returned(returns) -> None:
    """The jobs' returns (Hydra's JobReturns, by batch): whether every run was FINISHED or skipped."""
    global _jobs_complete
    _jobs_complete = all("error" not in (r.return_value or {}) for batch in returns for r in batch)


def grid_fingerprint(cfg: DictConfig) -> str:
    """What decides a sweep's set of configurations: the config files (every YAML file of the
    config search path's folders), the sweep file's name, the grid and the command line (less
    where results go and how jobs are launched), and nanbench's validation code (spec.py)."""
    import hashlib
    digest = hashlib.sha256()
    for source in cfg.hydra.runtime.get("config_sources", []):
        folder = str(source.get("path") or "").removeprefix("file://")
        if source.get("schema") == "file" and folder and Path(folder).is_dir():
            for path in sorted(Path(folder).rglob("*.yaml")):
                digest.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes())
    digest.update((Path(__file__).parent / "spec.py").read_bytes())
    digest.update(str(cfg.hydra.job.config_name).encode())
    ignored = ("hydra.", "hydra/", "sweep.results_dir", "sweep.summarize", "sweep.wait", "tracking.uri")
    for override in sorted(o for o in _grid_overrides(cfg) if not _override_key(o).startswith(ignored)):
        digest.update(b"\0" + override.encode())
    return digest.hexdigest()[:32]


def completed(cfg: DictConfig, fingerprint: str) -> int | None:
    """The number of FINISHED configurations, when an earlier sweep of this very grid left every
    one of them FINISHED and the experiment still holds exactly the FINISHED training runs it
    held then (none deleted, none added by another grid); else None (then the sweep runs, and
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
                "and r.status = 'FINISHED'", (COMPLETE_TAG, fingerprint, FINISHED_TAG, name)).fetchall()
            if not marks:
                return None
            (now,) = conn.execute(
                "select count(*) from runs r join experiments e on e.experiment_id = r.experiment_id "
                "join tags t on t.run_uuid = r.run_uuid and t.key = ? and t.value = 'child' "
                "where e.name = ? and r.lifecycle_stage = 'active' and r.status = 'FINISHED'",
                (ROLE, name)).fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        return None
    return now if str(now) in {m for (m,) in marks} else None


def check_jobs(cfg: DictConfig) -> None:
    """Compose jobs of the grid before anything is recorded: as many as the longest grid axis has
    values, the i-th job taking each axis's i-th value (cycling), so that every value of every
    axis is composed once (an unknown option, a missing key or a bad device in any job stops
    the sweep here with one line, not with a RUNNING parent run)."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from nanbench.cli import check_device
    from nanbench.spec import ConfigError

    axes: dict[str, list[str]] = {}
    for o in OverridesParser.create().parse_overrides(_grid_overrides(cfg)):
        key = o.get_key_element()
        if not o.is_sweep_override():
            axes[key] = [f"{key}={o.get_value_element_as_str()}"]
        elif o.is_discrete_sweep():
            axes[key] = [f"{key}={v}" for v in o.sweep_string_iterator()]
        else:
            raise ConfigError(key, "a comma-separated list of values (hydra/sweeper=nanbench is Hydra's "
                              "basic sweeper)", o.input_line)
        if not axes[key]:
            raise ConfigError(key, "a grid axis with at least one value", o.input_line)
    swept = {k for k, v in axes.items() if len(v) > 1}
    loader = GlobalHydra.instance().config_loader()
    for i in range(max((len(v) for v in axes.values()), default=1)):
        job = [values[i % len(values)] for values in axes.values()]
        try:
            composed = loader.load_sweep_config(cfg, job)
        except Exception as exc:  # noqa: BLE001 - Hydra's own message: the option, and the ones there are
            shown = " ".join(o for o in job if o.split("=", 1)[0] in swept) or "(defaults)"
            reason = _one_line(exc).split(" Config search path")[0]
            raise ConfigError(f"the job {shown}", "one Hydra can compose", reason) from None
        check_device(composed.train.device)
        if composed.sweep.inner:
            check_inner_values(composed)


def check_inner_values(cfg: DictConfig) -> None:
    """A composed job's inner grid has at least one run, and names keys the job's config has (a
    key may belong to a group the grid chooses, e.g. dataset.nan_fraction of dataset=nan_inputs)."""
    from nanbench.spec import ConfigError
    if not inner_grid(cfg):
        raise ConfigError("sweep.inner", "lists of values giving at least one run", "no runs")
    for key in cfg.sweep.inner:
        if OmegaConf.select(cfg, key, default="__missing__") == "__missing__":
            raise ConfigError(f"sweep.inner.{key}", "a key of the config (e.g. optimizer.lr, train.seed)", key)


# --------------------------------------------------------------------------------------------
# Parent run (launching process)


class SweepCallback(Callback):
    """Creates the sweep's parent run before jobs start and closes it after they end."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        global _store, _server, _lost, _active, _jobs_complete
        _lost, _jobs_complete = None, False
        from nanbench.cli import check_device
        from nanbench.cluster.launcher import check_launcher
        from nanbench.spec import ConfigError, from_config
        from nanbench.store import LocalStore, ProcessStore, StoreServer, SweepBusy, SweepLock, can_fork
        from nanbench.tracking import check_uri

        try:
            from_config(config, multirun=True)  # a bad value stops the sweep here, with its one line
            # everything that can be checked before the store is touched: no parent run, no new store
            check_uri(config.tracking.uri)
            check_inner(config)
            check_device(config.train.device)
            check_launcher(config)  # Ray: an explicit, reachable head address
            check_jobs(config)
            self._lock = SweepLock(str(config.tracking.uri), experiment_name(config),
                                   wait=bool(config.sweep.get("wait", False)))
            self._fingerprint = grid_fingerprint(config)
            done = None if config.sweep.redo else completed(config, self._fingerprint)
            if done is not None:
                print(f"nanbench: sweep {experiment_name(config)}: nothing to do: all {done} configurations "
                      "of this grid are FINISHED (sweep.redo=true re-runs them)", flush=True)
                self._lock.release()
                sys.exit(0)
            # resolved here, once: the default folder is ${now:...}, and Hydra's cache of it is
            # this process's (a store process resolving it itself could land a second later)
            sweep_dir = str(config.hydra.sweep.dir)
            if _jobs_run_here(config) and can_fork():
                # The store's side (importing MLflow, opening the store, the parent run) runs in
                # a forked store process on another core while this process imports TensorFlow
                # for the jobs it is about to run; each is several seconds.
                store = ProcessStore(tracking_spec(config))
                started = store.submit(start_sweep_store, config, sweep_dir)
                from nanbench.run import configure_tensorflow
                configure_tensorflow()
                import nanbench.engines.fused  # noqa: F401 - Keras, imported while the child works
            else:
                warming = start_workers(config)
                store = LocalStore(tracking_spec(config))
                if _is_joblib(config):  # its workers are this machine's processes: they send runs here
                    _server = StoreServer(tracking_spec(config), calls=(_record_invalid,))
                started = store.submit(start_sweep_store, config, sweep_dir, _server.address if _server else None)
                if warming is not None:
                    warming.join()
            start = started()
        except (ConfigError, SweepBusy) as exc:
            print(f"nanbench: error: {exc}", file=sys.stderr, flush=True)
            sys.exit(2)
        except Exception as exc:  # noqa: BLE001 - Hydra would only warn, and run jobs with no parent run
            print(f"nanbench: error: the sweep could not start: {type(exc).__name__}: {_one_line(exc)}",
                  file=sys.stderr, flush=True)
            sys.exit(2)
        _store, _active = store, self
        self._store = store
        self._start = time.time()
        self._parent = start["parent_run_id"]
        self._sweep_dir, self._redo = sweep_dir, bool(config.sweep.redo)
        self._exp_id = start["experiment_id"]
        msg = f"nanbench: sweep {start['experiment']}: {start['runs_per_job']} run(s) per job"
        if start["done"]:
            msg += (f"; {start['done']} configurations already FINISHED are skipped "
                    "(sweep.redo=true re-runs them)")
        if start["killed"]:
            msg += f"; marked {start['killed']} interrupted run(s) KILLED"
        print(msg, flush=True)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self.finish(config)

    def finish(self, config: DictConfig, failure: str | None = None) -> None:
        """Close the sweep: counts on the parent, the summary, the parent FINISHED (FAILED, with
        `failure` or the lost store's reason, when the sweep could not run to its end)."""
        global exit_status, _store, _server, _active
        if not hasattr(self, "_parent") or _active is not self:
            return
        _active = None
        with contextlib.suppress(Exception):  # a broken executor: its workers are already gone
            stop_workers(config)
        _progress_close()
        if _store is not None and _store is not self._store:  # the store process was lost: see _store_lost
            self._store = _store
        failure = failure or _lost
        wall = time.time() - self._start
        name = experiment_name(config)
        try:
            counts = self._store.call(end_sweep_store, self._exp_id, self._parent, wall)
        except Exception as exc:  # noqa: BLE001 - a full or broken store: say so, in the one line
            counts = {}
            failure = failure or f"the store could not record the sweep's end ({describe_fault(exc)})"
        summary_line = ", ".join(f"{v} {k}" for k, v in sorted(counts.items())) or "no new runs"
        print(f"nanbench: sweep {name} {'stopped' if failure else 'done'} in {wall:.1f} s: {summary_line}",
              flush=True)
        try:  # a finished sweep stays finished whatever the summary does
            if config.sweep.get("summarize", True) and not failure:
                _summarize(config, name, self._parent)
        except Exception as exc:  # noqa: BLE001
            print(f"nanbench: warning: summary failed ({type(exc).__name__}: {exc}); "
                  f"re-run it with `make summary SWEEP={name}`", file=sys.stderr, flush=True)
        parent_state = "FAILED"
        complete = (self._fingerprint if not failure and not counts.get("error") and _jobs_complete
                    and not _lost else None)
        try:
            self._store.call(finish_parent, self._parent, failure, complete, self._exp_id)
        except Exception as exc:  # noqa: BLE001 - left RUNNING: the next invocation marks it KILLED
            failure = failure or f"the store could not close the parent run ({describe_fault(exc)})"
            parent_state = "left RUNNING (the next run of this sweep marks it KILLED)"
        with contextlib.suppress(Exception):
            self._store.close()
        if _server is not None:
            _server.close()
            _server = None
        _store = None
        self._lock.release()
        errors = counts.get("error", 0)
        if failure:
            print(f"nanbench: error: sweep {name} stopped: {failure}; its parent run is {parent_state}; "
                  "re-run the same command to train what is missing", file=sys.stderr, flush=True)
            exit_status = 1
        elif errors:
            print(f"nanbench: {errors} run(s) errored (recorded as FAILED runs in MLflow)",
                  file=sys.stderr, flush=True)
            exit_status = 1


_active: SweepCallback | None = None  # the launching process's open sweep (for abort)
_lost: str | None = None  # why the store process was replaced mid-sweep, if it was


def abort(config: DictConfig, exc: BaseException) -> None:
    """The jobs could not all run (a worker or the store process was lost, a job raised): close
    the open sweep with its parent FAILED and the reason in one line, and exit 1. Called by
    hydra/sweeper=nanbench in place of Hydra's traceback."""
    reason = describe_fault(exc)
    if _active is None:
        print(f"nanbench: error: the sweep stopped: {reason}", file=sys.stderr, flush=True)
        sys.exit(1)
    _active.finish(config, failure=reason)
    sys.exit(exit_status or 1)


def before_relaunch(exc: BaseException) -> bool:
    """joblib lost a worker (killed, out of memory) and with it the batch's executor: once per
    sweep, wait until the served store has written everything the workers sent, refresh the
    configurations FINISHED (the jobs skip them), note the loss (the sweep ends FAILED with it)
    and have the batch launched again. False: not that fault, or it happened twice: give up."""
    global _lost
    if type(exc).__name__ != "TerminatedWorkerError" or _lost or _active is None or _server is None:
        return False
    reason = describe_fault(exc)
    print(f"nanbench: warning: {reason}; launching the jobs left on new workers", file=sys.stderr, flush=True)
    if not _server.drain():
        return False
    sweep_dir = Path(_active._sweep_dir)
    done = _active._store.call(_finished_now, _active._exp_id) if not _active._redo else set()
    (sweep_dir / DONE_FILE).write_text("\n".join(sorted(done)))
    _lost = f"{reason}; the jobs were launched again on new workers"
    return True


def _finished_now(tracker, exp_id: str) -> set[str]:
    return finished_hashes(tracker.client, exp_id)


def describe_fault(exc: BaseException) -> str:
    if type(exc).__name__ == "TerminatedWorkerError":
        codes = str(exc).rsplit("exit codes of the workers are", 1)[-1].strip(" .{}")
        return f"a worker process ended unexpectedly (exit codes {codes})"
    return f"{type(exc).__name__}: {_one_line(exc)}"


# Store-side work of the sweep (run where the store is: see nanbench.store), each given the Tracker


def start_sweep_store(tracker, config: DictConfig, sweep_dir: str, server: dict | None = None) -> dict:
    """The store's side of a sweep's start: the experiment, runs an interrupted earlier invocation
    left RUNNING marked KILLED, the configurations already FINISHED (written to the jobs' sweep
    directory, for them to skip) and a new parent run (its id written there for the jobs, with
    `server`: where the jobs send their runs, when the launching process serves its store)."""
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
    sweep_dir = Path(sweep_dir)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    (sweep_dir / DONE_FILE).write_text("\n".join(sorted(done)))
    _write_private(sweep_dir / PARENT_FILE, json.dumps({
        "parent_run_id": parent.info.run_id, "experiment": name, "experiment_id": exp_id,
        "runs_per_job": runs_per_job, "start": time.time(), "store": server,
        "launcher_pid": os.getpid() if server else None}))  # served: this is the launching process
    return {"parent_run_id": parent.info.run_id, "experiment": name, "experiment_id": exp_id,
            "runs_per_job": runs_per_job, "done": len(done), "killed": killed}


def _write_private(path: Path, text: str) -> None:
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
    for key, value in metrics.items():
        tracker.client.log_metric(parent_run_id, key, value)
    tracker.client.set_tag(parent_run_id, "counts", json.dumps(counts, sort_keys=True))
    return counts


def finish_parent(tracker, parent_run_id: str, failure: str | None = None, complete: str | None = None,
                  exp_id: str | None = None) -> None:
    """The parent run's end: FINISHED, or FAILED with the reason as its ``error`` tag; then the
    store's write-ahead log is folded into its file (copying mlflow.db alone then loses nothing).
    `complete`: the grid's fingerprint, when every run of every job is FINISHED (see completed)."""
    if failure:
        tracker.client.set_tag(parent_run_id, "error", failure[:5000])
    if complete and exp_id is not None:
        total = sum(1 for _ in all_runs(tracker.client, exp_id,
                                        f"attributes.status = 'FINISHED' and tags.`{ROLE}` = 'child'"))
        tracker.client.set_tag(parent_run_id, COMPLETE_TAG, complete)
        tracker.client.set_tag(parent_run_id, FINISHED_TAG, str(total))
    tracker.client.set_terminated(parent_run_id, status="FAILED" if failure else "FINISHED")
    tracker.checkpoint()


def start_workers(config: DictConfig) -> threading.Thread | None:
    """With Hydra's joblib launcher on several workers: start joblib's workers now, on a thread,
    and have each import TensorFlow and Keras (seconds) while this process imports MLflow and
    opens the store; returns the thread to join before the jobs are launched (else None).

    The launcher's own ``Parallel`` then finds them ready: joblib keeps its worker processes
    between calls whose backend arguments are equal, so this call is given the launcher's."""
    launcher = config.hydra.launcher
    workers = _joblib_workers(config)
    if workers < 2:
        return None
    from joblib import Parallel, delayed

    args = {k: v for k, v in OmegaConf.to_container(launcher, resolve=True).items() if k != "_target_"}
    if isinstance(args.get("max_nbytes"), str) and args["max_nbytes"].isdigit():  # as the launcher does
        args["max_nbytes"] = int(args["max_nbytes"])
    args.update(backend="loky", batch_size=1, pre_dispatch="all", timeout=None)
    calls = [delayed(_warm_worker)(_threads_per_worker(launcher.get("n_jobs"))) for _ in range(workers)]
    thread = threading.Thread(target=lambda: _quietly(Parallel(**args), calls), daemon=True)
    thread.start()
    return thread


def stop_workers(config: DictConfig) -> None:
    """After the jobs, end joblib's idle workers now rather than at this process's exit, where
    joblib waits for each to tear TensorFlow down (about a second). Every job has returned, and
    with it its runs are recorded: nothing is left in a worker."""
    if _joblib_workers(config) >= 2:  # as start_workers: else joblib ran the jobs here, no executor
        from joblib.externals.loky import get_reusable_executor
        get_reusable_executor(reuse=True).shutdown(wait=True, kill_workers=True)


def _quietly(parallel, calls) -> None:
    try:
        parallel(calls)
    except Exception:  # noqa: BLE001 - only a head start: the jobs import what they need themselves
        pass


_watching = None  # the pid of the launching process a worker's watchdog watches


def watch_launcher() -> None:
    """In a worker process (joblib's): end this process as soon as the process that started it
    is gone (killed: it can no longer record this worker's runs, nor stop it). Without this, a
    killed sweep leaves its workers training for good, parented to init. The watchdog thread
    polls the parent's pid, which changes when the parent dies; started once per process."""
    global _watching
    if _watching == os.getpid():
        return
    _watching = os.getpid()
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(0.2)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="nanbench-watch-launcher", daemon=True).start()


def _warm_worker(threads: int | None) -> int:
    watch_launcher()
    from nanbench.run import configure_tensorflow
    configure_tensorflow(threads=threads)
    import nanbench.engines.fused  # noqa: F401 - Keras
    return os.getpid()


def _is_joblib(config: DictConfig) -> bool:
    """Whether the launcher is Hydra's joblib launcher (jobs in this machine's processes)."""
    return "joblib" in str(config.hydra.launcher.get("_target_", ""))


def _joblib_workers(config: DictConfig) -> int:
    """Worker processes Hydra's joblib launcher starts for this sweep (0: another launcher)."""
    return worker_count(config.hydra.launcher.get("n_jobs")) if _is_joblib(config) else 0


def _jobs_run_here(config: DictConfig) -> bool:
    """Whether the launcher runs the jobs in this process (Hydra's basic launcher)."""
    return str(config.hydra.launcher.get("_target_", "")).endswith("BasicLauncher")


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
    for run in all_runs(client, exp_id, "attributes.status = 'RUNNING'", ViewType.ACTIVE_ONLY):
        client.set_terminated(run.info.run_id, status="KILLED")
        n += 1
    return n


def finished_hashes(client, exp_id: str) -> set[str]:
    """Configuration hashes that already have a FINISHED training run in the experiment."""
    return {run.data.tags.get("config_hash") for run in all_runs(
        client, exp_id, f"attributes.status = 'FINISHED' and tags.`{ROLE}` = 'child'")} - {None}


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


def run_job(cfg: DictConfig) -> dict[str, int]:
    """Train every run of one Hydra job; return counts by outcome (skipped runs counted apart)."""
    from hydra.core.hydra_config import HydraConfig
    from nanbench.run import configure_tensorflow, execute, resolve_device
    from nanbench.spec import ConfigError, from_config

    hydra_cfg = HydraConfig.get()
    threads = _threads_per_worker(hydra_cfg.launcher.get("n_jobs"))
    if threads is None:  # Hydra's Ray launcher: the CPUs the job's task reserves
        from nanbench.cluster.launcher import task_threads
        threads = task_threads(hydra_cfg.launcher)
    configure_tensorflow(threads=threads)
    sweep_dir = Path(hydra_cfg.sweep.dir)
    meta = _read_json(sweep_dir / PARENT_FILE)
    jobs = _read_json(sweep_dir / JOBS_FILE).get("jobs")  # written by hydra/sweeper=nanbench
    done_file = sweep_dir / DONE_FILE
    done = set(done_file.read_text().split()) if done_file.exists() else set()
    name = meta.get("experiment") or experiment_name(cfg)
    runs = expand(cfg, fold.rows(sweep_dir, cfg.sweep.get("fold")))
    store = _job_store(cfg, meta)
    if meta.get("launcher_pid") not in (None, os.getpid()):
        watch_launcher()  # a worker: it ends when the sweep's process does
    tags = {"sweep": name, ROLE: "child", "hydra_job": str(hydra_cfg.job.num)}
    writer = store.writer(name, meta.get("parent_run_id"), tags)

    def recover(exc: BaseException):
        """The store process is gone: this process opens the store and records from here on."""
        nonlocal store, writer
        store = _store_lost(cfg, store, exc)
        writer = store.writer(name, meta.get("parent_run_id"), tags)

    counts: dict[str, int] = {}
    bar = _progress(jobs * len(runs) if jobs else None)
    t0 = time.perf_counter()
    trained = 0
    for run in runs:
        try:
            spec = from_config(run, multirun=True)
        except ConfigError as exc:
            # An invalid combination is a FAILED run with its message; the sweep goes on.
            try:
                store.call(_record_invalid, name, meta.get("parent_run_id"), run, f"ConfigError: {exc}", tags)
            except (OSError, EOFError, StoreLost) as lost:
                recover(lost)
                store.call(_record_invalid, name, meta.get("parent_run_id"), run, f"ConfigError: {exc}", tags)
            counts["error"] = counts.get("error", 0) + 1
            _advance(bar, "error")
            continue
        if spec.config_hash() in done:
            counts["skipped"] = counts.get("skipped", 0) + 1
            _advance(bar, None)
            continue
        start = time.time()
        try:
            device = resolve_device(spec.train.device)
        except ConfigError as exc:  # a GPU device file, but none TensorFlow can use
            store.call(_record_invalid, name, meta.get("parent_run_id"), run, f"ConfigError: {exc}", tags)
            counts["error"] = counts.get("error", 0) + 1
            _advance(bar, "error")
            continue
        result = execute(spec, device)
        try:
            writer.put(result, start)
        except (OSError, EOFError, StoreLost) as exc:
            recover(exc)
            writer.put(result, start)
        trained += 1
        counts[result.outcome] = counts.get(result.outcome, 0) + 1
        _advance(bar, result.outcome)
    try:
        writer.close()
    except (OSError, EOFError, StoreLost) as exc:  # what it had been sent is lost: resume trains it again
        recover(exc)
        writer.close()
    elapsed = time.perf_counter() - t0
    if bar is None:
        overrides = " ".join(hydra_cfg.overrides.task) or "(defaults)"
        total_jobs = jobs or "?"
        line = ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
        print(f"[job {hydra_cfg.job.num + 1}/{total_jobs}] {overrides}: {line} "
              f"({trained / elapsed if elapsed > 0 else 0:.1f} runs/s)", flush=True)
    return counts


def _store_lost(cfg: DictConfig, store, exc: BaseException):
    """The launching process's store process ended mid-sweep (killed, out of memory): reap it,
    note why (the sweep ends FAILED with it, see SweepCallback.finish), and go on with the store
    opened in this process, so that every job still to come is trained and recorded. Runs it had
    been sent and not yet written are lost; a re-run trains them. A worker's lost connection to
    a served store is not recoverable here: it is raised."""
    global _store, _lost
    from nanbench.store import LocalStore, ProcessStore
    if not isinstance(store, ProcessStore):
        if isinstance(store, LocalStore) and store is _store:
            return store
        raise exc
    with contextlib.suppress(OSError, ChildProcessError):
        os.waitpid(store.pid, os.WNOHANG)
    _lost = f"the store process (pid {store.pid}) ended unexpectedly; runs it had not yet written are lost"
    print(f"nanbench: warning: {_lost}; recording from this process from here on", file=sys.stderr, flush=True)
    _store = LocalStore(tracking_spec(cfg))
    return _store


_remote = None  # a worker's connection to the launching process's store, kept across its jobs


def _job_store(cfg: DictConfig, meta: dict):
    """Where a job records its runs: the launching process's store when the job runs there
    (basic launcher) or it serves its store to this process (joblib workers), else this
    process's own."""
    global _remote
    from nanbench.store import LocalStore, RemoteStore
    if _store is not None and getattr(_store, "owner", None) == os.getpid():
        return _store
    served = meta.get("store")
    if served:
        if _remote is None or _remote.address != served["address"] or _remote.owner != os.getpid():
            try:
                _remote = RemoteStore(served["address"], served["key"])
            except OSError:  # not reachable from here: record from this process
                return LocalStore(tracking_spec(cfg))
        return _remote
    return LocalStore(tracking_spec(cfg))


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

    from nanbench.store import retry
    client = tracker.client
    exp_id = tracker.experiment_id(experiment)
    flat = {k: v for k, v in _flatten(run).items() if not k.startswith(("tracking.", "sweep."))}
    all_tags = {**tags, "outcome": "error", "error": message[:5000], "mlflow.runName": "invalid: " + message[:200]}
    if parent:
        all_tags["mlflow.parentRunId"] = parent
    created = retry(lambda: client.create_run(exp_id, run_name=all_tags["mlflow.runName"]))
    retry(lambda: client.log_batch(created.info.run_id, params=[Param(k, str(v)[:6000]) for k, v in list(flat.items())[:100]],
                                    tags=[RunTag(k, str(v)) for k, v in all_tags.items()]))
    retry(lambda: client.set_terminated(created.info.run_id, status="FAILED"))
