"""Runs side by side: R runs of one structure trained together in one traced call, along a run axis.

Runs that share a structure (the Dense stack, the optimizer's kind, the loss, the data's shape,
the batch size and epoch count) differ only in numbers: learning rate, clip kind and threshold,
seed (initial weights and shuffle) and data values. Stacked along a leading run axis, their
weights are [R, in, out] tensors and a step is one batched matmul per layer for all R runs, which
is what makes many small runs fast: a small model's step is mostly fixed per-op cost, paid once
for R runs instead of R times.

Each run's arithmetic is the sequential fused engine's, op for op: Keras's Dense (matmul, add,
activation), Keras's loss and its ``sum_over_batch_size`` reduction taken per run, the gradients
of the sum of the runs' losses (each run's gradient is its own loss's: the runs share no weight),
and the run's own Keras optimizer's ``apply``, whatever its class, run on every run's values with
each run's learning rate (nanbench.engines.updates: all runs in one apply where the update is
elementwise, else each run's in a loop over the runs; probed once). Clipping keeps Keras's
per-run semantics: ``clipnorm`` rescales each variable's gradient of one run by that run's norm
(tf.clip_by_norm's arithmetic), ``global_clipnorm`` rescales one run's gradients by their joint
norm (keras's clip_by_global_norm), ``clipvalue`` clips elements; the kind is chosen per run.
Forensics stays per run: each step's loss, sums of squares (batch, gradients, weights after the
update) and the weights the first non-finite step started from. A run whose weights hold NaN at
an epoch's end stops there, as the fused engine stops it: no number of one run enters another
run's (the runs share no weight, and each run's gradient is its own loss's), so its NaN changes
nothing beside it; its steps after the stop are dropped and its series is cut at the step whose
update first left NaN. At each epoch's end each run's loss over the whole data (one forward pass,
as its initial and final losses) gives nanbench.forensics.steps_to_target (with the whole data in
one batch, the next step's loss: nanbench.forensics.epoch_ends_from_steps).

The result is the fused engine's, bit for bit: TensorFlow's batched matmul gives each run its own
matmul's bits for most shapes, but its CPU kernel is chosen by shape, and for some shapes it sums
the dot products in another order (or without fused multiply-adds), so each layer's product is
probed once per shape (nanbench.engines.products) and a layer whose batched product would round
otherwise multiplies each run's matrices on their own, in a loop over the runs inside the graph.
Only what this engine writes out is supported (supports()):
Dense stacks without dropout or weight decay, float32, MSE / MAE / Huber, any Keras optimizer
whose update side by side gives each run its bits (update_for); the caller trains anything else
with the fused engine, one run at a time (nanbench.run.execute_many).
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import tensorflow as tf
from keras import ops

from nanbench.engines.base import EngineOutput, cached, keras_order
from nanbench.engines.products import BATCHED, layer_products, per_run_matmul
from nanbench.engines.updates import KerasUpdate, update_mode
from nanbench.forensics import TARGET_GATE, StepSeries, epoch_ends_from_steps, step_flags
from nanbench.locate import Locator, layer_grad_norms, replay_step
from nanbench.model import build_loss, build_model, build_optimizer, dead_fraction, reset_model
from nanbench.spec import ClippingSpec
from nanbench.step import unflatten

LOSSES = {"keras.losses.MeanSquaredError", "keras.losses.MeanAbsoluteError", "keras.losses.Huber"}
CLIP_KINDS = ("none", "clipnorm", "global_clipnorm", "clipvalue")  # a run's kind: its index here


def supports(spec) -> bool:
    """Whether this engine trains `spec` (else the fused engine does)."""
    m = spec.model
    return (m.name in ("linear", "mlp") and m.outputs == 1 and m.dropout == 0 and m.weight_decay == 0
            and m.seq_shape is None and m.final_activation is None
            and m.probability == "keras"
            and m.activation in ("relu", "tanh", "sigmoid", "linear")
            and spec.train.precision == "float32"
            and spec.loss.keras_class() in LOSSES)


def group_key(spec, n_samples: int, n_features: int) -> tuple:
    """What runs trained in one call share; everything else is a per-run number."""
    return (spec.model, spec.optimizer.keras_class(), spec.optimizer.momentum, spec.loss, n_features,
            n_samples, spec.train.batch_size, spec.train.epochs_for(n_samples), spec.train.shuffle,
            spec.train.precision)


class SideBySide:
    """The traced whole-run function for R runs of one structure (R is free: one trace)."""

    def __init__(self, spec, n_features: int, device: str, kinds: tuple[str, ...], products: tuple[str, ...],
                 update: str):
        self.device = device
        self.kinds = kinds  # the clip kinds present: only their arithmetic is traced
        self.products = products  # each layer's matmul: BATCHED or PER_RUN (layer_products)
        with tf.device(device):
            self.model = build_model(spec.model, n_features, seed=spec.train.seed)
            self.model.compile(loss=build_loss(spec.loss, spec.model))  # for nanbench.locate's replay of a step
            # the run's own Keras optimizer, without clipping (clip() clips per run), applied to
            # every run's values (nanbench.engines.updates)
            self.optimizer = KerasUpdate(build_optimizer(spec.optimizer, ClippingSpec()),
                                         self.model.trainable_variables, update)
        self.activations = [layer.activation for layer in self.model.layers]
        self.shapes = [tuple(w.shape) for w in self.model.trainable_weights]
        self.loss_values = build_loss(spec.loss, spec.model).call  # Keras's per-row values (before reduction)
        self._initial: dict[int, list[np.ndarray]] = {}
        self._locator = None
        weights = [tf.TensorSpec([None, *s], tf.float32) for s in self.shapes]
        self._fn = tf.function(self._train, autograph=False, input_signature=[
            tf.TensorSpec([None, None, n_features], tf.float32), tf.TensorSpec([None, None, 1], tf.float32),
            tf.TensorSpec([], tf.int32), tf.TensorSpec([], tf.int32), tf.TensorSpec([None], tf.int32),
            tf.TensorSpec([], tf.bool), tf.TensorSpec([None], tf.float32), tf.TensorSpec([None], tf.float32),
            tf.TensorSpec([None], tf.int32), tf.TensorSpec([None], tf.float32), weights,
            tf.TensorSpec([None], tf.float32)])
        self._concrete = None

    def trace(self) -> None:
        with tf.device(self.device), keras_order():
            self._concrete = self._fn.get_concrete_function()

    # --- one run's math, for R runs at once -------------------------------------------------

    def forward(self, weights, x):
        h = x
        for i, activation in enumerate(self.activations):
            h = ops.matmul(h, weights[2 * i]) if self.products[i] == BATCHED else per_run_matmul(h, weights[2 * i])
            bias = weights[2 * i + 1]
            # Keras adds a bias of more than one unit with tf.nn.bias_add, whose gradient
            # (BiasAddGrad) sums the batch's rows in order; a one-unit bias with tf.add
            h = add_bias(h, bias) if bias.shape[-1] > 1 else ops.add(h, bias[:, None, :])
            h = activation(h)
        return h

    def losses(self, weights, x, y):
        """Each run's loss ([R]): Keras's loss values, then sum_over_batch_size per run."""
        values = self.loss_values(y, self.forward(weights, x))  # [R, B]
        return ops.divide_no_nan(ops.sum(values, axis=1), ops.cast(ops.shape(values)[1], values.dtype))

    def clip(self, grads, kind, threshold, ones):
        """Each run's gradients clipped by its own kind and threshold (Keras's arithmetic)."""
        out = list(grads)
        if "clipnorm" in self.kinds:
            clipped = []
            for g in grads:  # tf.clip_by_norm per variable, over one run's slice
                axes = list(range(1, len(g.shape)))
                l2sum = tf.reduce_sum(g * g, axes, keepdims=True)
                pred = l2sum > 0
                l2norm = tf.where(pred, tf.sqrt(tf.where(pred, l2sum, tf.ones_like(l2sum))), l2sum)
                t = per_run(threshold, g)
                clipped.append(tf.identity(g * t / tf.maximum(l2norm, t)))
            out = _select(kind, CLIP_KINDS.index("clipnorm"), clipped, out)
        if "global_clipnorm" in self.kinds:  # keras's clip_by_global_norm over one run's gradients
            squared = [ops.sum(ops.square(g), axis=list(range(1, len(g.shape)))) for g in grads]
            use_norm = ops.sqrt(ops.sum(ops.stack(squared, axis=1), axis=1))
            # ones / x: 1.0 / x as Keras divides a scalar (see _train)
            scale = threshold * ops.minimum(ones / use_norm, ones / threshold) + (use_norm - use_norm)
            out = _select(kind, CLIP_KINDS.index("global_clipnorm"), [g * per_run(scale, g) for g in grads], out)
        if "clipvalue" in self.kinds:
            clipped = [ops.clip(g, -per_run(threshold, g), per_run(threshold, g)) for g in grads]
            out = _select(kind, CLIP_KINDS.index("clipvalue"), clipped, out)
        return out

    def _train(self, X, y, epochs, batch_size, seeds, shuffle, lr, threshold, kind, ones, initial, target_ratio):
        # ones: a [R] vector of 1.0 fed at run time. Grappler rewrites a constant 1.0 / x into
        # Reciprocal, which on a vector is not correctly rounded; Keras divides one scalar.
        runs = tf.shape(X)[0]
        n = tf.shape(X)[1]
        per_epoch = (n + batch_size - 1) // batch_size
        weights = list(initial)
        slots = self.optimizer.start(runs)
        initial_loss = self.losses(weights, X, y)
        target = target_ratio * initial_loss  # per run: time to target (nanbench.forensics.steps_to_target)
        row_sq = tf.reduce_sum(tf.square(tf.cast(X, tf.float64)), axis=2) + tf.square(tf.cast(y[:, :, 0], tf.float64))
        in_order = tf.range(n)
        batch_of_row = in_order // batch_size
        ends = np.cumsum([0] + [int(np.prod(shape)) for shape in self.shapes])  # each variable's span in flat
        size = int(ends[-1])
        # per step, per run: the batch loss, Keras's running epoch total (both float32 values,
        # exact in float64), the gradients' and the updated weights' sums of squares; per epoch
        # and run, each step's batch sum of squares
        variables = len(self.shapes)
        steps_out = tf.TensorArray(tf.float64, size=epochs * per_epoch, element_shape=[None, 4 + variables])
        batches_out = tf.TensorArray(tf.float64, size=epochs, element_shape=[None, None])
        # per epoch and run, the whole data's loss at the epoch's end (forensics.steps_to_target)
        full_out = tf.TensorArray(tf.float32, size=epochs, element_shape=[None])

        def flat(tensors):  # [R, size]
            return tf.concat([tf.reshape(t, [runs, -1]) for t in tensors], axis=1)

        def sq(tensors):
            return tf.reduce_sum(tf.square(tf.cast(flat(tensors), tf.float64)), axis=1)

        def epoch_body(epoch, step, active, epochs_run, weights, slots, seen, at_bad, steps_out, batches_out,
                       full_out, reached):
            order = tf.cond(shuffle, lambda: tf.map_fn(
                lambda s: tf.random.experimental.stateless_shuffle(in_order, seed=tf.stack([s, epoch])),
                seeds), lambda: tf.tile(in_order[None], [runs, 1]))
            Xe, ye = tf.gather(X, order, batch_dims=1), tf.gather(y, order, batch_dims=1)
            batch_sq = tf.transpose(tf.math.unsorted_segment_sum(
                tf.transpose(tf.gather(row_sq, order, batch_dims=1)), batch_of_row, per_epoch))  # [R, steps]
            batches_out = batches_out.write(epoch, batch_sq)

            def step_body(i, total, count, last, weights, slots, seen, at_bad, steps_out):
                lo, hi = i * batch_size, tf.minimum((i + 1) * batch_size, n)
                with tf.GradientTape() as tape:
                    tape.watch(weights)
                    loss = self.losses(weights, Xe[:, lo:hi], ye[:, lo:hi])
                    summed = ops.sum(loss)  # each run's gradient is its own loss's
                grads = tape.gradient(summed, weights)
                new, new_slots = self.optimizer.step(self.clip(grads, kind, threshold, ones), weights, slots, lr,
                                                     step + i)
                weight = tf.cast(hi - lo, tf.float32)
                total, count = total + loss * weight, count + weight
                # each element's square once: the global sum, and each variable's (per-layer norms)
                squares = tf.square(tf.cast(flat(grads), tf.float64))
                grad_sq, after_sq = tf.reduce_sum(squares, axis=1), sq(new)
                variable_sq = [tf.reduce_sum(squares[:, a:b], axis=1) for a, b in zip(ends[:-1], ends[1:])]
                bad = ~tf.reduce_all(tf.math.is_finite(tf.stack(
                    [tf.cast(loss, tf.float64), batch_sq[:, i], grad_sq, after_sq], axis=1)), axis=1)
                first = bad & ~seen & active
                # the weights the first non-finite step started from and those it left, kept when
                # a run has one (for its dead units and nanbench.locate's replay)
                at_bad = tf.cond(tf.reduce_any(first), lambda: tf.where(
                    first[:, None], tf.concat([flat(weights), flat(new)], axis=1), at_bad), lambda: at_bad)
                steps_out = steps_out.write(step + i, tf.stack(
                    [tf.cast(loss, tf.float64), tf.cast(total, tf.float64), grad_sq, after_sq, *variable_sq], axis=1))
                return i + 1, total, count, loss, new, new_slots, seen | first, at_bad, steps_out

            _, total, count, last, weights, slots, seen, at_bad, steps_out = tf.while_loop(
                lambda i, *_: i < per_epoch, step_body,
                (tf.constant(0), tf.zeros([runs]), tf.constant(0.0), tf.zeros([runs]), weights, slots, seen, at_bad,
                 steps_out))
            epochs_run = epochs_run + tf.cast(active, tf.int32)
            # NaN in the weights stays NaN: a run whose weights hold NaN at the epoch's end stops
            # here (the loop goes on while any run is left; a stopped run's NaN touches no other
            # run's numbers, and its steps from here on are dropped)
            active = active & ~tf.reduce_any(tf.math.is_nan(flat(weights)), axis=1)
            # the runs whose time-to-target gate is open (forensics.TARGET_GATE, as the fused engine
            # opens it); one step an epoch: the next step's loss is that loss, taken on the host (see cut)
            look = ~reached & (tf.minimum(total / count, last) <= TARGET_GATE * target) & (per_epoch > 1)
            nothing = tf.fill([runs], tf.constant(np.nan, tf.float32))
            value = tf.cond(tf.reduce_any(look), lambda: tf.where(look, self.losses(weights, X, y), nothing),
                            lambda: nothing)
            full_out = full_out.write(epoch, value)
            return (epoch + 1, step + per_epoch, active, epochs_run, weights, slots, seen, at_bad, steps_out,
                    batches_out, full_out, reached | (value <= target))

        loop = (tf.constant(0), tf.constant(0), tf.ones([runs], tf.bool), tf.zeros([runs], tf.int32), weights,
                slots, tf.zeros([runs], tf.bool), tf.zeros([runs, 2 * size]), steps_out, batches_out, full_out,
                tf.zeros([runs], tf.bool))
        epochs_done, step, _, epochs_run, weights, _, seen, at_bad, steps_out, batches_out, full_out, _ = tf.while_loop(
            lambda epoch, _s, active, *_: (epoch < epochs) & tf.reduce_any(active), epoch_body, loop,
            maximum_iterations=epochs)
        full = tf.stack([initial_loss, self.losses(weights, X, y)], axis=1)
        batch_sq = tf.reshape(tf.transpose(batches_out.gather(tf.range(epochs_done)), [0, 2, 1]), [-1, runs])
        return (steps_out.gather(tf.range(step)), batch_sq, epochs_run, per_epoch, full, at_bad, seen, flat(weights),
                full_out.gather(tf.range(epochs_done)))

    # --- the host's side --------------------------------------------------------------------

    def initial_weights(self, seed: int) -> list[np.ndarray]:
        """The trainable weights as `build_model(..., seed=seed)` starts them (cached per seed)."""
        if seed not in self._initial:
            reset_model(self.model, seed)
            self._initial[seed] = [np.array(w.numpy()) for w in self.model.trainable_weights]
        return self._initial[seed]

    def dead_fraction(self, X, weights: list[np.ndarray] | None) -> float | None:
        """nanbench.model.dead_fraction at a run's weights."""
        return dead_fraction(self.model, X, weights) if weights is not None else None

    def weights_of(self, vector: np.ndarray) -> list[np.ndarray]:
        """A run's flat weight vector (step.flat's order) as one array per trainable weight."""
        return unflatten(vector, self.shapes)

    @property
    def locator(self) -> Locator:
        """The replay of a step of this structure's model (nanbench.locate), made on first use."""
        if self._locator is None:
            self._locator = Locator(self.model, loss_scaled=False)
        return self._locator

    def run(self, specs, datas) -> tuple[list[StepSeries], list[np.ndarray | None], list[np.ndarray], float]:
        if self._concrete is None:
            self.trace()
        first = specs[0]
        initial = [np.stack(parts) for parts in zip(*(self.initial_weights(s.train.seed) for s in specs))]
        X = np.stack([d.X for d in datas])
        Y = np.stack([d.y for d in datas])
        t = time.perf_counter()
        with tf.device(self.device), keras_order():
            out = self._concrete(
                tf.constant(X), tf.constant(Y), tf.constant(first.train.epochs_for(X.shape[1])),
                tf.constant(first.train.batch_size), tf.constant([s.train.seed for s in specs], tf.int32),
                tf.constant(first.train.shuffle), tf.constant([s.optimizer.lr for s in specs], tf.float32),
                tf.constant([s.clipping.threshold for s in specs], tf.float32),
                tf.constant([CLIP_KINDS.index(s.clipping.kind) for s in specs], tf.int32),
                tf.ones([len(specs)]), [tf.constant(w) for w in initial],
                tf.constant([s.outcome.target_ratio for s in specs], tf.float32))
            steps, batch_sq, epochs_run, per_epoch, full, at_bad, seen, final, epoch_full = (o.numpy() for o in out)
        seconds = time.perf_counter() - t
        counts = running_counts(X.shape[1], first.train.batch_size)
        series = []
        for r in range(len(specs)):
            s = cut(steps[:, r], batch_sq[:, r], counts, int(epochs_run[r]), int(per_epoch), full[r], epoch_full[:, r])
            series.append(dataclasses.replace(s, layer_grad_norm=layer_grad_norms(self.model, steps[:s.steps, r, 4:])))
        return series, [at_bad[r] if seen[r] else None for r in range(len(specs))], list(final), seconds


def running_counts(n: int, batch_size: int) -> np.ndarray:
    """Keras's running row count over an epoch's steps, accumulated in float32 as the loop does."""
    counts, count = [], np.float32(0.0)
    for lo in range(0, n, batch_size):
        count = np.float32(count + np.float32(min(lo + batch_size, n) - lo))
        counts.append(count)
    return np.array(counts, np.float32)


def cut(steps: np.ndarray, batch_sq: np.ndarray, counts: np.ndarray, epochs_run: int, per_epoch: int,
        full: np.ndarray, epoch_full: np.ndarray) -> StepSeries:
    """One run's StepSeries from its columns: cut at the step whose update first left NaN in the
    weights (every later step is NaN too), as the fused engine cuts it; Keras's epoch loss is the
    running mean (total / count, in float32) at each epoch's last step kept."""
    total_steps = epochs_run * per_epoch
    after_sq = steps[:total_steps, 3]
    nan_weights = np.isnan(after_sq)
    ran = int(np.argmax(nan_weights)) + 1 if nan_weights.any() else total_steps
    loss = steps[:ran, 0]
    ends = [min((e + 1) * per_epoch, ran) - 1 for e in range(epochs_run)]
    epoch_loss = (steps[ends, 1].astype(np.float32) / counts[[end % per_epoch for end in ends]]).astype(np.float64)
    input_sq, grad_norm, weight_norm = batch_sq[:ran], np.sqrt(steps[:ran, 2]), np.sqrt(after_sq[:ran])
    return StepSeries(loss=loss, grad_norm=grad_norm, weight_norm=weight_norm,
                      flags=step_flags(input_sq, loss, grad_norm, weight_norm), epoch_loss=epoch_loss,
                      steps_per_epoch=per_epoch, initial_loss=float(full[0]), final_loss=float(full[1]),
                      epoch_full_loss=(epoch_ends_from_steps(loss, full[1]) if per_epoch == 1
                                       else np.asarray(epoch_full[:epochs_run], dtype=np.float64)))


@tf.custom_gradient
def add_bias(h, bias):
    """``h + bias`` per run ([R, B, units] + [R, units]) with tf.nn.bias_add's gradient for each
    run: BiasAddGrad over the run's rows (one call for all runs: the runs side by side as columns)."""
    def grad(upstream):
        shape = tf.shape(upstream)
        columns = tf.reshape(tf.transpose(upstream, [1, 0, 2]), [shape[1], shape[0] * shape[2]])
        return upstream, tf.reshape(tf.raw_ops.BiasAddGrad(out_backprop=columns), [shape[0], shape[2]])
    return h + bias[:, None, :], grad


def per_run(values, like):
    """A [R] vector of per-run values shaped [R, 1, ...] to broadcast against `like` ([R, ...])."""
    return ops.reshape(values, [-1] + [1] * (len(like.shape) - 1))


def _select(kind, index: int, chosen, other):
    """Per run: `chosen` where the run's clip kind is `index`, else `other`."""
    return [tf.where(per_run(kind == index, c), c, o) for c, o in zip(chosen, other)]


_TRAINERS: dict[tuple, SideBySide] = {}


def variable_shapes(spec, n_features: int) -> tuple[tuple[int, ...], ...]:
    """The trainable variables' shapes of one run's Dense stack (kernel, bias per layer)."""
    m = spec.model
    widths = [n_features] + [m.width] * (m.depth if m.name == "mlp" else 0) + [m.outputs]
    return tuple(shape for n_in, n_out in zip(widths, widths[1:]) for shape in ((n_in, n_out), (n_out,)))


def update_for(spec, n_features: int, device: str) -> str | None:
    """How runs of this structure update side by side with each run's own bits
    (nanbench.engines.updates.update_mode); None: they train one at a time."""
    o = spec.optimizer
    return update_mode(o.keras_class(), o.momentum, variable_shapes(spec, n_features), device)


def train_together(specs, datas, device: str, products: tuple[str, ...] | None = None,
                   update: str | None = None) -> list[EngineOutput]:
    """Train runs of one group_key side by side, in one call, each layer multiplying as
    `products` says (layer_products) and the optimizer updating as `update` says (update_for),
    each asked here when not given; None there is a ValueError: the caller trains such runs one
    at a time. The call's seconds are shared out evenly; the run that builds the structure's
    graph reports the build and trace."""
    n_samples, n_features = datas[0].n_samples, datas[0].n_features
    products = products or layer_products(specs[0], n_samples, n_features, len(specs))
    if products is None:
        raise ValueError("no matmul side by side gives these runs their own bits: train them one at a time")
    update = update or update_for(specs[0], n_features, device)
    if update is None:
        raise ValueError(f"{specs[0].optimizer.keras_class()}'s update side by side does not give these runs "
                         "their own bits: train them one at a time")
    kinds = tuple(k for k in CLIP_KINDS[1:] if any(s.clipping.kind == k for s in specs))
    key = (group_key(specs[0], n_samples, n_features), kinds, products, update, device)
    trainer, build_s, trace_s = cached(_TRAINERS, key,
                                       lambda: SideBySide(specs[0], n_features, device, kinds, products, update))
    series, at_bad, final, seconds = trainer.run(specs, datas)
    outs = []
    for r, (spec, s, data) in enumerate(zip(specs, series, datas)):
        before = after = end = None
        if at_bad[r] is not None:  # the first non-finite step's start and end, one after the other
            before, after = (trainer.weights_of(half) for half in np.split(at_bad[r], 2))
        elif not np.isfinite(s.final_loss):  # non-finite only in the evaluation after the run
            end = trainer.weights_of(final[r])
        outs.append(EngineOutput(
            series=s, build_s=build_s if r == 0 else 0.0, first_step_s=trace_s if r == 0 else 0.0,
            train_s=seconds / len(specs), dead_fraction=trainer.dead_fraction(data.X, trainer.weights_of(final[r])),
            dead_fraction_at_nonfinite=trainer.dead_fraction(data.X, before),
            locate=replay_step(lambda: trainer.locator, spec, data, before, after, end),
            locate_start=lambda spec=spec, data=data: trainer.locator(
                trainer.initial_weights(spec.train.seed), None, data.X, data.y, source="loss", training=False)))
    return outs


def clear_cache() -> None:
    _TRAINERS.clear()
