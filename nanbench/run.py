"""One run, end to end: spec -> data -> engine -> verdict -> MLflow. NaN is a result, not a crash."""

from __future__ import annotations

import functools
import math
import os
import sys
import time
import traceback
from typing import Iterator

from nanbench.result import RunResult
from nanbench.spec import USER_MODELS, ConfigError, RunSpec

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


def check_user_model(spec) -> None:
    """A run's user model (model=keras, model=builder) against its data, with Keras: it loads
    safely or the builder returns a keras.Model, it takes one input of the data's feature count
    and gives one output per row (one per class for multiclass); else the one-line ConfigError
    naming model.path / model.builder (nanbench.user_model.check). A loss=builder's function is
    imported and called (nanbench.losses.user_loss; else the ConfigError naming loss.builder).
    Nothing else for nanbench's own models and losses. Called wherever a config is checked before anything is recorded (the CLI, the sweep's
    checks, each sweep run), after nanbench.spec.from_config."""
    if spec.loss.builder is not None:  # loss=builder: the user's function imports and returns a loss
        configure_tensorflow()
        from nanbench.losses import user_loss
        user_loss(spec.loss.builder)
    if spec.model.name not in USER_MODELS:
        return
    from nanbench import user_model
    from nanbench.data.generators import make_dataset
    configure_tensorflow()  # before Keras runs anything (a no-op where the caller has already)
    dataset = spec.dataset
    user_model.check(spec.model, _n_features(dataset, make_dataset), dataset.problem, dataset.classes,
                     spec.train.precision)


@functools.lru_cache(maxsize=32)
def _n_features(dataset, make) -> int:
    """The feature columns of a dataset's X (made once: the generators are deterministic)."""
    return int(make(dataset)[0].shape[1])


def _load(spec: RunSpec, short_device: str):
    """The run's data and the seconds it took, or the run's error result."""
    from nanbench.data import load
    t0 = time.perf_counter()
    try:
        data = load(spec.dataset, spec.preprocess)
        if data.n_samples == 0:
            raise ValueError("preprocessing left no rows to train on")
    except Exception as exc:  # noqa: BLE001 - recorded as the run's error
        return RunResult(spec=spec, outcome="error", device=short_device, error=describe_error(exc),
                         data_s=time.perf_counter() - t0)
    return data, time.perf_counter() - t0


def _classified(spec: RunSpec, out, data, data_s: float, short_device: str, side_by_side: int = 1) -> RunResult:
    from nanbench.forensics import classify
    verdict = classify(out.series, spec.outcome)
    layer = part = None
    if verdict.first_nonfinite_step == 0 and out.locate_start is not None and not math.isfinite(out.series.initial_loss):
        layer, part = out.locate_start()  # the initial forward pass, before any update
        if layer is None:
            layer, part = None, "output"
    elif verdict.first_nonfinite_step is not None:
        layer, part = (out.locate(verdict.first_nonfinite_step, verdict.first_nonfinite_source)
                       if out.locate is not None else (None, None))
        if layer is None and verdict.first_nonfinite_source == "input":  # no replay needed
            layer, part = "input", "output"
    return RunResult(spec=spec, outcome=verdict.outcome, verdict=verdict, series=out.series,
                     device=short_device, data_s=data_s, build_s=out.build_s,
                     first_step_s=out.first_step_s, train_s=out.train_s, n_samples=data.n_samples,
                     dead_fraction=out.dead_fraction, dead_fraction_at_nonfinite=out.dead_fraction_at_nonfinite,
                     first_nonfinite_layer=layer, first_nonfinite_part=part, side_by_side=side_by_side,
                     engine_used=out.engine)


def _short(device: str) -> str:
    return "gpu" if "GPU" in device else "cpu"


def execute(spec: RunSpec, device: str | None = None) -> RunResult:
    """Train one run and classify it. Exceptions during training become outcome 'error'."""
    from nanbench import engines

    configure_tensorflow()
    device = device or resolve_device(spec.train.device)
    loaded = _load(spec, _short(device))
    if isinstance(loaded, RunResult):
        return loaded
    data, data_s = loaded
    try:
        out = engines.train(spec, data, device)
    except Exception as exc:  # noqa: BLE001
        return RunResult(spec=spec, outcome="error", device=_short(device), error=describe_error(exc),
                         data_s=data_s, n_samples=data.n_samples)
    return _classified(spec, out, data, data_s, _short(device))


def execute_many(specs: list[RunSpec], device: str | None = None, side_by_side: int = 64) -> list[RunResult]:
    """Train and classify `specs` (results in their order): execute_calls, collected."""
    results: list[RunResult | None] = [None] * len(specs)
    for call in execute_calls(specs, device, side_by_side):
        for i, result in call:
            results[i] = result
    return results


def execute_calls(specs: list[RunSpec], device: str | None = None,
                  side_by_side: int = 64) -> Iterator[list[tuple[int, RunResult]]]:
    """Train and classify `specs`, a call at a time: yields each call's (index in `specs`, result)
    pairs as the call ends, so that a caller records them while the next call trains. Runs of the
    fused engine that share a structure (nanbench.engines.batched.group_key), wherever they are
    in `specs`, train side by side, at most `side_by_side` in one call, with each run's
    arithmetic and result bit-identical to training it alone (nanbench.engines.products and
    updates); a run whose structure that engine does not write out, or left alone in its group,
    trains alone (execute), a call of its own; runs whose optimizer no update side by side gives
    its bits also train alone, and one line on stderr says how many and which class. A call that raises makes each of its runs outcome 'error'
    with the message."""
    from nanbench.engines import batched
    from nanbench.engines.products import layer_products

    configure_tensorflow()
    alone = []
    refused: dict[str, int] = {}  # optimizer class -> runs of a group it keeps from training side by side
    groups: dict[tuple, list] = {}
    for i, spec in enumerate(specs):
        if side_by_side < 2 or spec.train.engine != "fused" or not batched.supports(spec):
            alone.append(i)
            continue
        run_device = device or resolve_device(spec.train.device)
        loaded = _load(spec, _short(run_device))
        if isinstance(loaded, RunResult):
            yield [(i, loaded)]
            continue
        data, data_s = loaded
        groups.setdefault((batched.group_key(spec, data.n_samples, data.n_features), run_device), []).append(
            (i, spec, data, data_s))
    for (_, run_device), members in groups.items():
        for lo in range(0, len(members), side_by_side):
            chunk = members[lo:lo + side_by_side]
            _, spec, data, _ = chunk[0]
            products = (layer_products(spec, data.n_samples, data.n_features, len(chunk))
                        if len(chunk) > 1 else None)
            update = batched.update_for(spec, data.n_features, run_device) if products else None
            if update is None:  # one run, or shapes or an optimizer side by side would not give their own bits
                alone += [m[0] for m in chunk]
                if products is not None:
                    refused[spec.optimizer.keras_class()] = refused.get(spec.optimizer.keras_class(), 0) + len(chunk)
                continue
            try:
                outs = batched.train_together([m[1] for m in chunk], [m[2] for m in chunk], run_device, products,
                                              update)
            except Exception as exc:  # noqa: BLE001 - each run's error
                yield [(i, RunResult(spec=spec, outcome="error", device=_short(run_device), error=describe_error(exc),
                                     data_s=data_s, n_samples=data.n_samples)) for i, spec, data, data_s in chunk]
                continue
            yield [(i, _classified(spec, out, data, data_s, _short(run_device), side_by_side=len(chunk)))
                   for (i, spec, data, data_s), out in zip(chunk, outs)]
    if refused:
        print(f"nanbench: {sum(refused.values())} run(s) train one at a time ("
              f"{', '.join(f'{n} of {cls}' for cls, n in refused.items())}): no update side by side gives "
              "each run its own optimizer's bits (nanbench.engines.updates)", file=sys.stderr, flush=True)
    for i in sorted(alone):
        yield [(i, execute(specs[i], device))]


def describe_error(exc: BaseException) -> str:
    last = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    where = f" at {os.path.basename(last[0].filename)}:{last[0].lineno}" if last else ""
    return f"{type(exc).__name__}: {exc}{where}".replace("\n", " ")
