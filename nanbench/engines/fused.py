"""The fast engine: a whole run (epochs, shuffling, batching, forensics) in one ``tf.function``.

One :class:`Trainer` exists per structural signature (architecture, optimizer kind, loss, clipping
kind, feature count, precision, device). Its model, optimizer and traced function are reused for
every run that differs only in numbers (learning rate, clip threshold, seed, batch size, epochs,
data values and row count): a run is one call of the traced function, which first resets the
weights to the seeded initial values (drawn by Keras's initializers once per seed), resets the
optimizer's state and assigns the run's learning rate and clip threshold, then trains in two
nested loops (epochs, then the epoch's steps; shuffling and Keras's epoch loss are per-epoch work,
outside the step loop). The step is nanbench.step's, i.e. Keras's own train_step math.

Forensics costs a step only what it must copy. A forensic step reads the weights itself and runs
Keras's forward pass on what it read (nanbench.step.keras_gradients), so the reads it keeps are
the ones the forward pass would make anyway; the step's loss, its gradients and those weights go
into one float32 vector, reduced at once to the step's sums of squares (float64), which are the
run's per-step row: a run's memory grows with its steps by that row only, never by a copy of its
weights (a 6,000-step run once held every step's weights and gradients until its end). The
weights after step i are the ones step i + 1 started from (and one read after the run's last
step); the two around the first non-finite step are kept as the run finds that step. At each epoch's end, one forward
pass over the whole data in inference mode gives the loss nanbench.forensics.steps_to_target reads
(time to target, resolution: epochs), gated so that only the epochs near the crossing pay it
(nanbench.forensics.TARGET_GATE); with the whole data in one
batch and a model the same in training and inference mode, the next step's loss is that loss and
no pass is made (nanbench.forensics.epoch_ends_from_steps). At each epoch's end one read of
the weights tells whether a step left NaN in them (NaN in a weight stays NaN), and then the run
ends there and is cut at that step, as fit's callback ends it. Each step's loss and sums of
squares come back to the host once per run.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from nanbench.engines.base import EngineOutput, cached, keras_order
from nanbench.forensics import TARGET_GATE, StepSeries, epoch_ends_from_steps, step_flags
from nanbench.locate import Locator, layer_grad_norms, replay_step
from nanbench.model import build_loss, build_model, build_optimizer, dead_fraction, reset_model, same_in_training
from nanbench.step import (flat, full_loss, grouped_squares, keras_gradients, keras_step, loss_scaled,
                           row_sums_of_squares, sum_of_squares, unflatten)


class RuntimeThreshold:
    """A clip threshold that lives in a variable, so changing it does not retrace.

    Keras's optimizer tests ``clipnorm and clipnorm > 0`` in Python when the step is traced (true:
    the spec guarantees a positive threshold) and then uses the value in graph arithmetic; this
    object answers the first and turns into the variable's value for the second.
    """

    def __init__(self, value: float):
        self.variable = tf.Variable(value, dtype=tf.float32, trainable=False, name="clip_threshold")

    def __bool__(self) -> bool:
        return True

    def __gt__(self, other) -> bool:
        return other <= 0

    def _value(self):
        return self.variable.read_value()

    def __neg__(self):
        return -self._value()

    def __mul__(self, other):
        return self._value() * other

    def __rmul__(self, other):
        return other * self._value()

    def __truediv__(self, other):
        return self._value() / other

    def __rtruediv__(self, other):
        return other / self._value()

    def __float__(self) -> float:
        return float(self.variable.numpy())


tf.register_tensor_conversion_function(
    RuntimeThreshold, lambda value, dtype=None, name=None, as_ref=False:
    tf.cast(value.variable.read_value(), dtype or tf.float32))


def signature(spec, n_features: int, device: str, forensics: bool = True) -> tuple:
    """What must be equal for two runs to share a traced function."""
    return (spec.model, spec.optimizer.keras_class(), spec.optimizer.momentum, spec.clipping.kind,
            spec.loss, n_features, spec.train.precision, device, forensics)


class Trainer:
    """A model, optimizer and traced whole-run training function for one signature."""

    def __init__(self, spec, n_features: int, device: str, forensics: bool = True, layers: bool = True,
                 target: bool = True):
        self.device = device
        self.forensics = forensics
        self.layers = layers  # per-layer gradient norms (off: only to measure what they cost)
        self.target = target  # the epoch-end whole-data loss of time to target (off: only to measure its cost)
        # with the whole data in one batch, the next step's loss is that loss (forensics.epoch_ends_from_steps)
        self.steps_are_epoch_ends = same_in_training(spec.model)
        # whether TensorFlow runs this process's ops one at a time (see the forensic step)
        self.serial = (tf.config.threading.get_inter_op_parallelism_threads() or os.cpu_count()) == 1
        self.threshold = RuntimeThreshold(spec.clipping.threshold)
        with tf.device(device):
            self.model = build_model(spec.model, n_features, seed=spec.train.seed,
                                     precision=spec.train.precision)
            self.optimizer = build_optimizer(spec.optimizer, spec.clipping,
                                             precision=spec.train.precision, threshold=self.threshold)
            self.model.compile(optimizer=self.optimizer, loss=build_loss(spec.loss, spec.model))
            self.optimizer.build(self.model.trainable_variables)
        # A run starts from these: the optimizer's fresh state (fixed) and, per seed, the model's
        # seeded initial weights (drawn once per seed by Keras's initializers, then reused).
        self._optimizer_start = [np.array(v.numpy()) for v in self.optimizer.variables]
        self._initial: dict[int, list[tf.Tensor]] = {}
        spec_x = tf.TensorSpec([None, n_features], tf.float32)
        # y: labels (one column) for classes, else one column per output (a multi-output regression)
        spec_y = tf.TensorSpec([None, spec.model.outputs if spec.model.task == "regression" else 1], tf.float32)
        scalar = tf.TensorSpec([], tf.int32)
        real = tf.TensorSpec([], tf.float32)
        weights = [tf.TensorSpec(v.shape, tf.as_dtype(v.dtype)) for v in self.model.variables]
        # autograph off: the loops are tf.while_loop already and Keras 3's code is written for
        # backends without autograph, so there is nothing to convert; converting Keras's layers,
        # losses and optimizer anyway cost seconds on a process's first trace
        self._concrete = None  # the traced function, see trace()
        self._locator = None
        self._fn = tf.function(self._train, autograph=False, input_signature=[
            spec_x, spec_y, scalar, scalar, scalar, tf.TensorSpec([], tf.bool), real, real, weights, real])

    def trace(self) -> None:
        """Trace the whole-run function now (its only trace: the input signature is fixed); runs
        call the traced (concrete) function directly, without tf.function's per-call dispatch."""
        with tf.device(self.device), keras_order():
            self._concrete = self._fn.get_concrete_function()

    def _train(self, X, y, epochs, batch_size, seed, shuffle, lr, threshold, initial, target_ratio):
        # reset, inside the graph (one call per run instead of an eager assign per variable):
        # seeded initial weights, the optimizer's fresh state, this run's learning rate and clip
        for var, value in zip(self.model.variables, initial):
            var.assign(value)
        for var, value in zip(self.optimizer.variables, self._optimizer_start):
            var.assign(value)
        self.optimizer.learning_rate = lr
        self.threshold.variable.assign(threshold)
        initial_loss = full_loss(self.model, X, y)  # the baseline of the outcome rule
        n = tf.shape(X)[0]
        per_epoch = (n + batch_size - 1) // batch_size
        trainable = self.model.trainable_weights
        size = sum(w.shape.num_elements() for w in trainable)
        ends = np.cumsum([0] + [w.shape.num_elements() for w in trainable])
        scaled = loss_scaled(self.optimizer)
        # per step, one small row: the batch loss and, with forensics, the step's sums of squares in
        # float64 (its gradients', the weights' it started from, each variable's gradients'), reduced
        # as the step runs, so that a run's memory grows by this row per step and not by its weights;
        # per epoch: Keras's epoch loss (the batch-size-weighted running mean of the batch losses)
        # and, with forensics, the order of the rows. The weights the first non-finite step started
        # from and those it left are kept when that step is found (the next step's start tells).
        width = 3 + (len(trainable) if self.layers else 0)
        rows = tf.TensorArray(tf.float64 if self.forensics else tf.float32, size=epochs * per_epoch,
                              element_shape=[width if self.forensics else 1])
        orders = tf.TensorArray(tf.int32, size=epochs if self.forensics else 0, element_shape=[None])
        epoch_loss = tf.TensorArray(tf.float32, size=epochs)
        # with forensics, the whole data's loss at each epoch's end (forensics.steps_to_target)
        epoch_full = tf.TensorArray(tf.float32, size=epochs if self.forensics and self.target else 0)
        in_order = tf.range(n)

        def bounds(i):  # step i's rows in the epoch's order
            return i * batch_size, tf.minimum((i + 1) * batch_size, n)

        def batch_weight(i):
            lo, hi = bounds(i)
            return tf.cast(hi - lo, tf.float32)

        def read():  # the trainable weights' values, read now
            return [tf.convert_to_tensor(w.value) for w in trainable]

        def first_bad(carry, weights_now, weights_sq_now):
            """The carried search for the first non-finite step, given the weights a step left
            (the next step's start): the previous step is bad when its loss, batch or gradients
            (unless the loss scaler skips those) were, or the weights it left are not finite."""
            found, at_bad, prev_before, prev_bad, started = carry
            bad = tf.logical_and(started, tf.logical_or(prev_bad, tf.logical_not(tf.math.is_finite(weights_sq_now))))
            take = tf.logical_and(bad, tf.logical_not(found))
            at_bad = tf.cond(take, lambda: tf.concat([prev_before, weights_now], axis=0), lambda: at_bad)
            return tf.logical_or(found, bad), at_bad

        target = target_ratio * initial_loss  # time to target (nanbench.forensics.steps_to_target)

        def epoch_body(epoch, step, stopped, rows, orders, epoch_loss, epoch_full, reached, carry):
            # once per epoch: a seeded permutation when shuffling (else the rows in order), the
            # rows gathered in that order; a step slices its batch
            order = tf.cond(shuffle, lambda: tf.random.experimental.stateless_shuffle(
                in_order, seed=tf.stack([seed, epoch])), lambda: in_order)
            Xe, ye = tf.gather(X, order), tf.gather(y, order)
            if self.forensics:
                batch_sq_rows = row_sums_of_squares(Xe, ye)  # for whether a batch holds non-finite values

            def step_body(i, total_loss, count, last, rows, carry):
                lo, hi = bounds(i)
                if self.forensics:
                    before = read()  # before the update
                    loss, grads, true_grads = keras_gradients(
                        self.model, self.optimizer, Xe[lo:hi], ye[lo:hi], weights=before)
                    row = flat([loss] + list(true_grads) + before)
                    # on one thread, the row is taken before the update: an update while the
                    # weights read are still held copies each variable first (copy-on-write);
                    # with more threads, taking it beside the update is cheaper
                    with tf.control_dependencies([row] if self.serial else []):
                        self.optimizer.apply(grads, trainable)
                    squares = grouped_squares(row[None, 1:], 2)  # [1, gradients | weights, size]
                    grad_sq, before_sq = tf.unstack(tf.reduce_sum(squares, axis=2)[0])
                    variable_sq = [tf.reduce_sum(squares[:, 0, a:b], axis=1) for a, b in zip(ends[:-1], ends[1:])]
                    record = tf.concat([tf.cast(row[:1], tf.float64), tf.stack([grad_sq, before_sq])]
                                       + (variable_sq if self.layers else []), axis=0)
                    found, at_bad = first_bad(carry, row[1 + size:], before_sq)
                    batch_bad = tf.logical_not(tf.math.is_finite(tf.reduce_sum(batch_sq_rows[lo:hi])))
                    step_bad = tf.logical_or(tf.logical_not(tf.math.is_finite(loss)), batch_bad)
                    if not scaled:
                        step_bad = tf.logical_or(step_bad, tf.logical_not(tf.math.is_finite(grad_sq)))
                    carry = (found, at_bad, row[1 + size:], step_bad, tf.constant(True))
                else:
                    loss, _ = keras_step(self.model, self.optimizer, Xe[lo:hi], ye[lo:hi])
                    record = flat([loss])
                loss = tf.cast(loss, tf.float32)
                weight = tf.cast(hi - lo, tf.float32)
                return i + 1, total_loss + loss * weight, count + weight, loss, rows.write(step + i, record), carry

            _, total_loss, count, last, rows, carry = tf.while_loop(
                lambda i, *_: i < per_epoch, step_body,
                (tf.constant(0), tf.constant(0.0), tf.constant(0.0), tf.constant(0.0), rows, carry))
            epoch_loss = epoch_loss.write(epoch, total_loss / count)
            if self.forensics:
                # NaN in the weights stays NaN (every update of a NaN weight is NaN; a loss-scaled
                # step that skips its update keeps it), so the weights at the epoch's end tell
                # whether a step of this epoch left NaN in them: the run ends here
                orders = orders.write(epoch, order)
                stopped = tf.math.is_nan(sum_of_squares(read()))
                if self.target:  # gated (forensics.TARGET_GATE); one step an epoch: the host takes
                    # the next step's loss instead (forensics.epoch_ends_from_steps)
                    look = tf.logical_and(tf.logical_not(reached),
                                          tf.minimum(total_loss / count, last) <= TARGET_GATE * target)
                    if self.steps_are_epoch_ends:
                        look = tf.logical_and(look, per_epoch > 1)
                    value = tf.cond(look, lambda: full_loss(self.model, X, y), lambda: tf.constant(np.nan, tf.float32))
                    epoch_full = epoch_full.write(epoch, value)
                    reached = tf.logical_or(reached, value <= target)
            return epoch + 1, step + per_epoch, stopped, rows, orders, epoch_loss, epoch_full, reached, carry

        no_weights = tf.zeros([size if self.forensics else 0], tf.float32)
        carry = (tf.constant(False), tf.zeros([2 * size if self.forensics else 0], tf.float32), no_weights,
                 tf.constant(False), tf.constant(False))
        epochs_run, step, _, rows, orders, epoch_loss, epoch_full, _, carry = tf.while_loop(
            lambda epoch, _step, stopped, *_: tf.logical_and(epoch < epochs, tf.logical_not(stopped)),
            epoch_body, (tf.constant(0), tf.constant(0), tf.constant(False), rows, orders, epoch_loss, epoch_full,
                         tf.constant(False), carry),
            maximum_iterations=epochs)
        kept = rows.gather(tf.range(step))
        series = tf.cast(kept[:, :1], tf.float64)
        epoch_loss = epoch_loss.gather(tf.range(epochs_run))
        full = tf.stack([initial_loss, full_loss(self.model, X, y)])  # at the initial and final weights
        if not self.forensics:
            return series, epoch_loss, per_epoch, full, tf.zeros([0]), tf.zeros([0])
        epoch_full = epoch_full.gather(tf.range(epochs_run)) if self.target else tf.zeros([0])
        # once per run, each step's batch sum of squares in float64 (its rows' sums, in the epoch's
        # order); the weights' after the update are those the next step started from (after the
        # last step, read now)
        batch_of_row = in_order // batch_size
        step_of_row = tf.range(epochs_run)[:, None] * per_epoch + batch_of_row[None, :]
        batch_sq = tf.math.unsorted_segment_sum(
            tf.gather(row_sums_of_squares(X, y), orders.gather(tf.range(epochs_run))), step_of_row, step)
        grad_sq, before_sq = kept[:, 1], kept[:, 2]
        final_weights = flat(read())
        final_sq = tf.reduce_sum(tf.square(tf.cast(final_weights, tf.float64)))
        after_sq = tf.concat([before_sq[1:], final_sq[None]], axis=0)
        variable_sq = kept[:, 3:] if self.layers else tf.zeros([step, 0], tf.float64)
        sums = tf.concat([tf.stack([batch_sq, grad_sq, after_sq], axis=1), variable_sq], axis=1)
        # The run ends at the first step whose update left NaN in the weights (every later step
        # would be NaN too), as fit's callback ends it: always in the last epoch run. Keras's epoch
        # loss for that epoch is the running mean at that step: recomputed, in the same order and
        # precision.
        nan_weights = tf.math.is_nan(after_sq)
        ran = tf.where(tf.reduce_any(nan_weights), tf.argmax(tf.cast(nan_weights, tf.int32), output_type=tf.int32) + 1, step)
        last = step - per_epoch  # where the last epoch run starts
        epoch_loss = tf.cond(ran < step, lambda: tf.concat(
            [epoch_loss[:-1], running_mean(rows, last, ran - last, batch_weight)[None]], axis=0), lambda: epoch_loss)
        # the weights the first non-finite step started from and those it left (for its dead units
        # and nanbench.locate's replay of that step): found during the run, or the last step's
        found, at_bad = first_bad(carry, final_weights, final_sq)
        at_bad = tf.cond(found, lambda: at_bad, lambda: tf.zeros([0]))
        return tf.concat([series, sums], axis=1)[:ran], epoch_loss, per_epoch, full, at_bad, epoch_full

    def initial_weights(self, seed: int) -> list[tf.Tensor]:
        """The model's variables as `build_model(..., seed=seed)` starts them (cached per seed)."""
        if seed not in self._initial:
            reset_model(self.model, seed)
            with tf.device(self.device):
                self._initial[seed] = [tf.constant(v.numpy()) for v in self.model.variables]
        return self._initial[seed]

    def run(self, spec, X: np.ndarray, y: np.ndarray) -> "Ran":
        """Train one run: the per-step rows (with forensics: loss, input_sq, grad_sq, weight_sq,
        then each trainable variable's grad_sq; steps x 1 without), epoch losses, steps per epoch,
        the call's seconds, the whole-data loss at the initial and final weights, and (with
        forensics) the weights the first non-finite step started from and those it left, as one
        flat vector (empty if none)."""
        if self._concrete is None:
            self.trace()
        initial = self.initial_weights(spec.train.seed)
        t = time.perf_counter()
        with tf.device(self.device), keras_order():
            series, epoch_loss, per_epoch, full, at_bad, epoch_full = self._concrete(
                X, y, tf.constant(spec.train.epochs_for(len(X))), tf.constant(spec.train.batch_size),
                tf.constant(spec.train.seed), tf.constant(spec.train.shuffle),
                tf.constant(spec.optimizer.lr, tf.float32), tf.constant(spec.clipping.threshold, tf.float32),
                initial, tf.constant(spec.outcome.target_ratio, tf.float32))
        series = series.numpy()
        seconds = time.perf_counter() - t
        return Ran(series, epoch_loss.numpy(), int(per_epoch), seconds, full.numpy(), at_bad.numpy(),
                   epoch_full.numpy())

    def locate_start(self, seed: int, data) -> tuple[str | None, str | None]:
        """Which layer first held inf/NaN in a run's initial forward pass over the whole data
        (inference mode): the model is set back to the seed's initial values (trainable weights
        and state, e.g. BatchNorm's moving statistics; the next run resets them anyway) and replayed."""
        with tf.device(self.device):
            for var, value in zip(self.model.variables, self.initial_weights(seed)):
                var.assign(value)
            weights = [np.array(w.numpy()) for w in self.model.trainable_weights]
            return self.locator(weights, None, data.X, data.y, source="loss", training=False)

    @property
    def locator(self) -> Locator:
        """The replay of a step of this trainer's model (nanbench.locate), made on first use."""
        if self._locator is None:
            self._locator = Locator(self.model, loss_scaled(self.optimizer))
        return self._locator

    def weights_of(self, vector: np.ndarray) -> list[np.ndarray]:
        """A flat vector of the trainable weights (nanbench.step.flat's order) as one array each."""
        return unflatten(vector, [tuple(w.shape) for w in self.model.trainable_weights])


class Ran(NamedTuple):
    """What one call of a Trainer returns (see Trainer.run)."""

    series: np.ndarray
    epoch_loss: np.ndarray
    per_epoch: int
    seconds: float
    full_loss: np.ndarray        # [initial, final] loss over the whole training set
    weights_at_nonfinite: np.ndarray
    epoch_full_loss: np.ndarray  # the whole training set's loss at each epoch's end (empty without forensics)


def running_mean(rows: tf.TensorArray, start, steps, batch_weight) -> tf.Tensor:
    """Keras's running mean of an epoch's first `steps` batch losses (the first column of rows
    `start` onwards of `rows`), accumulated one step at a time in float32 as the training loop does."""
    def body(i, total, count):
        return i + 1, total + tf.cast(rows.read(start + i)[0], tf.float32) * batch_weight(i), count + batch_weight(i)
    _, total, count = tf.while_loop(lambda i, _t, _c: i < steps, body,
                                    (tf.constant(0), tf.constant(0.0), tf.constant(0.0)))
    return total / count


_TRAINERS: dict[tuple, Trainer] = {}
_UNTRACEABLE: dict[tuple, str] = {}  # signatures of user models this engine could not trace -> why


def clear_cache() -> None:
    _TRAINERS.clear()
    _UNTRACEABLE.clear()


def _trainer(spec, n_features: int, device: str, forensics: bool):
    """The signature's Trainer, with the seconds of its making and its trace; None for a user's
    model (model=keras, model=builder) whose structure this engine cannot trace (autograph is off
    here: a layer that branches in Python on a tensor's value, say), which then trains with fit.
    nanbench's own models always trace, so for them an error here is a bug and raises."""
    from nanbench.spec import USER_MODELS
    key = signature(spec, n_features, device, forensics)
    if key in _UNTRACEABLE:
        return None
    try:
        return cached(_TRAINERS, key, lambda: Trainer(spec, n_features, device, forensics))
    except Exception as exc:  # noqa: BLE001 - the user's layers
        if spec.model.name not in USER_MODELS:
            raise
        _TRAINERS.pop(key, None)
        _UNTRACEABLE[key] = f"{type(exc).__name__}: {exc}"
        return None


def train(spec, data, device: str, forensics: bool = True) -> EngineOutput:
    """Train one run. The run that builds a signature's Trainer also pays for its trace, which is
    reported as its first-step (compile) time; the training call itself is the steady state."""
    made = _trainer(spec, data.n_features, device, forensics)
    if made is None:  # a user's model this engine cannot trace: Keras's fit trains it, and says so
        from nanbench.engines.fit import train as fit_train
        return dataclasses.replace(fit_train(spec, data, device), engine="fit")
    trainer, build_s, trace_s = made
    ran = trainer.run(spec, data.X, data.y)
    series, per_epoch = ran.series, ran.per_epoch
    loss = series[:, 0]  # float32 values, carried exactly in float64
    sums = series[:, 1:4] if forensics else np.zeros((len(loss), 3))  # no forensics: benchmark mode only
    input_sq, grad_norm, weight_norm = sums[:, 0], np.sqrt(sums[:, 1]), np.sqrt(sums[:, 2])
    flags = step_flags(input_sq, loss, grad_norm, weight_norm, loss_scaled=loss_scaled(trainer.optimizer))
    epoch_full = ran.epoch_full_loss.astype(np.float64)
    if forensics and trainer.target and trainer.steps_are_epoch_ends and per_epoch == 1:
        epoch_full = epoch_ends_from_steps(loss, ran.full_loss[1])
    out = StepSeries(loss=loss, grad_norm=grad_norm, weight_norm=weight_norm,
                     flags=flags, epoch_loss=ran.epoch_loss.astype(np.float64),
                     steps_per_epoch=per_epoch, initial_loss=float(ran.full_loss[0]),
                     final_loss=float(ran.full_loss[1]), epoch_full_loss=epoch_full,
                     layer_grad_norm=layer_grad_norms(trainer.model, series[:, 4:]) if forensics else {})
    before = after = final = None
    if ran.weights_at_nonfinite.size:  # the first non-finite step's start and end, one after the other
        before, after = (trainer.weights_of(half) for half in np.split(ran.weights_at_nonfinite, 2))
    elif forensics and not np.isfinite(ran.full_loss[1]):  # non-finite only in the evaluation after the run
        final = [np.array(w.numpy()) for w in trainer.model.trainable_weights]
    return EngineOutput(series=out, build_s=build_s, first_step_s=trace_s, train_s=ran.seconds,
                        dead_fraction=dead_fraction(trainer.model, data.X),
                        dead_fraction_at_nonfinite=dead_fraction(trainer.model, data.X, before) if before is not None else None,
                        locate=replay_step(lambda: trainer.locator, spec, data, before, after, final),
                        locate_start=lambda: trainer.locate_start(spec.train.seed, data))
