"""The losses nanbench adds to Keras's: Keras's own cross-entropy chosen by the task, and the
two hand-written losses people report NaN from. Each is a ``keras.losses.Loss`` that an option
file names by ``class:`` (conf/loss/crossentropy.yaml, log_loss_naive.yaml, rmse.yaml), like
Keras's classes.

- :class:`CrossEntropy`: Keras's ``BinaryCrossentropy`` on one output unit (binary task),
  ``SparseCategoricalCrossentropy`` on several (multiclass, integer labels), with ``from_logits``.
- :class:`LogLossNaive`: ``-mean(sum(y * log(p)))`` on sigmoid / softmax probabilities, as written
  by hand: no clipping, no epsilon, so a probability that rounds to 0 (or to 1, for the other
  class of a sigmoid) gives ``log(0) = -inf`` and ``0 * -inf = NaN``.
- :class:`RootMeanSquaredError`: ``sqrt(mse)``, whose gradient ``1 / (2 sqrt(mse))`` is infinite
  when the fit is perfect (mse = 0; times a zero residual: NaN).
"""

from __future__ import annotations

import keras
from keras import ops


class CrossEntropy(keras.losses.Loss):
    """Keras's cross-entropy for the model's output: ``BinaryCrossentropy`` for one unit,
    ``SparseCategoricalCrossentropy`` for one unit per class (labels are integers in y's one
    column). This class only picks; the arithmetic, clipping included, is Keras's."""

    def __init__(self, from_logits: bool = False, name: str = "crossentropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.from_logits = bool(from_logits)
        self.binary = keras.losses.BinaryCrossentropy(from_logits=self.from_logits)
        self.sparse = keras.losses.SparseCategoricalCrossentropy(from_logits=self.from_logits)

    def _keras_loss(self, y_pred) -> keras.losses.Loss:
        return self.binary if y_pred.shape[-1] == 1 else self.sparse

    def __call__(self, y_true, y_pred, sample_weight=None):
        return self._keras_loss(y_pred)(y_true, y_pred, sample_weight=sample_weight)

    def call(self, y_true, y_pred):
        return self._keras_loss(y_pred).call(y_true, y_pred)

    def get_config(self) -> dict:
        return {**super().get_config(), "from_logits": self.from_logits}


class LogLossNaive(keras.losses.Loss):
    """The hand-written log loss ``-mean(sum(y * log(p)))``, summed over classes and averaged over
    the batch, on the model's probabilities (sigmoid or softmax output), with nothing clipped.
    One output unit is the two classes (1 - p, p) with labels (1 - y, y); several units are
    the classes with integer labels one-hot encoded (a label no unit has encodes as all zeros)."""

    def __init__(self, name: str = "log_loss_naive", **kwargs):
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        if y_pred.shape[-1] == 1:
            y = ops.reshape(y_true, ops.shape(y_pred))
            return -ops.sum(y * ops.log(y_pred) + (1 - y) * ops.log(1 - y_pred), axis=-1)
        labels = ops.cast(ops.reshape(y_true, [-1]), "int32")
        y = ops.one_hot(labels, y_pred.shape[-1], dtype=y_pred.dtype)
        return -ops.sum(y * ops.log(y_pred), axis=-1)


class RootMeanSquaredError(keras.losses.Loss):
    """``sqrt`` of Keras's mean squared error over the batch (not a mean of per-row roots, which
    would be the mean absolute error for one output)."""

    def __init__(self, name: str = "rmse", **kwargs):
        super().__init__(name=name, **kwargs)
        self.mse = keras.losses.MeanSquaredError()

    def __call__(self, y_true, y_pred, sample_weight=None):
        return ops.sqrt(self.mse(y_true, y_pred, sample_weight=sample_weight))

    def call(self, y_true, y_pred):
        return ops.sqrt(self.mse.call(y_true, y_pred))
