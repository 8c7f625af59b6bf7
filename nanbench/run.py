"""One run, end to end: spec -> data -> engine -> verdict -> MLflow. NaN is a result, not a crash."""

from __future__ import annotations

import functools
import os
import time
import traceback

from nanbench.result import RunResult
from nanbench.spec import ConfigError, RunSpec

_configured = False


def configure_tensorflow(threads: int | None = None) -> None:
    """Once per process, before TensorFlow runs anything: deterministic ops, quiet logs and, when
    several workers share the machine, `threads` threads per TensorFlow pool (its default is one
    per core in every process, which oversubscribes the cores N-fold with N workers)."""
    global _configured
    if _configured:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    tf.config.experimental.enable_op_determinism()
    tf.get_logger().setLevel("ERROR")
    _configured = True


@functools.lru_cache(maxsize=None)  # the devices TensorFlow sees do not change within a process
def resolve_device(requested: str) -> str:
    """'/GPU:0' or '/CPU:0' for train.device; a GPU asked for and not seen is a config error."""
    import tensorflow as tf
    gpus = tf.config.list_physical_devices("GPU")
    if requested == "gpu" and not gpus:
        raise ConfigError("train.device", "auto or cpu on this machine (TensorFlow sees no GPU)", "gpu")
    return "/GPU:0" if gpus and requested in ("gpu", "auto") else "/CPU:0"


def execute(spec: RunSpec, device: str | None = None) -> RunResult:
    """Train one run and classify it. Exceptions during training become outcome 'error'."""
    from nanbench import engines
    from nanbench.data import load
    from nanbench.forensics import classify

    configure_tensorflow()
    device = device or resolve_device(spec.train.device)
    short_device = "gpu" if "GPU" in device else "cpu"
    t0 = time.perf_counter()
    try:
        data = load(spec.dataset, spec.preprocess)
        if data.n_samples == 0:
            raise ValueError("preprocessing left no rows to train on")
    except Exception as exc:  # noqa: BLE001 - recorded as the run's error
        return RunResult(spec=spec, outcome="error", device=short_device, error=describe_error(exc),
                         data_s=time.perf_counter() - t0)
    data_s = time.perf_counter() - t0
    try:
        out = engines.train(spec, data, device)
    except Exception as exc:  # noqa: BLE001
        return RunResult(spec=spec, outcome="error", device=short_device, error=describe_error(exc),
                         data_s=data_s, n_samples=data.n_samples)
    verdict = classify(out.series, spec.outcome)
    return RunResult(spec=spec, outcome=verdict.outcome, verdict=verdict, series=out.series,
                     device=short_device, data_s=data_s, build_s=out.build_s,
                     first_step_s=out.first_step_s, train_s=out.train_s, n_samples=data.n_samples,
                     dead_fraction=out.dead_fraction, dead_fraction_at_nonfinite=out.dead_fraction_at_nonfinite)


def describe_error(exc: BaseException) -> str:
    last = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    where = f" at {os.path.basename(last[0].filename)}:{last[0].lineno}" if last else ""
    return f"{type(exc).__name__}: {exc}{where}".replace("\n", " ")
