"""train.precision=mixed_float16 on large-magnitude data: where float16 overflows, the run says so
(outcome inf/nan, attributed), and the loss scaler's skipped updates are counted per run
(RunResult.skipped_steps: the JSON line, the MLflow metric, runs.csv)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import compose_config
from nanbench.forensics import NAN_BIT, SKIPPED_BIT, StepSeries, Verdict
from nanbench.result import RunResult
from nanbench.spec import from_config
from nanbench.vocab import NONFINITE_OUTCOMES, RUN_METRICS, STABLE_OUTCOMES, SUMMARY_METRICS

FLOAT16_MAX = 65504.0


def _run(*overrides: str, engine: str = "fused") -> RunResult:
    from nanbench.run import execute
    spec = from_config(compose_config(["dataset=unscaled", "model=mlp", "optimizer=adam", "optimizer.lr=0.001",
                                       f"train.engine={engine}", *overrides]))
    return execute(spec)


def test_skipped_steps_counts_the_steps_flagged_skipped():
    """Planted flags: three of eight steps skipped (one of them with a NaN loss as well)."""
    spec = from_config(compose_config(["dataset=clean"]))
    flags = np.zeros(8, np.int64)
    flags[[1, 2, 6]] |= SKIPPED_BIT
    flags[6] |= NAN_BIT["loss"]
    series = StepSeries(loss=np.ones(8), grad_norm=np.ones(8), weight_norm=np.ones(8), flags=flags,
                        epoch_loss=np.ones(2), steps_per_epoch=4, initial_loss=1.0, final_loss=1.0)
    r = RunResult(spec=spec, outcome="nan", verdict=Verdict("nan", 6, "loss", None, 6, 1.0, None, 1.0),
                  series=series)
    assert r.skipped_steps == 3
    assert json.loads(r.to_json())["skipped_steps"] == 3
    assert RunResult(spec=spec, outcome="error").skipped_steps == 0  # nothing ran
    assert "skipped_steps" in RUN_METRICS and "skipped_steps" in SUMMARY_METRICS


def test_skipped_steps_is_an_mlflow_metric_and_a_runs_csv_column():
    from nanbench.summary import RUN_COLUMNS
    from nanbench.tracking.record import build_record

    r = _run("train.precision=mixed_float16", "train.steps=40")
    record = build_record(r, None, None, None, log_steps=False)
    metrics = {m.key: m.value for m in record.metrics}
    assert metrics["skipped_steps"] == r.skipped_steps > 0
    assert "skipped_steps" in RUN_COLUMNS


@pytest.mark.parametrize("engine", ["fused", "fit"])
def test_the_loss_scaler_skips_steps_on_large_data_and_float32_skips_none(engine):
    """The unscaled data's loss is ~1e8: scaled by Keras's initial 2**15 its gradients overflow
    float16, so the scaler skips updates and halves its scale until they fit; the run stays
    finite. The same run in float32 has no loss scaler and skips nothing."""
    mixed = _run("train.precision=mixed_float16", "train.steps=40", engine=engine)
    full = _run("train.steps=40", engine=engine)
    assert mixed.outcome in STABLE_OUTCOMES and full.outcome in STABLE_OUTCOMES
    assert 0 < mixed.skipped_steps < mixed.steps_run == 40
    assert full.skipped_steps == 0


@pytest.mark.parametrize("engine", ["fused", "fit"])
def test_float16_overflow_of_the_data_is_visible_and_attributed(engine):
    """Planted overflow: features up to 1e5 (> float16's largest finite 65504). In float32 the
    batch is finite (input check passes) and training is finite; in mixed_float16 the first Dense
    layer casts it to float16, where it is inf: the loss is non-finite at step 0, so the outcome
    is non-finite with source loss (the first place past the float32 input), every update is
    skipped, and the layer forensics name the first Dense layer's output."""
    over = ["dataset.scale_max=1.0e5", "train.steps=20"]
    mixed = _run("train.precision=mixed_float16", *over, engine=engine)
    full = _run(*over, engine=engine)
    assert full.outcome in STABLE_OUTCOMES and full.skipped_steps == 0
    assert mixed.outcome in NONFINITE_OUTCOMES
    assert mixed.verdict.first_nonfinite_step == 0 and mixed.verdict.first_nonfinite_source == "loss"
    assert mixed.skipped_steps == mixed.steps_run
    assert (mixed.first_nonfinite_layer, mixed.first_nonfinite_part) == ("hidden0", "output")
    from nanbench.data import load
    data = load(mixed.spec.dataset, mixed.spec.preprocess)
    assert np.all(np.isfinite(data.X)) and np.abs(data.X).max() > FLOAT16_MAX
