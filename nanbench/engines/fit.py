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

from nanbench.engines import EngineOutput
from nanbench.forensics import StepSeries, nan_in_weights
from nanbench.model import build_loss, build_model, build_optimizer
from nanbench.step import forensic_step


class ForensicSequential(keras.Sequential):
    """A Sequential model whose fit also reports per-step loss, norms and non-finite flags."""

    def train_step(self, data):
        x, y = data[0], data[1]
        out = forensic_step(self, self.optimizer, x, y)
        # As Keras's own train_step: the epoch loss is the batch-size-weighted mean of batch losses.
        self._loss_tracker.update_state(out["loss"], sample_weight=tf.shape(x)[0])
        return {"loss": self._loss_tracker.result(), "step_loss": out["loss"],
                "grad_norm": out["grad_norm"], "weight_norm": out["weight_norm"], "flags": out["flags"]}


class _Recorder(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.rows: list[tuple[float, float, float, int]] = []
        self.epoch_loss: list[float] = []
        self.first_step_end: float | None = None

    def on_train_batch_end(self, batch, logs=None):
        if self.first_step_end is None:
            self.first_step_end = time.perf_counter()
        flags = int(np.asarray(logs["flags"]))
        self.rows.append((float(np.asarray(logs["step_loss"])), float(np.asarray(logs["grad_norm"])),
                          float(np.asarray(logs["weight_norm"])), flags))
        if nan_in_weights(flags):
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        self.epoch_loss.append(float(np.asarray(logs["loss"])))


def train(spec, data, device: str) -> EngineOutput:
    t0 = time.perf_counter()
    keras.utils.set_random_seed(spec.train.seed)  # Python, NumPy and TensorFlow: fit's shuffling
    with tf.device(device):
        model = build_model(spec.model, data.n_features, seed=spec.train.seed,
                            precision=spec.train.precision, cls=ForensicSequential)
        model.compile(optimizer=build_optimizer(spec.optimizer, spec.clipping,
                                                precision=spec.train.precision),
                      loss=build_loss(spec.loss))
        build_s = time.perf_counter() - t0
        recorder = _Recorder()
        t1 = time.perf_counter()
        model.fit(data.X, data.y, epochs=spec.train.epochs, batch_size=spec.train.batch_size,
                  shuffle=spec.train.shuffle, verbose=0, callbacks=[recorder])
        t2 = time.perf_counter()
    rows = np.array(recorder.rows, dtype=np.float64).reshape(-1, 4)
    series = StepSeries(loss=rows[:, 0], grad_norm=rows[:, 1], weight_norm=rows[:, 2],
                        flags=rows[:, 3].astype(np.int64), epoch_loss=np.array(recorder.epoch_loss),
                        steps_per_epoch=-(-data.n_samples // spec.train.batch_size))
    first = (recorder.first_step_end or t2) - t1
    return EngineOutput(series=series, build_s=build_s, first_step_s=first, train_s=t2 - t1 - first)
