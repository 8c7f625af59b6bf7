"""The reference engine: Keras ``Model.fit``, with Keras's train_step plus forensic checks.

The model is a ``keras.Sequential`` whose ``train_step`` is the TensorFlow backend's own step
(see nanbench.step) that also returns the step's forensic numbers; a callback collects them and
stops training once the weights hold NaN (every later step would be NaN too).
"""

from __future__ import annotations

import time

import keras
import numpy as np
import tensorflow as tf

from nanbench.engines.base import EngineOutput
from nanbench.forensics import TARGET_GATE, StepSeries, epoch_ends_from_steps, step_flags
from nanbench.locate import Locator, layer_grad_norms
from nanbench.model import (build_loss, build_model, build_optimizer, dead_fraction, has_relu_units,
                            same_in_training)
from nanbench.step import forensic_step, full_loss, loss_scaled


class ForensicTrainStep:
    """Keras's train_step (nanbench.step) that also reports per-step loss and forensic sums."""

    def train_step(self, data):
        x, y = data[0], data[1]
        out = forensic_step(self, self.optimizer, x, y)
        # As Keras's own train_step: the epoch loss is the batch-size-weighted mean of batch losses.
        self._loss_tracker.update_state(out["loss"], sample_weight=tf.shape(x)[0])
        # the batch too: the callback keeps the first non-finite step's, for nanbench.locate's replay
        return {"loss": self._loss_tracker.result(), "step_loss": out["loss"], "input_sq": out["input_sq"],
                "grad_sq": out["grad_sq"], "weight_sq": out["weight_sq"],
                "variable_grad_sq": out["variable_grad_sq"], "batch_x": x, "batch_y": y}


class ForensicSequential(ForensicTrainStep, keras.Sequential):
    """A Sequential model whose fit also reports per-step loss and forensic sums (nanbench.step)."""


_FORENSIC: dict[type, type] = {}


def forensic(model: keras.Model) -> keras.Model:
    """A user's model (any keras.Model: Sequential, functional, subclassed) with ForensicTrainStep's
    train_step: its class becomes a subclass of its own class that adds only that step, so its
    layers, call and loss stay the user's and Keras's, and fit reports what ForensicSequential does."""
    cls = type(model)
    if not issubclass(cls, ForensicTrainStep):
        if cls not in _FORENSIC:
            _FORENSIC[cls] = type(f"Forensic{cls.__name__}", (ForensicTrainStep, cls), {})
        object.__setattr__(model, "__class__", _FORENSIC[cls])
    return model


class ForensicRecorder(keras.callbacks.Callback):
    """Collects ForensicSequential's per-step numbers during fit; stops once weights hold NaN.

    It also keeps what nanbench.locate replays of the first non-finite step: the weights it
    started from (a copy before each step until one is non-finite), its batch and the weights it
    left."""

    def __init__(self, X=None, y=None, steps_are_epoch_ends: bool = False, target: float = float("nan")):
        super().__init__()
        self.X, self.y = X, y  # the whole data, for the loss at each epoch's end (None: not measured)
        # one step an epoch on a model the same in training and inference mode: the next step's
        # loss is that loss (nanbench.forensics.epoch_ends_from_steps), no evaluation of its own
        self.steps_are_epoch_ends = steps_are_epoch_ends
        self.target = target  # outcome.target_ratio x the initial loss (forensics.TARGET_GATE's gate)
        self.reached = False
        self.epoch_full_loss: list[float] = []
        self.rows: list[tuple[float, float, float, float]] = []
        self.variable_sq: list[np.ndarray] = []
        self.epoch_loss: list[float] = []
        self.first_step_end: float | None = None
        self.before: list[np.ndarray] | None = None
        self.weights_at_nonfinite: list[np.ndarray] | None = None
        self.step_at_nonfinite: tuple[list[np.ndarray], np.ndarray, np.ndarray] | None = None  # left, x, y

    def on_train_batch_begin(self, batch, logs=None):
        if self.weights_at_nonfinite is None:
            self.before = [np.array(w.numpy()) for w in self.model.trainable_weights]

    def on_train_batch_end(self, batch, logs=None):
        if self.first_step_end is None:
            self.first_step_end = time.perf_counter()
        row = tuple(float(np.asarray(logs[k])) for k in ("input_sq", "step_loss", "grad_sq", "weight_sq"))
        self.rows.append(row)
        self.variable_sq.append(np.asarray(logs["variable_grad_sq"], dtype=np.float64))
        checked = row if not loss_scaled(self.model.optimizer) else (row[0], row[1], row[3])
        if self.before is not None and self.weights_at_nonfinite is None and not np.all(np.isfinite(checked)):
            self.weights_at_nonfinite = self.before
            self.step_at_nonfinite = ([np.array(w.numpy()) for w in self.model.trainable_weights],
                                      np.asarray(logs["batch_x"]), np.asarray(logs["batch_y"]))
        if np.isnan(row[3]):  # NaN weights: every later step is NaN too
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        self.epoch_loss.append(float(np.asarray(logs["loss"])))
        if self.X is None or self.steps_are_epoch_ends:
            return
        # the whole data's loss (time to target), where the gate opens as the fused engine's does:
        # its float32 epoch mean and last batch loss against TARGET_GATE x the float32 target
        mean, last = np.float32(np.asarray(logs["loss"])), np.float32(self.rows[-1][1]) if self.rows else np.nan
        value = float("nan")
        if not self.reached and np.minimum(mean, last) <= np.float32(TARGET_GATE) * np.float32(self.target):
            value = float(full_loss(self.model, self.X, self.y))
            self.reached = value <= np.float32(self.target)
        self.epoch_full_loss.append(value)

    def series(self, model, *, n_samples: int, batch_size: int, initial_loss: float,
               final_loss: float) -> StepSeries:
        """What was recorded, as the StepSeries every engine returns (norms and flags derived)."""
        input_sq, loss, grad_sq, weight_sq = np.array(self.rows, dtype=np.float64).reshape(-1, 4).T
        grad_norm, weight_norm = np.sqrt(grad_sq), np.sqrt(weight_sq)
        flags = step_flags(input_sq, loss, grad_norm, weight_norm, loss_scaled=loss_scaled(model.optimizer))
        return StepSeries(loss=loss, grad_norm=grad_norm, weight_norm=weight_norm, flags=flags,
                          epoch_loss=np.array(self.epoch_loss), steps_per_epoch=-(-n_samples // batch_size),
                          initial_loss=initial_loss, final_loss=final_loss,
                          epoch_full_loss=(epoch_ends_from_steps(loss, final_loss) if self.steps_are_epoch_ends
                                           else np.array(self.epoch_full_loss, dtype=np.float64)),
                          layer_grad_norm=layer_grad_norms(model, np.array(self.variable_sq)) if self.rows else {})

    def locate(self, model, X, y):
        """The run's ``locate`` (nanbench.engines.base.EngineOutput): a replay of the first
        non-finite step kept, or of the evaluation after the run at its final weights (read when
        called: before the model trains again)."""
        def locate(step: int, source: str):
            locator = Locator(model, loss_scaled(model.optimizer))
            if self.step_at_nonfinite is not None:
                left, x, y_batch = self.step_at_nonfinite
                return locator(self.weights_at_nonfinite, left, x, y_batch, source=source)
            final = [np.array(w.numpy()) for w in model.trainable_weights]  # the model as fit left it
            return locator(final, None, X, y, source=source, training=False)
        return locate


def fit_with_forensics(model: keras.Model, X, y, *, started: float, fit_x=None, fit_y=None,
                       same_in_training: bool = False, target_ratio: float = 0.1, **fit_args) -> tuple[EngineOutput, keras.callbacks.History]:
    """Train a compiled model with ForensicTrainStep's step (ForensicSequential, or forensic()) with
    ``Model.fit`` and measure what an outcome needs: the whole data's loss (X, y: the training set
    as float32) at the initial and final weights, every step's forensics, and the dead ReLU units
    at the end and at the first non-finite step, and the whole data's loss at each epoch's end
    (nanbench.forensics.steps_to_target). A non-finite initial loss is located (which layer)
    before training, while the model still holds its initial weights and state.
    ``fit_x``/``fit_y`` are what fit is given when that is not X, y (a document's arrays as
    written); ``started`` is when building began (build time counts from it); ``same_in_training``:
    the model computes the same loss in training and inference mode (nanbench.model.same_in_training)."""
    initial_loss = float(full_loss(model, X, y))
    build_s = time.perf_counter() - started
    at_start = None
    if not np.isfinite(initial_loss) and np.all(np.isfinite(X)) and np.all(np.isfinite(y)):
        # NaN in the first forward pass (not the data's): which layer, before any update
        at_start = Locator(model, loss_scaled(model.optimizer))(
            [np.array(w.numpy()) for w in model.trainable_weights], None, X, y, source="loss", training=False)
    relu = has_relu_units(model)
    per_epoch = -(-len(X) // (fit_args.get("batch_size") or 32))
    target = np.float32(target_ratio) * np.float32(initial_loss)  # as the fused engine computes it
    recorder = ForensicRecorder(X, y, same_in_training and per_epoch == 1 and fit_x is None, float(target))
    t1 = time.perf_counter()
    history = model.fit(X if fit_x is None else fit_x, y if fit_y is None else fit_y, verbose=0,
                        callbacks=[recorder], **fit_args)
    t2 = time.perf_counter()
    final_loss = float(full_loss(model, X, y))
    series = recorder.series(model, n_samples=len(X), batch_size=fit_args.get("batch_size") or 32,
                             initial_loss=initial_loss, final_loss=final_loss)
    first = (recorder.first_step_end or t2) - t1
    at_bad = recorder.weights_at_nonfinite
    out = EngineOutput(series=series, build_s=build_s, first_step_s=first, train_s=t2 - t1 - first,
                       dead_fraction=dead_fraction(model, X) if relu else None,
                       dead_fraction_at_nonfinite=dead_fraction(model, X, at_bad) if at_bad is not None else None,
                       locate=recorder.locate(model, X, y),
                       locate_start=(lambda: at_start) if at_start is not None else None)
    return out, history


def train(spec, data, device: str) -> EngineOutput:
    t0 = time.perf_counter()
    keras.utils.set_random_seed(spec.train.seed)  # Python, NumPy and TensorFlow: fit's shuffling
    with tf.device(device):
        model = build_model(spec.model, data.n_features, seed=spec.train.seed,
                            precision=spec.train.precision, cls=ForensicSequential)
        model = forensic(model)  # a user's model (model=keras, model=builder); ours are already
        model.compile(optimizer=build_optimizer(spec.optimizer, spec.clipping,
                                                precision=spec.train.precision),
                      loss=build_loss(spec.loss, spec.model))
        out, _ = fit_with_forensics(model, data.X, data.y, started=t0, same_in_training=same_in_training(spec.model),
                                    target_ratio=spec.outcome.target_ratio,
                                    epochs=spec.train.epochs_for(data.n_samples),
                                    batch_size=spec.train.batch_size, shuffle=spec.train.shuffle)
    return out
