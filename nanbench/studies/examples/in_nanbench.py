"""An example run inside nanbench: the document's layers, optimizer, loss and epochs through
Keras's ``Model.fit`` on nanbench's ForensicSequential, so every step's loss, gradient norm and
non-finite flags are recorded and the run is classified like any other nanbench run.

Where an example does not run as written, this is the closest faithful equivalent; every change
is listed in its ``changes`` (plus the epochs cap of a shortened run, :func:`capped`).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import replace

import numpy as np

from nanbench.result import RunResult
from nanbench.spec import OutcomeSpec, TrackingSpec
from nanbench.studies.documents import SEED, make_data
from nanbench.studies.examples.definitions import BY_KEY, Example
from nanbench.studies.examples.records import SeedRun, distinct


def keras_optimizer(arg):
    """What the code passes to compile: a string stays a string; (name, kwargs) is constructed."""
    if isinstance(arg, str):
        return arg
    import keras
    name, kwargs = arg
    return getattr(keras.optimizers, name)(**kwargs)


def capped(example: Example, epochs_cap: int | None) -> tuple[int, tuple[str, ...]]:
    """The epochs to run and the change that capping adds, if any."""
    if epochs_cap is not None and epochs_cap < example.epochs:
        return epochs_cap, (f"epochs={example.epochs} capped at {epochs_cap} (--epochs-cap)",)
    return example.epochs, ()


def run_in_nanbench(example: Example, *, seed: int = SEED, epochs_cap: int | None = None, device: str = "/CPU:0",
                    tracking: TrackingSpec | None = None) -> tuple[RunResult, list[str], list[float]]:
    """Train the example with Keras fit and nanbench's forensics; returns the result, the warnings
    Keras emitted, and Keras's epoch losses (the History, to compare with the as-written run).

    The fit engine's own fit with forensics (nanbench.engines.fit) around the example's own model:
    the whole data's loss at the initial and at the final weights (the outcome's L0 and L), and
    the dead ReLU units at the end and at the first non-finite step (nanbench.model.dead_fraction).
    ``seed`` goes to keras.utils.set_random_seed (the document's code runs with 0)."""
    import keras
    import tensorflow as tf

    from nanbench.engines.fit import ForensicSequential, fit_with_forensics
    from nanbench.forensics import classify
    from nanbench.run import describe_error, configure_tensorflow

    configure_tensorflow()
    epochs, _ = capped(example, epochs_cap)
    spec = example.spec.replace(train={"epochs": epochs, "seed": seed})
    if tracking is not None:
        spec = replace(spec, tracking=tracking)
    short_device = "gpu" if "GPU" in device else "cpu"
    t0 = time.perf_counter()
    X, y = make_data(example.data)
    data_s = time.perf_counter() - t0
    caught: list[str] = []
    try:
        with warnings.catch_warnings(record=True) as records, tf.device(device):
            warnings.simplefilter("always")
            t0 = time.perf_counter()
            keras.utils.set_random_seed(seed)
            model = ForensicSequential([keras.layers.Dense(**kw) for kw in example.layers])
            model.compile(optimizer=keras_optimizer(example.optimizer), loss=example.loss)
            Xf, yf = np.asarray(X, dtype=np.float32), np.asarray(y, dtype=np.float32).reshape(len(y), -1)
            # fit gets the arrays as the document writes them, with fit's defaults (batch 32, shuffling)
            out, history = fit_with_forensics(model, Xf, yf, started=t0, fit_x=X, fit_y=y, epochs=epochs)
        caught = distinct(f"{w.category.__name__}: {w.message}" for w in records)
    except Exception as exc:  # noqa: BLE001 - recorded as the run's error
        return (RunResult(spec=spec, outcome="error", device=short_device, error=describe_error(exc),
                          data_s=data_s, n_samples=len(X)), caught, [])
    verdict = classify(out.series, OutcomeSpec())
    result = RunResult(spec=spec, outcome=verdict.outcome, verdict=verdict, series=out.series,
                       device=short_device, data_s=data_s, build_s=out.build_s, first_step_s=out.first_step_s,
                       train_s=out.train_s, n_samples=len(X), dead_fraction=out.dead_fraction,
                       dead_fraction_at_nonfinite=out.dead_fraction_at_nonfinite)
    return result, caught, [float(v) for v in history.history.get("loss", [])]


def run_seeds(keys: list[str], seeds: list[int], *, epochs_cap: int | None = None) -> dict[str, list[dict]]:
    """Each example trained in nanbench at each seed, as SeedRun fields (not logged: the table's
    runs are seed 0's; these give the range over seeds and the seeds' share of non-finite runs)."""
    out = {}
    for key in keys:
        out[key] = [vars(SeedRun.of(s, run_in_nanbench(BY_KEY[key], seed=s, epochs_cap=epochs_cap)[0]))
                    for s in seeds]
    return out
