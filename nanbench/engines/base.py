"""What every engine returns: the run's per-step series and where its time went."""

from __future__ import annotations

import contextlib
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


@contextlib.contextmanager
def keras_order():
    """Trace and call an engine's graph with grappler's arithmetic optimizer off.

    That optimizer regroups chains of products and rewrites x / sqrt(y) as x * rsqrt(y) where it
    knows the operands' static shapes, which changes their rounding: the same Keras arithmetic
    would round one way in a run's own graph (static variable shapes) and another in a graph of
    runs stacked side by side (a dynamic run axis). Without it both compute Keras's operations in
    the order Keras writes them, so runs trained side by side equal runs trained one at a time.
    The runtime keeps one instantiation of a graph per setting, so every call asks for this one;
    the setting is restored afterwards (Keras's own fit keeps TensorFlow's defaults)."""
    import tensorflow as tf
    old = tf.config.optimizer.get_experimental_options().get("arithmetic_optimization", True)
    tf.config.optimizer.set_experimental_options({"arithmetic_optimization": False})
    try:
        yield
    finally:
        tf.config.optimizer.set_experimental_options({"arithmetic_optimization": old})
