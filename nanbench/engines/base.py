"""What every engine returns: the run's per-step series and where its time went."""

from __future__ import annotations

import contextlib
import gc
import time
from dataclasses import dataclass
from typing import Any, Callable

from nanbench.forensics import StepSeries


@dataclass(frozen=True)
class EngineOutput:
    series: StepSeries
    build_s: float        # model + optimizer construction
    first_step_s: float   # the first step, including tracing/compilation
    train_s: float        # every later step (steady state)
    dead_fraction: float | None = None               # ReLU units dead at the end (forensics.dead_fraction)
    dead_fraction_at_nonfinite: float | None = None  # ... with the weights the first non-finite step started from
    # (step, source) -> (layer, part): which layer first held inf/NaN at the run's first non-finite
    # step (nanbench.locate); None: the engine cannot replay its steps
    locate: Callable[[int, str], tuple[str | None, str | None]] | None = None
    # () -> (layer, part): which layer first held inf/NaN in the initial forward pass over the whole
    # data (inference mode), for a run whose initial loss is not finite; None: not replayed
    locate_start: Callable[[], tuple[str | None, str | None]] | None = None
    engine: str | None = None  # the engine that trained the run, when not the one asked for (fused -> fit)


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


def freeze_once() -> None:
    """After a process's first trace, collect once and freeze what is left out of the garbage
    collector's reach: TensorFlow, Keras and the traced graphs live as long as the process, and
    otherwise every full collection rescans them all (in the middle of the runs that
    follow). Runs allocate little that outlives them, so later collections stay small."""
    if not gc.get_freeze_count():
        gc.collect()
        gc.freeze()


def cached(cache: dict, key, make: Callable[[], Any]) -> tuple[Any, float, float]:
    """The trainer cached under `key`, made (`make`) and traced on first use; with the seconds
    its making and its trace took (the lookup's, and 0, when it was cached)."""
    t0 = time.perf_counter()
    fresh = key not in cache
    if fresh:
        cache[key] = make()
    build_s = time.perf_counter() - t0
    if not fresh:
        return cache[key], build_s, 0.0
    cache[key].trace()
    freeze_once()
    return cache[key], build_s, time.perf_counter() - t0 - build_s
