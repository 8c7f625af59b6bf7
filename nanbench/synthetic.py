"""Synthetic runs with a planted failure rule, written fast into an MLflow SQLite store.

For the summary's tests and benchmark only: nothing here trains. Each run is a real
:class:`~nanbench.result.RunResult` (spec from ``spec.from_config``, verdict from
``forensics.classify`` on a made-up step series), recorded by the real ``Tracker.log``. Only the
transport differs: Tracker.log's MLflow calls are kept in memory and then written to MLflow's own
tables with one bulk SQL transaction, because 10,000 runs through MlflowClient take many minutes
(four SQLite transactions per run) while the same rows go in by SQL in seconds.
"""

from __future__ import annotations

import itertools
import math
import sqlite3
import time
import uuid
from types import SimpleNamespace
from typing import Any, Callable, Iterable

import numpy as np

from nanbench.forensics import INF_BIT, NAN_BIT, StepSeries, classify
from nanbench.result import RunResult
from nanbench.spec import RunSpec, TrackingSpec, from_config
from nanbench.tracking import sqlite_path

# The grid of the planted-rule test: 2 x 2 x 3 x 4 x 2 x 2 = 192 runs.
PLANTED_GRID: dict[str, list[Any]] = {
    "dataset.name": ["clean", "outliers"],
    "preprocess.scaler": ["none", "standard"],
    "optimizer.name": ["sgd", "momentum", "adam"],
    "optimizer.lr": [0.001, 0.01, 0.1, 1.0],
    "clipping.kind": ["none", "clipnorm"],
    "loss.name": ["mse", "huber"],
}
# The benchmark's grid adds factors that change speed: 192 x 8 = 1,536 configurations per seed.
BENCH_GRID: dict[str, list[Any]] = {
    **PLANTED_GRID,
    "model.name": ["linear", "mlp"],
    "train.precision": ["float32", "mixed_bfloat16"],
    "train.engine": ["fit", "fused"],
}


def planted_rule(spec: RunSpec) -> bool:
    """The only runs that turn NaN: plain SGD on unscaled data with lr >= 0.1."""
    return (spec.optimizer.name == "sgd" and spec.preprocess.scaler == "none"
            and spec.optimizer.lr >= 0.1)


def grid_specs(grid: dict[str, list[Any]], n_runs: int | None = None, epochs: int = 5) -> list[RunSpec]:
    """Specs for every point of `grid` (dotted keys), repeated over train.seed up to `n_runs`."""
    points = [dict(zip(grid, values)) for values in itertools.product(*grid.values())]
    n_runs = n_runs or len(points)
    specs = []
    for seed in range(math.ceil(n_runs / len(points))):
        for point in points:
            if len(specs) == n_runs:
                return specs
            cfg: dict[str, dict[str, Any]] = {"dataset": {"name": "clean"},
                                              "train": {"epochs": epochs, "seed": seed}}
            for key, value in point.items():
                group, name = key.split(".", 1)
                cfg.setdefault(group, {})[name] = value
            if cfg.get("model", {}).get("name") == "mlp":
                cfg["model"].update(width=16, depth=1, activation="relu")
            specs.append(from_config(cfg))
    return specs


def synthetic_result(spec: RunSpec, rule: Callable[[RunSpec], bool] = planted_rule,
                     steps_per_epoch: int = 4) -> RunResult:
    """A RunResult as the engine would return it: NaN where `rule` says so, finite elsewhere.

    A NaN run's loss grows until, at a random step, either the loss overflows to inf and the next
    step is NaN (inf before NaN, source: loss) or the gradients go NaN at once (source: gradients);
    it stops after the weights hold NaN, as the engines do. Finite runs decay (converged or
    stalled), except momentum at lr >= 1, which grows (diverged). Timings are plausible, not real.
    """
    rng = np.random.default_rng(int(spec.config_hash()[:8], 16))
    steps = spec.train.epochs * steps_per_epoch
    loss0 = float(rng.uniform(1.0, 10.0))
    flags = np.zeros(steps, dtype=np.int64)
    if rule(spec):
        bad = int(rng.integers(2, steps - 2))
        loss = loss0 * 10.0 ** np.arange(bad + 2, dtype=np.float64)
        flags = flags[:bad + 2]
        if rng.random() < 0.5:  # overflow: inf in the loss, NaN one step later
            loss[bad], loss[bad + 1] = np.inf, np.nan
            flags[bad] = INF_BIT["loss"] | INF_BIT["gradients"]
            flags[bad + 1] = NAN_BIT["loss"] | NAN_BIT["gradients"] | NAN_BIT["weights"]
        else:  # NaN straight from the gradients, the loss still finite
            flags[bad] = NAN_BIT["gradients"] | NAN_BIT["weights"]
            loss[bad + 1] = np.nan
            flags[bad + 1] = NAN_BIT["loss"] | NAN_BIT["gradients"] | NAN_BIT["weights"]
        grad = np.where(np.isfinite(loss), np.sqrt(np.abs(loss)), loss)
    else:
        rate = 1.5 if spec.optimizer.name == "momentum" and spec.optimizer.lr >= 1.0 else float(
            rng.uniform(0.6, 0.95))
        loss = loss0 * rate ** np.arange(steps, dtype=np.float64)
        grad = np.sqrt(loss) * rng.uniform(0.5, 2.0)
    weight = np.cumsum(np.where(np.isfinite(grad), grad, np.nan)) * spec.optimizer.lr + 1.0
    n = len(loss)
    epoch_loss = np.array([loss[i:i + steps_per_epoch].mean() for i in range(0, n, steps_per_epoch)])
    series = StepSeries(loss=loss.astype(np.float32), grad_norm=grad.astype(np.float32),
                        weight_norm=weight.astype(np.float32), flags=flags,
                        epoch_loss=epoch_loss, steps_per_epoch=steps_per_epoch)
    verdict = classify(series, spec.outcome)
    base = {"sgd": 900.0, "momentum": 850.0, "adam": 700.0, "rmsprop": 750.0}[spec.optimizer.name]
    base *= 0.85 if spec.clipping.kind != "none" else 1.0
    base *= 3.0 if spec.train.engine == "fused" else 1.0
    base *= 0.6 if spec.model.name == "mlp" else 1.0
    return RunResult(spec=spec, outcome=verdict.outcome, verdict=verdict, series=series, device="cpu",
                     data_s=0.002, build_s=float(rng.uniform(0.03, 0.06)),
                     first_step_s=float(rng.uniform(0.3, 0.5)) * (2.0 if spec.train.engine == "fused" else 1.0),
                     train_s=max(n - 1, 1) / (base * float(rng.uniform(0.9, 1.1))), n_samples=256)


class _RecordingClient:
    """Stands in for MlflowClient inside Tracker.log: keeps the writes, passes experiment look-ups on.

    Any other MlflowClient method Tracker.log may start to call fails loudly (AttributeError)."""

    def __init__(self, client, artifact_location: str):
        self._client = client
        self._artifact_location = artifact_location.rstrip("/")
        self.runs: dict[str, dict[str, Any]] = {}
        self.tags: list[tuple[str, str, str]] = []
        self.params: list[tuple[str, str, str]] = []
        self.metrics: list[tuple[str, float, int, str, int]] = []
        self.texts: list[tuple[str, str, str]] = []

    def get_experiment_by_name(self, name):
        return self._client.get_experiment_by_name(name)

    def create_experiment(self, *args, **kwargs):
        return self._client.create_experiment(*args, **kwargs)

    def create_run(self, experiment_id, start_time=None, run_name=None, tags=None):
        run_id = uuid.uuid4().hex
        self.runs[run_id] = {"experiment_id": int(experiment_id), "start_time": start_time,
                             "name": run_name, "status": "RUNNING", "end_time": None}
        self.tags += [(k, str(v), run_id) for k, v in (tags or {}).items()]
        uri = f"{self._artifact_location}/{run_id}/artifacts"
        self.runs[run_id]["artifact_uri"] = uri
        return SimpleNamespace(info=SimpleNamespace(run_id=run_id, artifact_uri=uri, experiment_id=experiment_id))

    def log_batch(self, run_id, metrics=(), params=(), tags=()):
        self.metrics += [(m.key, float(m.value), int(m.timestamp), run_id, int(m.step)) for m in metrics]
        self.params += [(p.key, p.value, run_id) for p in params]
        self.tags += [(t.key, t.value, run_id) for t in tags]

    def log_text(self, run_id, text, artifact_file):  # artifact stores that are not local folders
        self.texts.append((run_id, artifact_file, text))

    def set_terminated(self, run_id, status="FINISHED", end_time=None):
        self.runs[run_id].update(status=status, end_time=end_time or int(time.time() * 1000))


def plant(results: Iterable[RunResult], tracking_uri: str, experiment: str,
          parent_run_id: str | None = None, tags: dict[str, str] | None = None) -> list[str]:
    """Record `results` as child runs of `parent_run_id` in an SQLite store, in bulk; their ids.

    The rows are those Tracker.log writes (same params, tags, metrics and steps.csv), inserted in
    one transaction into MLflow's tables. The store and experiment are created through MLflow.
    """
    from nanbench.tracking import Tracker

    db = sqlite_path(tracking_uri)
    if db is None:
        raise ValueError(f"plant() writes SQLite stores only, not {tracking_uri}")
    tracker = Tracker(TrackingSpec(uri=tracking_uri, experiment=experiment))
    exp_id = tracker.experiment_id(experiment)
    artifact_location = tracker.client.get_experiment(exp_id).artifact_location
    recorder = _RecordingClient(tracker.client, artifact_location)
    tracker.client = recorder
    start = time.time()
    run_ids = []
    for i, result in enumerate(results):
        run_ids.append(tracker.log(result, experiment=experiment, parent_run_id=parent_run_id,
                                   tags=tags, start_time=start + i * 1e-3))
    # MLflow's latest_metrics keeps, per run and key, the value at the largest step
    latest: dict[tuple[str, str], tuple[str, float, int, int, int, str]] = {}
    for key, value, ts, run_id, step in recorder.metrics:
        old = latest.get((run_id, key))
        if old is None or (step, ts) >= (old[3], old[2]):
            latest[(run_id, key)] = (key, value, ts, step, 0, run_id)
    if recorder.texts:
        raise ValueError(f"plant() needs a local (file://) artifact root, not {artifact_location}")
    with sqlite3.connect(db) as con:
        con.executemany(
            "INSERT INTO runs (run_uuid, name, source_type, source_name, entry_point_name, user_id, "
            "status, start_time, end_time, source_version, lifecycle_stage, artifact_uri, experiment_id) "
            "VALUES (?, ?, 'UNKNOWN', '', '', 'unknown', ?, ?, ?, '', 'active', ?, ?)",
            [(rid, r["name"], r["status"], r["start_time"], r["end_time"],
              r["artifact_uri"], r["experiment_id"]) for rid, r in recorder.runs.items()])
        con.executemany("INSERT INTO tags (key, value, run_uuid) VALUES (?, ?, ?)", recorder.tags)
        con.executemany("INSERT INTO params (key, value, run_uuid) VALUES (?, ?, ?)", recorder.params)
        con.executemany("INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan) "
                        "VALUES (?, ?, ?, ?, ?, 0)", recorder.metrics)
        con.executemany("INSERT INTO latest_metrics (key, value, timestamp, step, is_nan, run_uuid) "
                        "VALUES (?, ?, ?, ?, ?, ?)", list(latest.values()))
    return run_ids


def create_parent(tracking_uri: str, experiment: str, name: str | None = None) -> str:
    """A parent run tagged as a sweep's (nanbench.role=parent); its id."""
    from mlflow.tracking import MlflowClient

    from nanbench.tracking import Tracker

    tracker = Tracker(TrackingSpec(uri=tracking_uri, experiment=experiment))
    exp_id = tracker.experiment_id(experiment)
    client: MlflowClient = tracker.client
    run = client.create_run(exp_id, run_name=name or f"{experiment} (synthetic)",
                            tags={"nanbench.role": "parent", "sweep": experiment})
    client.set_terminated(run.info.run_id)
    return run.info.run_id


def plant_sweep(tracking_uri: str, experiment: str, grid: dict[str, list[Any]] | None = None,
                n_runs: int | None = None, rule: Callable[[RunSpec], bool] = planted_rule) -> str:
    """A parent run and its synthetic children over `grid` (default PLANTED_GRID); the parent's id."""
    parent = create_parent(tracking_uri, experiment)
    results = (synthetic_result(spec, rule) for spec in grid_specs(grid or PLANTED_GRID, n_runs))
    plant(results, tracking_uri, experiment, parent_run_id=parent,
          tags={"sweep": experiment, "nanbench.role": "child"})
    return parent
