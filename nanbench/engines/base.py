"""What every engine returns: the run's per-step series and where its time went."""

from __future__ import annotations

from dataclasses import dataclass

from nanbench.forensics import StepSeries


@dataclass(frozen=True)
class EngineOutput:
    series: StepSeries
    build_s: float        # model + optimizer construction
    first_step_s: float   # the first step, including tracing/compilation
    train_s: float        # every later step (steady state)
    dead_fraction: float | None = None               # ReLU units dead at the end (forensics.dead_fraction)
    dead_fraction_at_nonfinite: float | None = None  # ... with the weights the first non-finite step started from
