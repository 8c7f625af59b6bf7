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
- :class:`Builder`: the user's own loss (``loss=builder``, ``loss.builder=package.module:function``),
  imported and built when the run is built (:func:`user_loss`).

Keras's own losses need no class here: ``loss=msle`` names ``keras.losses.MeanSquaredLogarithmicError``.
"""

from __future__ import annotations

import functools
import importlib
import inspect

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


class OnOneHot(keras.losses.Loss):
    """A loss that compares values (mse, mae, huber, msle, ...) applied to a multiclass model's
    outputs: the integer labels (y's one column) one-hot encoded first, so that the loss compares
    each output unit with 0 or 1, as a user who writes MSE on one-hot labels does. A label no unit
    has encodes as all zeros."""

    def __init__(self, base: keras.losses.Loss, classes: int, name: str | None = None, **kwargs):
        super().__init__(name=name or base.name, **kwargs)
        self.base, self.classes = base, int(classes)

    def _one_hot(self, y_true, y_pred):
        if y_true.shape[-1] == self.classes and self.classes > 1:  # already one column per class
            return ops.cast(y_true, y_pred.dtype)
        labels = ops.cast(ops.reshape(y_true, ops.shape(y_true)[:-1]), "int32")
        return ops.one_hot(labels, self.classes, dtype=y_pred.dtype)

    def __call__(self, y_true, y_pred, sample_weight=None):
        return self.base(self._one_hot(y_true, y_pred), y_pred, sample_weight=sample_weight)

    def call(self, y_true, y_pred):
        return self.base.call(self._one_hot(y_true, y_pred), y_pred)


def _is_loss_function(fn) -> bool:
    """Whether `fn` is itself a loss function ``fn(y_true, y_pred)`` (two required positional
    parameters) rather than a function that returns a loss."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    required = [p for p in params if p.default is p.empty
                and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(required) == 2


@functools.lru_cache(maxsize=16)
def user_loss(value: str) -> keras.losses.Loss:
    """The Keras loss ``loss.builder`` names: ``package.module:function`` is imported and called
    with no arguments; it returns a ``keras.losses.Loss`` (used as it is) or a function
    ``f(y_true, y_pred)`` of per-row values (averaged over the batch, as ``compile`` does with a
    function). A function that itself takes (y_true, y_pred) is the loss.
    Anything else (a module that does not import, a missing name, a call that raises, a result that
    is no loss) is the one-line ConfigError naming loss.builder. Cached per path (a module is imported once)."""
    from nanbench.user_model import _one_line, split_builder
    from nanbench.validate import ConfigError
    module, name = split_builder(value, "loss.builder")
    try:
        fn = getattr(importlib.import_module(module), name)
    except Exception as exc:  # noqa: BLE001 - the user's module: any error of its import
        raise ConfigError("loss.builder", "package.module:function of an importable module",
                          f"{value}: {_one_line(exc)}") from None
    if not callable(fn):
        raise ConfigError("loss.builder", "package.module:function naming a function", value)
    if isinstance(fn, keras.losses.Loss) or _is_loss_function(fn):
        loss = fn
    else:
        try:
            loss = fn()
        except Exception as exc:  # noqa: BLE001 - the user's code
            raise ConfigError("loss.builder", "a function that returns a Keras loss when called with no arguments",
                              f"{value} raised {_one_line(exc)}") from None
    if isinstance(loss, keras.losses.Loss):
        return loss
    if callable(loss) and not isinstance(loss, type):
        return _PerRow(loss, name=name)
    raise ConfigError("loss.builder", "a function returning a Keras loss (a keras.losses.Loss or a function of "
                      "y_true, y_pred)", f"{value} returned {type(loss).__name__}")


class _PerRow(keras.losses.Loss):
    """A function of per-row values as a Keras loss (Keras's own reduction: the mean over the batch)."""

    def __init__(self, fn, name: str):
        super().__init__(name=name)
        self.fn = fn

    def call(self, y_true, y_pred):
        return self.fn(y_true, y_pred)


class Builder(keras.losses.Loss):
    """The user's own loss (:func:`user_loss`), as one Keras loss: its ``__call__`` and per-row
    ``call`` are the user's loss's own."""

    def __init__(self, builder: str | None = None, name: str = "builder", **kwargs):
        super().__init__(name=name, **kwargs)
        from nanbench.validate import ConfigError
        if builder is None:
            raise ConfigError("loss.builder", "package.module:function (a function returning a Keras loss)", None)
        self.builder = builder
        self.loss = user_loss(builder)

    def __call__(self, y_true, y_pred, sample_weight=None):
        return self.loss(y_true, y_pred, sample_weight=sample_weight)

    def call(self, y_true, y_pred):
        return self.loss.call(y_true, y_pred)

    def get_config(self) -> dict:
        return {**super().get_config(), "builder": self.builder}


class Compiled(keras.losses.Loss):
    """The loss a saved model was compiled with (``loss=compiled``, what ``loss=auto`` resolves to
    for a ``model=keras`` file saved compiled): ``compiled`` is the JSON of
    nanbench.user_loss.compiled_loss. A name (``"categorical_crossentropy"``) is Keras's function
    of that name averaged over the batch, as ``compile`` does; a serialized class is deserialized by
    Keras (built-in classes only: a custom one is the one-line error asking for loss=builder); a
    single loss weight multiplies it, as ``compile(loss_weights=...)`` does for one output."""

    def __init__(self, compiled: str | None = None, name: str = "compiled", **kwargs):
        import json
        from nanbench.user_model import _one_line
        from nanbench.validate import ConfigError
        super().__init__(name=name, **kwargs)
        self.compiled = compiled
        value = json.loads(compiled or "null") or {}
        loss, weights = value.get("loss"), value.get("loss_weights")
        try:
            self.loss = (_PerRow(keras.losses.get(loss), name=loss) if isinstance(loss, str)
                         else keras.losses.deserialize(loss))
        except Exception as exc:  # noqa: BLE001 - a custom loss class Keras cannot rebuild safely
            raise ConfigError("loss.name", "a loss option (compiled takes a built-in Keras loss; your own: "
                              "loss=builder)", f"compiled {loss}: {_one_line(exc)}") from None
        if isinstance(weights, dict):
            weights = list(weights.values())
        if isinstance(weights, list):
            if len(weights) != 1:
                raise ConfigError("loss.name", "a loss option (compiled takes one loss weight: one output)",
                                  f"compiled with loss_weights {weights}")
            weights = weights[0]
        self.weight = 1.0 if weights is None else float(weights)

    def __call__(self, y_true, y_pred, sample_weight=None):
        value = self.loss(y_true, y_pred, sample_weight=sample_weight)
        return value if self.weight == 1.0 else value * self.weight

    def call(self, y_true, y_pred):
        value = self.loss.call(y_true, y_pred)
        return value if self.weight == 1.0 else value * self.weight

    def get_config(self) -> dict:
        return {**super().get_config(), "compiled": self.compiled}
