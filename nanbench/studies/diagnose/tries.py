"""Trying changes: each change a real training run at every seed, the same seeds as the original,
and what a try's runs say: how many seeds trained (nanbench.forensics.trained), stayed finite,
stayed stable; the median L/L0; the time to target; how many of its runs were distinct.

All the runs of a diagnosis go to nanbench.run.execute_many in one call, so the runs of one
structure (the learning-rate and clipping changes, and every seed) train side by side on one
traced graph where the engine allows, and the rest reuse the fused engine's trace per structure.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import math

import numpy as np

from nanbench.forensics import trained
from nanbench.result import RunResult
from nanbench.spec import ConfigError, RunSpec, from_config
from nanbench.studies.boundary.search import is_stable
from nanbench.studies.diagnose.catalogue import Change, apply, distance
from nanbench.vocab import NONFINITE_OUTCOMES

def steps_to_target(result: RunResult) -> int | None:
    """The first step after which the run's whole-data loss fell to outcome.target_ratio x L0, as
    the run recorded it (nanbench.forensics.steps_to_target; None: never)."""
    return result.steps_to_target


# value losses whose best constant prediction is y's mean (its loss: y's variance, or its root)
MEAN_LOSSES = {"keras.losses.MeanSquaredError": False, "nanbench.losses.RootMeanSquaredError": True}


def constant_loss(result: RunResult) -> float | None:
    """The whole-data loss of the best constant prediction for this run's data (the mean of y as
    trained, after any scaling of y), for a regression with MSE or RMSE; None otherwise. On a
    target far from 0 (house prices), L0 is mostly the mean: a model that learns only the mean
    (its hidden units saturated, say) cuts L / L0 a thousandfold and still predicts a constant."""
    from nanbench.user_loss import compiled_class
    spec = result.spec
    cls = compiled_class(spec.loss.compiled) if spec.loss.compiled else spec.loss.keras_class()
    if spec.model.task != "regression" or cls not in MEAN_LOSSES:
        return None
    from nanbench.data import load
    y = np.asarray(load(spec.dataset, spec.preprocess).y, dtype=np.float64)
    y = y[np.all(np.isfinite(y), axis=1)] if y.ndim == 2 else y[np.isfinite(y)]
    if not len(y):
        return None
    var = float(np.mean(np.var(y, axis=0)))
    return math.sqrt(var) if MEAN_LOSSES[cls] else var


def only_constant(result: RunResult) -> bool:
    """Whether a finite run's final whole-data loss is no better than (1 - improve_fraction) x the
    best constant prediction's (:func:`constant_loss`): its loss fell, but it explains nothing of
    the target beyond its mean. Such a run avoids NaN; it does not fix the model."""
    v = result.verdict
    if v is None or v.final_loss is None:
        return False
    baseline = constant_loss(result)
    return baseline is not None and v.final_loss > (1 - result.spec.outcome.improve_fraction) * baseline


def seconds_to_target(result: RunResult) -> float | None:
    """Seconds to target, as the run recorded them (its steps to target at its steady-state speed)."""
    return result.seconds_to_target


def run_signature(result: RunResult) -> tuple:
    """What makes two runs the same run: the initial whole-data loss and the per-step loss series
    (NaN equal to NaN). Seeds whose runs share it replicated nothing."""
    v, series = result.verdict, result.series
    initial = v.initial_loss if v is not None else None
    losses = np.asarray(series.loss, dtype=np.float64).tobytes() if series is not None else b""
    return (result.outcome, initial, losses)


@dataclass
class Try:
    """One change (None: the original configuration) and its runs, one per seed."""

    change: Change | None
    spec: RunSpec | None                      # the changed configuration at the first seed (None: not tried)
    skipped: str | None = None                # why it was not tried (does not apply, same as another)
    distance: float = 0.0                     # catalogue.distance from the original
    results: list[RunResult] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.change.name if self.change is not None else "original"

    @property
    def stable_seeds(self) -> int:
        return sum(is_stable(r.outcome) for r in self.results)

    @property
    def trained_seeds(self) -> int:
        """Seeds whose run trained (finite and L <= (1 - improve_fraction) L0: nanbench.forensics.trained)."""
        return sum(trained(r.outcome) for r in self.results)

    @property
    def constant_seeds(self) -> int:
        """Seeds whose run 'trained' by L / L0 but predicts no better than a constant."""
        return sum(trained(r.outcome) and only_constant(r) for r in self.results)

    @property
    def finite_seeds(self) -> int:
        """Seeds whose run stayed finite (stable or diverged)."""
        return sum(r.outcome not in ("nan", "inf", "error") for r in self.results)

    @property
    def nonfinite_seeds(self) -> list[bool]:
        """Per seed, whether its run went non-finite (nan or inf)."""
        return [r.outcome in NONFINITE_OUTCOMES for r in self.results]

    @property
    def distinct_runs(self) -> int:
        """How many of the seeds' runs differ (run_signature): 1 when every seed ran the same run."""
        return len({run_signature(r) for r in self.results})

    @property
    def steps_to_target(self) -> float | None:
        """Median over the seeds that trained of the steps to target (seeds that never reached it
        count as never: None when fewer than half of them did)."""
        return _median_or_none([steps_to_target(r) for r in self.results if trained(r.outcome)])

    @property
    def seconds_to_target(self) -> float | None:
        """The same median of the wall seconds to target."""
        return _median_or_none([seconds_to_target(r) for r in self.results if trained(r.outcome)])

    @property
    def progress(self) -> float:
        """Median over the seeds of the steps trained before the first non-finite value (all of a
        finite run's): how far a change that did not fix the run got."""
        steps = [r.verdict.first_nonfinite_step if r.verdict and r.verdict.first_nonfinite_step is not None
                 else r.steps_run for r in self.results]
        return float(np.median(steps)) if steps else 0.0

    @property
    def outcomes(self) -> list[str]:
        return [r.outcome for r in self.results]

    def _finals(self) -> list[tuple[float, float | None]]:
        return [(r.verdict.final_loss, r.verdict.initial_loss) for r in self.results
                if r.outcome not in NONFINITE_OUTCOMES and r.verdict is not None and r.verdict.final_loss is not None]

    @property
    def final_loss(self) -> float | None:
        """Median over the seeds that stayed finite of the final loss over the whole training set
        (the change's own units: a change that scales y or swaps the loss changes them)."""
        finals = [f for f, _ in self._finals()]
        return float(np.median(finals)) if finals else None

    @property
    def relative_loss(self) -> float | None:
        """Median over the seeds that stayed finite of final / initial whole-data loss (L / L0,
        unit-free; above 1: the loss grew)."""
        ratios = [f / i for f, i in self._finals() if i]
        return float(np.median(ratios)) if ratios else None


def _median_or_none(values: list) -> float | None:
    """The median, counting None as never (infinite); None when that median is never."""
    if not values:
        return None
    m = float(np.median([math.inf if v is None else v for v in values]))
    return m if math.isfinite(m) else None


def seeds_of(spec: RunSpec, n: int) -> list[int]:
    """train.seed and the next n - 1 seeds."""
    return [spec.train.seed + i for i in range(n)]


def prepare(base: RunSpec, config: dict, changes: list[Change], known: set[str] | None = None) -> list[Try]:
    """Each change's configuration, validated (one nanbench.spec rejects does not apply; one that
    equals the original or an earlier change is the same run, not tried twice)."""
    seen = set(known or {base.config_hash()})
    tries = []
    for change in changes:
        try:
            spec = from_config(apply(config, change), multirun=True)
        except ConfigError as exc:
            tries.append(Try(change, None, skipped=f"does not apply: {exc}"))
            continue
        if spec.config_hash() in seen:
            tries.append(Try(change, None, skipped="the same configuration as the original or an earlier change"))
            continue
        seen.add(spec.config_hash())
        tries.append(Try(change, spec, distance=distance(base, spec)))
    return tries


def train(tries: list[Try], n_seeds: int, *, device: str | None = None, side_by_side: int = 64) -> None:
    """Train every try that applies at each of the seeds, all in one execute_many call."""
    from nanbench.run import execute_many

    todo = [t for t in tries if t.spec is not None]
    specs = [t.spec.replace(train={"seed": s}) for t in todo for s in seeds_of(t.spec, n_seeds)]
    results = iter(execute_many(specs, device, side_by_side=side_by_side))
    for t in todo:
        t.results = [next(results) for _ in range(n_seeds)]
