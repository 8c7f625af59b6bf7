"""nanbench.forensics: step flags, the first source, the outcome rules and dead units, on series
whose answers are known (no training: these are the rules both engines' series go through)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from nanbench.forensics import INF_BIT, NAN_BIT, SKIPPED_BIT, StepSeries, classify, first_source, step_flags
from nanbench.spec import OutcomeSpec
from nanbench.vocab import OUTCOMES


def _series(loss, flags, initial=None, final=None):
    """A series whose whole-data losses are its first and last batch losses unless given."""
    loss = np.asarray(loss, dtype=float)
    return StepSeries(loss=loss, grad_norm=np.ones_like(loss), weight_norm=np.ones_like(loss),
                      flags=np.asarray(flags), epoch_loss=loss, steps_per_epoch=1,
                      initial_loss=loss[0] if initial is None else initial,
                      final_loss=loss[-1] if final is None else final)


def test_classification_thresholds():
    spec = OutcomeSpec(diverge_factor=10, converge_ratio=0.1, converge_abs=1e-3, improve_fraction=0.1)
    assert classify(_series([1.0, 0.5, 0.05], [0, 0, 0]), spec).outcome == "converged"
    assert classify(_series([1.0, 0.9, 0.5], [0, 0, 0]), spec).outcome == "improving"
    assert classify(_series([1.0, 0.9, 0.95], [0, 0, 0]), spec).outcome == "stalled"
    assert classify(_series([1.0, 1.2, 1.5], [0, 0, 0]), spec).outcome == "stalled"
    assert classify(_series([1.0, 5.0, 20.0], [0, 0, 0]), spec).outcome == "diverged"
    assert classify(_series([1e-4, 1e-4, 5e-4], [0, 0, 0]), spec).outcome == "converged"
    inf = classify(_series([1.0, np.inf, np.inf], [0, INF_BIT["loss"], INF_BIT["loss"]]), spec)
    assert inf.outcome == "inf" and inf.first_inf_step == 1 and inf.first_nan_step is None
    nan = classify(_series([1.0, np.inf, np.nan], [0, INF_BIT["loss"], NAN_BIT["loss"] | NAN_BIT["weights"]]), spec)
    assert nan.outcome == "nan" and (nan.first_inf_step, nan.first_nan_step) == (1, 2)


def test_outcome_uses_the_whole_data_loss_not_the_first_batch():
    # the first batch held no outlier (batch loss 12), the whole data's loss starts at 40,000 and
    # halves to 20,000: improving, whatever the epoch means and the first batch say
    spec = OutcomeSpec()
    run = classify(_series([12.0, 30_000.0, 40_000.0], [0, 0, 0], initial=40_000.0, final=20_000.0), spec)
    assert run.outcome == "improving" and (run.initial_loss, run.final_loss) == (40_000.0, 20_000.0)
    assert classify(_series([12.0, 9.0, 8.0], [0, 0, 0], initial=10.0, final=200.0), spec).outcome == "diverged"
    # bouncing at the edge of stability: the last epoch's loss is 80x the start, the final step lands low
    assert classify(_series([7855.0, 637_702.0, 6934.0, 637_702.0], [0] * 4, initial=7855.0, final=6934.0),
                    spec).outcome == "diverged"


def test_a_non_finite_whole_data_loss_after_finite_steps_is_a_loss_failure_after_the_last_step():
    v = classify(_series([1.0, 2.0], [0, 0], initial=1.0, final=np.inf), OutcomeSpec())
    assert (v.outcome, v.first_nonfinite_source, v.first_nonfinite_step, v.first_inf_step) == ("inf", "loss", 2, 2)


def test_dead_fraction_counts_relu_units_silent_on_every_row():
    from nanbench.forensics import dead_fraction
    X = np.array([[1.0, 2.0], [3.0, -1.0], [np.nan, 0.0]])  # the NaN row is left out
    kernel = np.array([[1.0, -1.0, 0.0], [0.0, -1.0, 0.0]])
    bias = np.array([0.0, -10.0, -1.0])  # unit 0 passes, units 1 and 2 are 0 on every row
    head = (np.ones((3, 1)), np.zeros(1), "linear")
    assert dead_fraction(X, [(kernel, bias, "relu"), head]) == 2 / 3
    assert dead_fraction(X, [(kernel, bias, "tanh"), head]) is None  # no ReLU units
    assert dead_fraction(X, [(kernel * np.nan, bias, "relu"), head]) is None


def test_first_source_follows_data_flow_order():
    assert first_source(NAN_BIT["weights"] | INF_BIT["gradients"]) == "gradients"
    assert first_source(INF_BIT["input"] | NAN_BIT["loss"]) == "input"
    assert first_source(0) is None


def test_step_flags_mark_each_source_and_the_loss_scalers_skips():
    f = step_flags([1.0, np.nan, 1.0], [1.0, 1.0, np.inf], [1.0, np.inf, np.nan], [1.0, 1.0, 1.0])
    assert f[0] == 0
    assert f[1] == NAN_BIT["input"] | INF_BIT["gradients"]
    assert f[2] == INF_BIT["loss"] | NAN_BIT["gradients"]
    scaled = step_flags([1.0], [1.0], [np.inf], [1.0], loss_scaled=True)
    assert scaled[0] == SKIPPED_BIT  # overflowing scaled gradients: a skipped step, not a failure
    assert classify(_series([1.0], scaled), OutcomeSpec()).outcome in OUTCOMES[:3]


def test_every_outcome_classify_returns_is_in_the_vocabulary():
    spec = OutcomeSpec()
    cases = [([1.0, 0.01], [0, 0]), ([1.0, 0.8], [0, 0]), ([1.0, 1.0], [0, 0]), ([1.0, 50.0], [0, 0]),
             ([1.0, np.inf], [0, INF_BIT["loss"]]), ([1.0, np.nan], [0, NAN_BIT["loss"]])]
    assert [classify(_series(*c), spec).outcome for c in cases] == list(OUTCOMES[:6])


@pytest.mark.parametrize("overrides", [
    ("dataset=doc000_clean", "preprocess=standard", "train.epochs=30"),                 # finite
    ("dataset=nan_inputs", "train.epochs=2", "train.batch_size=16"),                      # NaN at the input
    ("dataset=doc000_outlier", "optimizer=sgd", "train.epochs=20"),                      # overflows
    ("dataset=clean", "optimizer=sgd", "optimizer.lr=0.5", "train.epochs=3", "train.batch_size=100"),  # last batch partial
], ids=["finite", "nan-input", "overflow", "partial-batch"])
def test_a_recorded_runs_outcome_is_re_derived_from_its_steps_csv_and_metrics(overrides, store):
    """What MLflow holds of a run (steps.csv and two metrics) is enough to classify it again."""
    from pathlib import Path
    from urllib.request import url2pathname

    from mlflow.tracking import MlflowClient

    from conftest import compose_config
    from nanbench.forensics import series_from_steps_csv
    from nanbench.run import execute
    from nanbench.spec import from_config
    from nanbench.tracking import Tracker

    spec = from_config(compose_config([*overrides, "train.engine=fused", f"tracking.uri={store}"]))
    result = execute(spec)
    run_id = Tracker(spec.tracking).log(result)
    run = MlflowClient(store).get_run(run_id)
    text = (Path(url2pathname(run.info.artifact_uri[len("file://"):])) / "steps.csv").read_text()
    m = run.data.metrics
    series = series_from_steps_csv(text, m.get("initial_loss"), m.get("final_loss"))
    again = classify(series, spec.outcome)
    assert again == result.verdict
    assert again.outcome == run.data.tags["outcome"]
    np.testing.assert_array_equal(series.epoch_loss, result.series.epoch_loss)


def _epochs(epoch_full, initial=10.0, final=None, per_epoch=4):
    steps = per_epoch * len(epoch_full)
    return StepSeries(loss=np.ones(steps), grad_norm=np.ones(steps), weight_norm=np.ones(steps),
                      flags=np.zeros(steps, dtype=np.int64), epoch_loss=np.asarray(epoch_full, dtype=float),
                      steps_per_epoch=per_epoch, initial_loss=initial,
                      final_loss=epoch_full[-1] if final is None else final,
                      epoch_full_loss=np.asarray(epoch_full, dtype=float))


def test_steps_to_target_is_the_first_epoch_end_at_target_ratio_of_the_initial_loss():
    from nanbench.forensics import steps_to_target
    # L0 = 10, target 0.1 x 10 = 1: first reached at the end of epoch 2 (4 steps an epoch) = 12 steps
    assert steps_to_target(_epochs([5.0, 2.0, 1.0, 0.5]), 0.1) == 12
    assert steps_to_target(_epochs([5.0, 2.0, 1.0, 0.5]), 0.3) == 8   # 2.0 <= 3.0
    assert steps_to_target(_epochs([5.0, 2.0, 1.5]), 0.1) is None      # never
    assert steps_to_target(_epochs([0.5, np.nan]), 0.1) == 4          # reached, then NaN: it was reached
    assert steps_to_target(_epochs([5.0], initial=np.nan), 0.1) is None
    # a recorded run without epoch-end losses: only the final loss counts, at the last step
    old = dataclasses.replace(_epochs([5.0, 0.5]), epoch_full_loss=np.zeros(0))
    assert steps_to_target(old, 0.1) == 8
    verdict = classify(_epochs([5.0, 2.0, 1.0, 0.5]), OutcomeSpec(target_ratio=0.2))
    assert verdict.steps_to_target == 8 and verdict.outcome == "converged"


@pytest.mark.parametrize("initial,outcome", [(np.nan, "nan"), (np.inf, "inf")])
def test_a_non_finite_initial_loss_is_non_finite_at_step_0_never_stalled(initial, outcome):
    # every training step finite (training-mode BatchNorm, say), the first forward pass over the
    # whole data (inference mode) is not: the run failed before any update
    v = classify(_series([0.7, 0.6, 0.6], [0, 0, 0], initial=initial, final=0.6), OutcomeSpec())
    assert (v.outcome, v.first_nonfinite_step, v.first_nonfinite_source) == (outcome, 0, "loss")
    assert (v.first_nan_step if outcome == "nan" else v.first_inf_step) == 0
    assert v.steps_to_target is None
    # NaN in the data explains the initial loss: the run is non-finite at the batch holding it
    v = classify(_series([0.5, np.nan], [0, NAN_BIT["input"] | NAN_BIT["loss"]], initial=np.nan, final=np.nan),
                 OutcomeSpec())
    assert (v.outcome, v.first_nonfinite_step, v.first_nonfinite_source) == ("nan", 1, "input")


def test_dead_fraction_passes_through_batchnorm_in_inference_form():
    from nanbench.forensics import dead_fraction
    X = np.array([[1.0], [2.0], [3.0]])
    hidden = (np.array([[1.0, -1.0]]), np.zeros(2), "relu")      # unit 1 is 0 on every row: dead
    # BatchNorm after it: unit 0 (1, 2, 3) -> (x - 2) / 1 -> (-1, 0, 1); unit 1 stays 0 -> 0 * 1 + 0
    norm = (np.array([1.0, 1.0]), np.array([-2.0, 0.0]), "batchnorm")
    second = (np.eye(2), np.zeros(2), "relu")                    # unit 0 alive on row 3, unit 1 dead
    head = (np.ones((2, 1)), np.zeros(1), "linear")
    assert dead_fraction(X, [hidden, norm, second, head]) == 2 / 4
    # a shift that makes unit 0 negative on every row kills it after the norm
    assert dead_fraction(X, [hidden, (np.ones(2), np.array([-5.0, 0.0]), "batchnorm"), second, head]) == 3 / 4
