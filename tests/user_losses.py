"""Losses of a user's own, for loss=builder in the tests (importable as user_losses: tests/ is on
sys.path, where pytest puts the rootdir's conftest)."""

import keras
from keras import ops


def half_mse():
    """A factory returning a keras.losses.Loss: half the mean squared error."""
    class HalfMSE(keras.losses.Loss):
        def call(self, y_true, y_pred):
            return 0.5 * ops.mean(ops.square(y_pred - y_true), axis=-1)
    return HalfMSE(name="half_mse")


def abs_error(y_true, y_pred):
    """A loss function itself, of per-row values (Keras averages over the batch)."""
    return ops.mean(ops.abs(y_pred - y_true), axis=-1)


def raises():
    raise RuntimeError("the loss builder's own error")


def not_a_loss():
    return [1, 2]
