"""nanbench.run: outcomes and sources on planted cases, with real Keras training."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import compose_config
from nanbench.data import load
from nanbench.run import execute
from nanbench.spec import from_config

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
