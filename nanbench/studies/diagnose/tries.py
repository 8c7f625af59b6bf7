"""Trying changes: each change a real training run at every seed, the same seeds as the original.

All the runs of a diagnosis go to nanbench.run.execute_many in one call, so the runs of one
structure (the learning-rate and clipping changes, and every seed) train side by side on one
traced graph where the engine allows, and the rest reuse the fused engine's trace per structure.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from nanbench.result import RunResult
from nanbench.spec import ConfigError, RunSpec, from_config
from nanbench.studies.boundary.search import is_stable
from nanbench.studies.diagnose.catalogue import Change, apply, distance


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
    def finite_seeds(self) -> int:
        """Seeds whose run stayed finite (stable or diverged)."""
        return sum(r.outcome not in ("nan", "inf", "error") for r in self.results)

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
                if is_stable(r.outcome) and r.verdict is not None and r.verdict.final_loss is not None]

    @property
    def final_loss(self) -> float | None:
        """Median over the stable seeds of the final loss over the whole training set (the change's
        own units: a change that scales y or swaps the loss changes them)."""
        finals = [f for f, _ in self._finals()]
        return float(np.median(finals)) if finals else None

    @property
    def relative_loss(self) -> float | None:
        """Median over the stable seeds of final / initial whole-data loss (L / L0, unit-free)."""
        ratios = [f / i for f, i in self._finals() if i]
        return float(np.median(ratios)) if ratios else None


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
