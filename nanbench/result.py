"""The result of one run: what the engine measured, the verdict, and the timings."""

from __future__ import annotations

import functools
import json
import math
import os
import platform
from dataclasses import dataclass, field

import numpy as np

from nanbench.forensics import SKIPPED_BIT, StepSeries, Verdict, trained
from nanbench.spec import RunSpec


def finite_or_none(value: float | None) -> float | None:
    """JSON and MLflow get numbers only when finite; inf/NaN are reported through the outcome."""
    return value if value is not None and math.isfinite(value) else None


@functools.cache
def this_machine() -> str:
    """The machine a run trained on, as results name it: the CPU model (float32 kernels differ
    between CPUs, so outcomes near a threshold can differ between machines), its architecture and
    core count, e.g. 'AMD EPYC (x86_64, 2 cores)'."""
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    return f"{cpu} ({platform.machine()}, {os.cpu_count()} cores)"


@dataclass
class RunResult:
    spec: RunSpec
    outcome: str
    verdict: Verdict | None = None
    series: StepSeries | None = None
    device: str = "cpu"
    error: str | None = None
    # seconds; they add up to the wall time of the run (tracking excluded)
    data_s: float = 0.0        # making and preprocessing the data
    build_s: float = 0.0       # building model, optimizer and loss
    first_step_s: float = 0.0  # first step, including tracing/compilation
    train_s: float = 0.0       # all later steps (steady state)
    n_samples: int = 0         # rows trained on (after preprocessing)
    dead_fraction: float | None = None               # ReLU units dead at the end (forensics.dead_fraction)
    dead_fraction_at_nonfinite: float | None = None  # ... at the start of the first non-finite step
    # which layer first held inf/NaN (nanbench.locate: a Keras layer name, "input" or "loss") and
    # in what part of the step ("output", "gradient" or "weights"); None when the run stayed finite
    first_nonfinite_layer: str | None = None
    first_nonfinite_part: str | None = None
    side_by_side: int = 1      # runs trained in the same call (nanbench.engines.batched), this one included
    engine_used: str | None = None  # the engine that trained it when not train.engine (a user's model fused
                                    # cannot trace trains with fit); None: train.engine
    run_id: str | None = None
    machine: str = field(default_factory=this_machine)  # where it trained (the trainer's process)

    @property
    def engine(self) -> str:
        """The engine that trained the run (train.engine, unless it fell back to fit)."""
        return self.engine_used or self.spec.train.engine

    @property
    def steps_run(self) -> int:
        return self.series.steps if self.series is not None else 0

    @property
    def skipped_steps(self) -> int:
        """Steps whose update the loss scaler skipped (mixed_float16: the scaled gradients were not
        finite, so Keras's LossScaleOptimizer left the weights as they were and halved the scale).
        0 without loss scaling. A run that is finite yet skipped most of its steps barely trained."""
        if self.series is None:
            return 0
        return int(np.count_nonzero(np.asarray(self.series.flags, dtype=np.int64) & SKIPPED_BIT))

    @property
    def wall_s(self) -> float:
        return self.data_s + self.build_s + self.first_step_s + self.train_s

    @property
    def steady_steps(self) -> int:
        """Steps timed by train_s: the fit engine times its first step apart, fused its trace."""
        return self.steps_run - 1 if self.engine == "fit" else self.steps_run

    @property
    def steps_per_s(self) -> float | None:
        """Steady-state steps per second (tracing and the fit engine's first step excluded)."""
        if self.steady_steps > 0 and self.train_s > 0:
            return self.steady_steps / self.train_s
        return None

    @property
    def trained(self) -> bool:
        """Whether the run trained (nanbench.forensics.trained: converged or improving)."""
        return trained(self.outcome)

    @property
    def steps_to_target(self) -> int | None:
        """Steps until the whole-data loss first fell to outcome.target_ratio x L0 (resolution:
        epochs; nanbench.forensics.steps_to_target); None if it never did."""
        return self.verdict.steps_to_target if self.verdict is not None else None

    @property
    def seconds_to_target(self) -> float | None:
        """Wall seconds of training up to steps_to_target, at the run's steady-state rate
        (steps_to_target / steps_per_s: tracing, compilation and the evaluations excluded, so the
        figure is the same whichever engine or how many runs side by side trained it, up to the
        rate); None if the target was never reached or the rate is unknown."""
        steps, rate = self.steps_to_target, self.steps_per_s
        if steps is None:
            return None
        if steps == 0:
            return 0.0
        return steps / rate if rate else None

    @property
    def samples_per_s(self) -> float | None:
        sps = self.steps_per_s
        if sps is None or self.series is None:
            return None
        # the mean batch of an epoch (the last batch may be partial)
        return sps * self.n_samples / max(1, self.series.steps_per_epoch)

    def summary(self) -> dict:
        """The one-line JSON a run prints last: outcome, forensics, speed and identity."""
        v = self.verdict
        return {
            "outcome": self.outcome,
            "first_nonfinite_step": v.first_nonfinite_step if v else None,
            "first_nonfinite_source": v.first_nonfinite_source if v else None,
            "first_nonfinite_layer": self.first_nonfinite_layer,
            "first_nonfinite_part": self.first_nonfinite_part,
            "first_inf_step": v.first_inf_step if v else None,
            "first_nan_step": v.first_nan_step if v else None,
            "initial_loss": finite_or_none(v.initial_loss) if v else None,
            "final_loss": finite_or_none(v.final_loss) if v else None,
            "min_loss": finite_or_none(v.min_loss) if v else None,
            "trained": self.trained,
            "steps_to_target": self.steps_to_target,
            "seconds_to_target": self.seconds_to_target,
            "dead_fraction": self.dead_fraction,
            "dead_fraction_at_nonfinite": self.dead_fraction_at_nonfinite,
            "steps_run": self.steps_run,
            "skipped_steps": self.skipped_steps,
            "steps_per_s": self.steps_per_s,
            "samples_per_s": self.samples_per_s,
            "wall_s": self.wall_s,
            "engine": self.engine,
            "device": self.device,
            "machine": self.machine,
            "config_hash": self.spec.config_hash(),
            "run_id": self.run_id,
            "error": self.error,
        }

    def to_json(self) -> str:
        return json.dumps(self.summary(), allow_nan=False)
