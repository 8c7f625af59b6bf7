"""nanbench.run.execute on the classification, normalization, loss and sequence factors, with
both engines: planted cases whose outcome and first non-finite source are known, and the two
engines agreeing on every new model (the real configs, composed and shrunk)."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import compose_config
from nanbench.run import execute
from nanbench.spec import from_config
from nanbench.vocab import STABLE_OUTCOMES

ENGINES = ["fit", "fused"]


def run(engine: str, *overrides: str, epochs: int = 2):
    return execute(from_config(compose_config([*overrides, f"train.epochs={epochs}", f"train.engine={engine}"])))


@pytest.mark.parametrize("engine", ENGINES)
def test_manual_standard_on_a_constant_feature_is_nan_in_the_input_where_sklearn_is_finite(engine):
    data = ["dataset=constant_feature", "dataset.n_samples=64"]
    manual = run(engine, *data, "preprocess=manual_standard")
    assert manual.outcome == "nan" and manual.verdict.first_nonfinite_source == "input"
    assert manual.verdict.first_nonfinite_step == 0
    assert run(engine, *data, "preprocess=standard").outcome in STABLE_OUTCOMES


@pytest.mark.parametrize("engine", ENGINES)
def test_log_loss_naive_on_separable_data_turns_nan_where_crossentropy_from_logits_stays_finite(engine):
    fast = ["dataset=separable", "optimizer=sgd", "optimizer.lr=10"]
    naive = run(engine, *fast, "loss=log_loss_naive", epochs=5)
    assert naive.outcome == "nan" and naive.verdict.first_nonfinite_source == "loss"
    keras_ce = run(engine, *fast, "loss=crossentropy", "loss.from_logits=true", epochs=5)
    assert keras_ce.outcome in STABLE_OUTCOMES and np.isfinite(keras_ce.series.loss).all()


@pytest.mark.parametrize("engine", ENGINES)
def test_rmse_at_a_perfect_fit_has_a_nan_gradient_where_mse_is_finite(engine):
    # one constant column and a noiseless target, both min-max scaled to exactly 0: the initial
    # model (zero bias) fits it perfectly, so sqrt's gradient 1 / (2 sqrt(0)) meets a zero residual
    perfect = ["dataset=constant_feature", "dataset.n_samples=32", "dataset.n_features=1", "dataset.noise=0",
               "preprocess=minmax", "preprocess.scale_target=true"]
    rmse = run(engine, *perfect, "loss=rmse")
    assert rmse.outcome == "nan" and rmse.verdict.first_nonfinite_source == "gradients"
    assert rmse.verdict.first_nonfinite_step == 0 and rmse.series.loss[0] == 0.0
    assert run(engine, *perfect, "loss=mse").outcome == "converged"


@pytest.mark.parametrize("engine", ENGINES)
def test_out_of_range_labels_are_an_error_with_tensorflows_message_on_the_cpu(engine):
    noisy = ["dataset=digits", "dataset.label_noise=out_of_range", "preprocess=standard"]
    result = run(engine, *noisy, "loss=crossentropy")
    # with op determinism on (nanbench's default), TensorFlow's sparse cross-entropy gathers the
    # label's log-probability, and a CPU gather refuses an index past the last class
    assert result.outcome == "error" and "InvalidArgumentError" in result.error
    assert "is not in [0, 10)" in result.error and "\n" not in result.error
    # the hand-written loss one-hot encodes the label to all zeros: no error, no signal
    assert run(engine, *noisy, "loss=log_loss_naive").outcome != "error"


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("dataset", ["breast_cancer", "digits"])
def test_the_bundled_classification_sets_train_finite_with_a_small_learning_rate(engine, dataset):
    result = run(engine, f"dataset={dataset}", "preprocess=standard", "loss=crossentropy", "model=mlp",
                 "model.width=16", "optimizer=adam", "optimizer.lr=1e-3")
    assert result.outcome in ("converged", "improving") and np.isfinite(result.series.loss).all()
    assert result.verdict.final_loss < result.verdict.initial_loss


SEQUENCES = ["dataset=sequences", "dataset.n_samples=48", "dataset.seq_len=6", "dataset.n_features=2",
             "model.units=4", "optimizer.lr=0.01"]
NEW_MODELS = {
    # 33 rows in batches of 32: every epoch ends on a batch of one row (BatchNorm's variance is 0)
    "mlp_batchnorm, a final batch of one row": ["dataset=separable", "dataset.n_samples=33", "loss=crossentropy",
                                               "model=mlp_batchnorm", "model.width=8", "train.batch_size=32"],
    "lstm, regression": [*SEQUENCES, "model=lstm"],
    "gru, three classes": [*SEQUENCES, "model=gru", "dataset.target=classification", "dataset.n_classes=3",
                           "loss=crossentropy", "loss.from_logits=true"],
    "embedding, binary": ["dataset=token_sequences", "dataset.n_samples=48", "dataset.seq_len=6", "model=embedding",
                          "model.units=4", "dataset.target=classification", "loss=log_loss_naive"],
}


@pytest.mark.parametrize("case", sorted(NEW_MODELS))
def test_both_engines_train_each_new_model_alike(case):
    fit, fused = (run(engine, *NEW_MODELS[case]) for engine in ENGINES)
    assert fit.outcome == fused.outcome and fit.outcome in STABLE_OUTCOMES, (fit.error, fused.error)
    assert fit.steps_run == fused.steps_run == 2 * fit.series.steps_per_epoch
    np.testing.assert_allclose(fused.series.epoch_loss, fit.series.epoch_loss, rtol=1e-5)
