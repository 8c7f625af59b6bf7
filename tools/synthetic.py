"""Synthetic runs with a planted failure rule, written fast into an MLflow SQLite store.

For the summary's tests and benchmark only: nothing here trains. Each run is a real
:class:`~nanbench.result.RunResult` (spec from ``spec.from_config``, verdict from
``forensics.classify`` on a made-up step series), recorded by the real ``Tracker.log_many``, the
bulk path sweeps use (one transaction for all of them).
"""

from __future__ import annotations

import itertools
import math
import sys
from pathlib import Path
import time
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
                        epoch_loss=epoch_loss, steps_per_epoch=steps_per_epoch,
                        initial_loss=float(loss[0]), final_loss=float(loss[-1]))
    verdict = classify(series, spec.outcome)
    base = {"sgd": 900.0, "momentum": 850.0, "adam": 700.0, "rmsprop": 750.0}[spec.optimizer.name]
    base *= 0.85 if spec.clipping.kind != "none" else 1.0
    base *= 3.0 if spec.train.engine == "fused" else 1.0
    base *= 0.6 if spec.model.name == "mlp" else 1.0
    return RunResult(spec=spec, outcome=verdict.outcome, verdict=verdict, series=series, device="cpu",
                     data_s=0.002, build_s=float(rng.uniform(0.03, 0.06)),
                     first_step_s=float(rng.uniform(0.3, 0.5)) * (2.0 if spec.train.engine == "fused" else 1.0),
                     train_s=max(n - 1, 1) / (base * float(rng.uniform(0.9, 1.1))), n_samples=256)


def plant(results: Iterable[RunResult], tracking_uri: str, experiment: str,
          parent_run_id: str | None = None, tags: dict[str, str] | None = None) -> list[str]:
    """Record `results` as child runs of `parent_run_id` in an SQLite store, in bulk; their ids.

    The rows are those a sweep writes (Tracker.log_many: same params, tags, metrics and
    steps.csv, one transaction). The store and experiment are created through MLflow.
    """
    from nanbench.tracking import Tracker

    if sqlite_path(tracking_uri) is None:
        raise ValueError(f"plant() writes SQLite stores only, not {tracking_uri}")
    tracker = Tracker(TrackingSpec(uri=tracking_uri, experiment=experiment))
    start = time.time()
    items = [(result, start + i * 1e-3) for i, result in enumerate(results)]
    return tracker.log_many(items, experiment=experiment, parent_run_id=parent_run_id, tags=tags)


def create_parent(tracking_uri: str, experiment: str, name: str | None = None) -> str:
    """A finished parent run tagged as a sweep's (nanbench.role=parent); its id."""
    from nanbench.tracking import Tracker

    tracker = Tracker(TrackingSpec(uri=tracking_uri, experiment=experiment))
    parent = tracker.start_parent(experiment, name or f"{experiment} (synthetic)", tags={"sweep": experiment})
    tracker.finish_parent(parent)
    return parent


def plant_sweep(tracking_uri: str, experiment: str, grid: dict[str, list[Any]] | None = None,
                n_runs: int | None = None, rule: Callable[[RunSpec], bool] = planted_rule) -> str:
    """A parent run and its synthetic children over `grid` (default PLANTED_GRID); the parent's id."""
    parent = create_parent(tracking_uri, experiment)
    results = (synthetic_result(spec, rule) for spec in grid_specs(grid or PLANTED_GRID, n_runs))
    plant(results, tracking_uri, experiment, parent_run_id=parent,
          tags={"sweep": experiment, "nanbench.role": "child"})
    return parent


# A run table where a self-explaining cause and a real learning-rate effect coexist, built the way
# nanbench.tracking.reader builds one (reader.build_frame on long params/tags/metrics tables), with no
# MLflow store: NaN inputs turn every run of `nan_inputs` non-finite at the input; among the other
# runs only SGD without clipping turns non-finite, in a share that rises with the learning rate.
MIXED_LRS = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)
MIXED_SHARE = (0.1, 0.3, 0.5, 0.7, 1.0)  # of the SGD runs without clipping, per lr above
MIXED_DATASETS = {  # name -> descriptors (a descriptor a dataset does not take is absent)
    "clean": {"n_samples": 256},
    "outliers": {"n_samples": 256, "outlier_fraction": 0.02},
    "nan_inputs": {"n_samples": 512, "nan_fraction": 0.01},
}


def mixed_table(seeds: int = 5, commits: tuple[str, ...] = ("c0ffee",), share: tuple[float, ...] = MIXED_SHARE,
                stalled_below: float | None = None):
    """(runs frame, factor keys): datasets x optimizer (sgd, adam) x clipping (none, clipnorm) x
    lr (MIXED_LRS) x loss (mse, huber) x train.seed. Of the SGD runs without clipping on clean or
    outliers at lr MIXED_LRS[i], the first share[i] (by seed, then loss) turn NaN at the loss.
    Finite Adam runs at lr 1 end dead (dead_fraction 1). Finite runs improve (reaching the target
    in 1 / lr steps, at 1000 steps/s), or stall where lr < `stalled_below`. Runs are spread over
    `commits` in turn."""
    import pandas as pd

    from nanbench.tracking.reader import build_frame

    info, params, tags, metrics = [], [], [], []
    cells: dict[tuple, int] = {}
    for i, point in enumerate(itertools.product(MIXED_DATASETS, ("sgd", "adam"), ("none", "clipnorm"),
                                                MIXED_LRS, ("mse", "huber"), range(seeds))):
        dataset, opt, clip, lr, loss, seed = point
        run = f"run{i:05d}"
        values = {"dataset.name": dataset, **{f"dataset.{k}": v for k, v in MIXED_DATASETS[dataset].items()},
                  "optimizer.name": opt, "optimizer.lr": lr, "clipping.kind": clip, "loss.name": loss,
                  "train.seed": seed, "train.epochs": 5, "preprocess.scaler": "none", "clipping.threshold": 1.0}
        info.append((run, f"{dataset} {opt} lr={lr:g} {clip} {loss} s{seed}", "FINISHED", i, None))
        params += [(run, k, str(v)) for k, v in values.items()]
        if dataset == "nan_inputs":
            outcome, source, step = "nan", "input", 0
        else:
            rank = cells.setdefault((dataset, opt, clip, lr), 0)
            cells[(dataset, opt, clip, lr)] += 1
            bad = opt == "sgd" and clip == "none" and rank < share[MIXED_LRS.index(lr)] * 2 * seeds
            outcome, source, step = ("nan", "loss", 7) if bad else ("improving", "none", None)
            if outcome == "improving" and stalled_below is not None and lr < stalled_below:
                outcome = "stalled"
        tags += [(run, "outcome", outcome), (run, "first_nonfinite_source", source),
                 (run, "config_hash", f"h{i}"), (run, "git_commit", commits[i % len(commits)])]
        if step is not None:
            metrics += [(run, "first_nonfinite_step", float(step)), (run, "first_nan_step", float(step))]
        else:
            metrics += [(run, "dead_fraction", 1.0 if opt == "adam" and lr == 1.0 else 0.0),
                        (run, "final_loss", 0.5)]
            if outcome == "improving":
                metrics += [(run, "steps_to_target", round(1 / lr)), (run, "seconds_to_target", round(1 / lr) / 1000)]
        metrics += [(run, "initial_loss", 1.0), (run, "steps_per_s", 1000.0), (run, "wall_s", 0.1),
                    (run, "first_step_s", 0.2), (run, "samples_per_s", 32000.0)]

    def long(rows):
        return pd.DataFrame(rows, columns=["run_id", "key", "value"], dtype=object)

    frame = pd.DataFrame(info, columns=["run_id", "run_name", "status", "start_time", "artifact_uri"], dtype=object)
    m = long(metrics)
    m["value"] = m["value"].astype(float)
    return build_frame(frame, long(params), long(tags), m)


def time_summary(n_runs: int = 10_000, workdir: Path | None = None, *, cold: bool = False,
                      details: bool = False) -> float | dict:
    """Seconds that summarize() takes on `n_runs` synthetic runs (the first call in this process,
    so lazy imports of scikit-learn and Matplotlib included).

    The runs are planted by tools.synthetic (real RunResults recorded by Tracker.log, written in
    bulk SQL) into a temporary SQLite store, removed afterwards unless `workdir` is given. With
    `cold`, a fresh `python -m nanbench.summary` process is timed too (interpreter start and every
    import included). `details` returns a dict: runs, plant_s, summarize_s[, cold_process_s].
    """
    import shutil
    import subprocess
    import tempfile

    from nanbench.summary import summarize

    tmp = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="nanbench-bench-"))
    tmp.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{tmp.resolve() / 'mlflow.db'}"
    try:
        t = time.perf_counter()
        plant_sweep(uri, "bench", BENCH_GRID, n_runs)
        result = {"runs": n_runs, "plant_s": round(time.perf_counter() - t, 2)}
        t = time.perf_counter()
        summarize("bench", uri, tmp / "summary")
        result["summarize_s"] = round(time.perf_counter() - t, 2)
        if cold:
            t = time.perf_counter()
            subprocess.run([sys.executable, "-m", "nanbench.summary", "--sweep", "bench", "--tracking-uri", uri,
                            "--out", str(tmp / "summary-cold")], check=True, capture_output=True)
            result["cold_process_s"] = round(time.perf_counter() - t, 2)
        return result if details else result["summarize_s"]
    finally:
        if workdir is None:
            shutil.rmtree(tmp, ignore_errors=True)
