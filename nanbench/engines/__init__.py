"""Training engines. Each takes a RunSpec and its Data and returns a StepSeries with timings.

- ``fit``: Keras ``Model.fit`` with a forensic ``train_step`` and a recording callback (the reference).
- ``fused``: the whole run in one ``tf.function``, traced once per structure and reused.
"""

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


def train(spec, data, device: str) -> EngineOutput:
    """Train one run with the engine the spec names, on `device` ('/CPU:0' or '/GPU:0')."""
    if spec.train.engine == "fit":
        from nanbench.engines.fit import train as fit_train
        return fit_train(spec, data, device)
    from nanbench.engines.fused import train as fused_train
    return fused_train(spec, data, device)
