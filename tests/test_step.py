"""nanbench.step: the shared step is Keras's own training step, and its sums are exact."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import compose_config
from nanbench.model import build_loss, build_model, build_optimizer
from nanbench.spec import from_config
from nanbench.step import flat, forensic_step, full_loss, keras_step, sum_of_squares, sums_of_squares


def compiled(*overrides, n_features=3):
    spec = from_config(compose_config(["model=mlp", "model.width=4", "model.depth=1", *overrides]))
    model = build_model(spec.model, n_features, seed=0)
    opt = build_optimizer(spec.optimizer, spec.clipping)
    model.compile(optimizer=opt, loss=build_loss(spec.loss))
    return model, opt


def test_sums_of_squares_are_float64_over_every_tensor():
    a, b = np.full((2, 2), 3e19, np.float32), np.array([1.0, 2.0], np.float32)
    assert float(sum_of_squares([a, b])) == pytest.approx(4 * 9e38 + 5.0)  # no float32 overflow
    assert flat([a, b]).shape == (6,)
    rows = tf.constant([[1.0, 2.0, 3.0, 4.0], [0.0, 1.0, 0.0, 2.0]])
    np.testing.assert_allclose(sums_of_squares(rows, 2).numpy(), [[5.0, 25.0], [1.0, 4.0]])


def test_keras_step_is_the_update_fit_makes():
    x = np.random.default_rng(0).standard_normal((8, 3)).astype(np.float32)
    y = x.sum(axis=1, keepdims=True)
    ours, opt = compiled("optimizer=sgd", "optimizer.lr=0.1")
    theirs, _ = compiled("optimizer=sgd", "optimizer.lr=0.1")
    keras_step(ours, opt, tf.constant(x), tf.constant(y))
    theirs.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    for w1, w2 in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(w1, w2, rtol=1e-6, atol=1e-7)


def test_forensic_step_reports_the_batch_the_gradients_and_the_weights_after_the_update():
    x = np.ones((4, 3), np.float32)
    y = np.full((4, 1), 2.0, np.float32)
    model, opt = compiled("optimizer=sgd", "optimizer.lr=0.01")
    out = forensic_step(model, opt, tf.constant(x), tf.constant(y))
    assert float(out["input_sq"]) == pytest.approx(4 * 3 + 4 * 4)
    weights = model.get_weights()
    assert float(out["weight_sq"]) == pytest.approx(sum(float(np.sum(np.square(w.astype(np.float64)))) for w in weights),
                                                     rel=1e-6)
    assert float(out["grad_sq"]) > 0 and np.isfinite(float(out["loss"]))


def test_full_loss_is_the_inference_loss_over_all_rows():
    x = np.random.default_rng(1).standard_normal((10, 3)).astype(np.float32)
    y = np.zeros((10, 1), np.float32)
    model, _ = compiled("model.dropout=0.5")
    expected = float(np.mean(np.square(model.predict(x, verbose=0) - y)))  # dropout off in inference
    assert float(full_loss(model, tf.constant(x), tf.constant(y))) == pytest.approx(expected, rel=1e-5)
    assert isinstance(model.optimizer, keras.optimizers.Optimizer)
