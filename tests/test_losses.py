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
