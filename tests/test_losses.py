"""nanbench.losses: Keras's cross-entropy chosen by the output, the hand-written log loss and
sqrt(mse), each checked against its formula, and where each turns non-finite."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import compose_config
from nanbench.losses import CrossEntropy, LogLossNaive, RootMeanSquaredError
from nanbench.model import build_loss
from nanbench.spec import from_config


def as_tensors(*arrays):
    return [tf.constant(np.asarray(a, np.float32)) for a in arrays]


@pytest.mark.parametrize("from_logits", [False, True])
def test_crossentropy_is_keras_binary_on_one_unit_and_sparse_categorical_on_several(from_logits):
    loss = CrossEntropy(from_logits=from_logits)
    y, p = as_tensors([[0.0], [1.0], [1.0]], [[0.2], [0.7], [0.9]])
    expected = keras.losses.BinaryCrossentropy(from_logits=from_logits)(y, p)
    assert float(loss(y, p)) == pytest.approx(float(expected), rel=1e-6)
    labels, scores = as_tensors([[2.0], [0.0]], [[0.1, 0.2, 0.7], [0.5, 0.3, 0.2]])
    expected = keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits)(labels, scores)
    assert float(loss(labels, scores)) == pytest.approx(float(expected), rel=1e-6)


def test_the_option_files_build_nanbench_losses_with_from_logits():
    spec = from_config(compose_config(["dataset=breast_cancer", "loss=crossentropy", "loss.from_logits=true"]))
    loss = build_loss(spec.loss)
    assert type(loss) is CrossEntropy and loss.from_logits is True
    spec = from_config(compose_config(["dataset=digits", "loss=log_loss_naive"]))
    assert type(build_loss(spec.loss)) is LogLossNaive
    assert type(build_loss(from_config(compose_config(["loss=rmse"])).loss)) is RootMeanSquaredError


def test_log_loss_naive_is_the_formula_and_nan_where_a_probability_rounds_to_0_or_1():
    loss = LogLossNaive()
    y, p = as_tensors([[0.0], [1.0]], [[0.2], [0.7]])
    assert float(loss(y, p)) == pytest.approx(-(np.log(0.8) + np.log(0.7)) / 2, rel=1e-6)
    labels, probs = as_tensors([[2.0], [0.0]], [[0.1, 0.2, 0.7], [0.5, 0.3, 0.2]])
    assert float(loss(labels, probs)) == pytest.approx(-(np.log(0.7) + np.log(0.5)) / 2, rel=1e-6)
    # a right answer given with certainty: the other class's 0 * log(0) is NaN (Keras's clips it)
    y, p = as_tensors([[1.0]], [[1.0]])
    assert np.isnan(float(loss(y, p)))
    assert np.isfinite(float(CrossEntropy()(y, p)))
    labels, probs = as_tensors([[0.0]], [[1.0, 0.0, 0.0]])
    assert np.isnan(float(loss(labels, probs)))


def test_a_label_no_unit_has_is_silently_zero_in_the_naive_loss():
    labels, probs = as_tensors([[3.0]], [[0.2, 0.3, 0.5]])  # label 3 of 3 classes: one_hot is all zeros
    assert float(LogLossNaive()(labels, probs)) == 0.0


def test_rmse_is_the_root_of_keras_mse_over_the_batch_and_its_gradient_is_nan_at_a_perfect_fit():
    y, p = as_tensors([[0.0], [1.0], [3.0]], [[1.0], [1.0], [1.0]])
    assert float(RootMeanSquaredError()(y, p)) == pytest.approx(np.sqrt((1 + 0 + 4) / 3), rel=1e-6)
    pred = tf.Variable(y)
    with tf.GradientTape() as tape:
        value = RootMeanSquaredError()(y, pred)
    assert float(value) == 0.0
    assert np.isnan(tape.gradient(value, pred).numpy()).all()  # 1 / (2 sqrt(0)) x 0


def test_loss_builder_imports_the_users_loss_by_its_path_and_trains_with_both_engines():
    from nanbench.losses import Builder
    from nanbench.run import check_user_model, execute
    y, p = as_tensors([[0.0], [1.0], [3.0]], [[1.0], [1.0], [1.0]])
    spec = from_config(compose_config(["loss=builder", "loss.builder=user_losses:half_mse"]))
    loss = build_loss(spec.loss)
    assert type(loss) is Builder and float(loss(y, p)) == pytest.approx(0.5 * 5 / 3, rel=1e-6)
    assert spec.factors()["loss.builder"] == "user_losses:half_mse" and spec.loss.digest  # part of its identity
    itself = build_loss(from_config(compose_config(["loss=builder", "loss.builder=user_losses:abs_error"])).loss)
    assert float(itself(y, p)) == pytest.approx(3 / 3, rel=1e-6)  # the function is the loss: mean |error|
    for engine in ("fit", "fused"):
        spec = from_config(compose_config(["loss=builder", "loss.builder=user_losses:half_mse", "train.epochs=2",
                                           f"train.engine={engine}"]))
        check_user_model(spec)
        result = execute(spec)
        assert result.error is None and result.engine == engine and np.isfinite(result.verdict.final_loss)


@pytest.mark.parametrize("path,says", [
    ("no_such_module:build", "no module named"), ("user_losses", "package.module:function"),
    ("user_losses:missing", "has no attribute"), ("user_losses:raises", "the loss builder's own error"),
    ("user_losses:not_a_loss", "returned list")])
def test_a_bad_loss_builder_is_one_line_naming_loss_builder(path, says):
    from nanbench.run import check_user_model
    from nanbench.spec import ConfigError
    with pytest.raises(ConfigError, match="^loss.builder must be") as caught:
        check_user_model(from_config(compose_config(["loss=builder", f"loss.builder={path}"])))
    assert says in str(caught.value) and "\n" not in str(caught.value)
    with pytest.raises(ConfigError, match="^loss.builder must be left out for loss mse"):
        from_config(compose_config(["+loss.builder=user_losses:half_mse"]))


def test_msle_is_keras_mean_squared_logarithmic_error():
    loss = build_loss(from_config(compose_config(["loss=msle"])).loss)
    assert type(loss) is keras.losses.MeanSquaredLogarithmicError
    y, p = as_tensors([[0.0], [9.0]], [[1.0], [1.0]])
    assert float(loss(y, p)) == pytest.approx(((np.log(1) - np.log(2)) ** 2 + (np.log(10) - np.log(2)) ** 2) / 2,
                                              rel=1e-5)


def test_mse_on_a_multiclass_model_compares_the_outputs_with_one_hot_labels_and_trains():
    from nanbench.losses import OnOneHot
    from nanbench.run import execute
    spec = from_config(compose_config(["dataset=digits", "loss=mse", "model=mlp", "train.epochs=3",
                                       "train.engine=fused"]))
    loss = build_loss(spec.loss, spec.model)
    assert type(loss) is OnOneHot and spec.model.outputs == 10 and spec.model.output_activation == "softmax"
    labels, probs = as_tensors([[2.0], [0.0]], [[0.1, 0.2, 0.7, 0, 0, 0, 0, 0, 0, 0],
                                                 [0.5, 0.3, 0.2, 0, 0, 0, 0, 0, 0, 0]])
    expected = ((0.01 + 0.04 + 0.09) + (0.25 + 0.09 + 0.04)) / 10 / 2
    assert float(loss(labels, probs)) == pytest.approx(expected, rel=1e-5)
    result = execute(spec)
    assert result.error is None and result.outcome in ("converged", "improving")
