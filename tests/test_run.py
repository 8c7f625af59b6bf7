"""nanbench.run + forensics: outcomes on planted cases, with real Keras training."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import compose_config
from nanbench.data import load
from nanbench.forensics import INF_BIT, NAN_BIT, StepSeries, classify, first_source
from nanbench.run import execute
from nanbench.spec import OutcomeSpec, from_config

ENGINES = ["fit", "fused"]


def spec_for(*overrides):
    return from_config(compose_config(list(overrides)))


@pytest.mark.parametrize("engine", ENGINES)
def test_nan_input_row_is_traced_to_the_input_at_its_batch(engine):
    spec = spec_for("dataset=nan_inputs", "dataset.nan_fraction=0.01", "train.epochs=2",
                    "train.batch_size=16", f"train.engine={engine}")
    data = load(spec.dataset, spec.preprocess)
    first_bad_row = int(np.flatnonzero(np.isnan(data.X).any(axis=1))[0])
    result = execute(spec)
    assert result.outcome == "nan"
    assert result.verdict.first_nonfinite_source == "input"
    assert result.verdict.first_nonfinite_step == first_bad_row // 16
    # steps before that batch are finite and recorded; steps not run are absent, not padded
    assert np.isfinite(result.series.loss[: first_bad_row // 16]).all()
    assert result.steps_run == len(result.series.loss) == len(result.series.flags)


@pytest.mark.parametrize("engine", ENGINES)
def test_sgd_far_above_its_stable_rate_on_doc000_outlier_overflows_to_inf_before_nan(engine):
    spec = spec_for("dataset=doc000_outlier", "optimizer=sgd", "optimizer.lr=0.01", "train.epochs=30",
                    f"train.engine={engine}")
    result = execute(spec)
    v = result.verdict
    assert result.outcome == "nan"
    assert v.first_inf_step is not None and v.first_nan_step is not None
    assert v.first_inf_step < v.first_nan_step
    assert v.first_nonfinite_source == "loss"  # the squared error overflows first
    # training stops once the weights are NaN: no invented steps after that
    assert result.steps_run == v.first_nan_step + 1 or result.steps_run == 30


@pytest.mark.parametrize("engine", ENGINES)
def test_scaled_clean_problem_converges(engine):
    spec = spec_for("dataset=clean", "preprocess=standard", "optimizer=sgd", "optimizer.lr=0.05",
                    "train.epochs=10", f"train.engine={engine}")
    result = execute(spec)
    assert result.outcome == "converged"
    assert result.verdict.first_nonfinite_step is None and result.verdict.final_loss < 0.1


def test_same_config_and_seed_give_identical_loss_series():
    spec = spec_for("model=mlp", "model.dropout=0.2", "train.shuffle=true", "train.epochs=3")
    a, b = execute(spec), execute(spec)
    assert np.array_equal(a.series.loss, b.series.loss)
    c = execute(spec.replace(train={"seed": 1}))
    assert not np.array_equal(a.series.loss, c.series.loss)


def test_a_bug_during_training_is_an_error_outcome_not_a_crash(monkeypatch):
    import nanbench.engines

    def broken(*args, **kwargs):
        raise RuntimeError("planted bug")

    monkeypatch.setattr(nanbench.engines, "train", broken)
    result = execute(spec_for("dataset=doc000_clean"))
    assert result.outcome == "error" and "planted bug" in result.error and result.series is None


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
