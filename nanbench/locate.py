"""Which layer first held a non-finite value: a replay of a run's first non-finite step.

The per-step forensics (nanbench.step) say *where in the step* a run first went non-finite: its
batch, its loss, its gradients or its weights after the update. This module says *which layer*.
It replays that one step on the weights the step started from and the batch it trained on, with
Keras's own layers and loss, and walks the step in data-flow order:

1. ``input``: the batch itself (x or y) holds inf/NaN: the data, before the model;
2. each layer's output, first layer to last (part ``output``);
3. ``loss``: the loss value (part ``output``), then its gradient with respect to the model's
   output (part ``gradient``; e.g. the infinite derivative of ``sqrt`` at 0);
4. each layer's gradients, last layer to first, as backpropagation produces them: with respect to
   its weights and its input (part ``gradient``);
5. each layer's weights after the update, first layer to last (part ``weights``).

The first place holding inf/NaN is the run's ``first_nonfinite_layer`` and its part. A replay
costs one eager forward and backward pass, paid once per run that went non-finite (and not at
all when its batch was: ``input`` needs no replay), never per step.
Under loss scaling (mixed_float16), non-finite gradients are the scaler's skipped steps, not a
run's first non-finite value, so step 4 is left out.

Randomness in training (Dropout's mask, GaussianNoise, ...: every layer's ``SeedGenerator``): the
engines keep the step's weights, not its seed state, so the replay cannot draw the step's own
mask directly. A generator's state moves by (0, 1) per draw (keras.random.SeedGenerator.next),
one draw per layer per training step, so the states the run went through are the state it ended
with minus (0, j), j = 0, 1, ...: the replay draws its masks from those, last first, up to
:data:`RANDOM_DRAWS` of them, and answers from the first replay that reproduces what the step
recorded, its first non-finite *source* (the loss value for ``loss``; a gradient, with a finite
loss, for ``gradients``; nothing before the update for ``weights``). When none does, the layer
is unknown (None), never a layer the step did not go non-finite in (a ``0 * log(0)`` that only
the step's mask made is the loss, not the weights the NaN update reached).
A value from a rounding at the very edge of float32's range that the eager replay does not
repeat falls to the weights' check, or to no layer (None).
"""

from __future__ import annotations

from typing import Callable

import keras
import numpy as np
import tensorflow as tf

INPUT = "input"   # the layer name of a non-finite batch
LOSS = "loss"     # ... of a non-finite loss value or loss gradient
PARTS = ("output", "gradient", "weights")  # first_nonfinite_part's values
RANDOM_DRAWS = 64  # seed states a replay of a model with random layers tries before the layer is unknown


def owned_weights(model: keras.Model) -> list[list[int]]:
    """Per layer of ``model.layers``, the indices of its weights in ``model.trainable_weights``
    (a recurrent layer's cell weights are its own; empty for a layer without weights)."""
    index = {id(w): i for i, w in enumerate(model.trainable_weights)}
    return [[index[id(w)] for w in layer.trainable_weights if id(w) in index] for layer in model.layers]


def weighted_layers(model: keras.Model) -> list[tuple[str, list[int]]]:
    """The model's layers that own trainable weights, in order, each with owned_weights's indices."""
    return [(layer.name, owned) for layer, owned in zip(model.layers, owned_weights(model)) if owned]


def layer_grad_norms(model: keras.Model, variable_sq: np.ndarray) -> dict[str, np.ndarray]:
    """Per weighted layer, each step's gradient norm from each step's per-variable gradient sums
    of squares ([steps, variables], float64, trainable_weights' order)."""
    variable_sq = np.asarray(variable_sq, dtype=np.float64).reshape(len(variable_sq), -1)
    return {name: np.sqrt(variable_sq[:, owned].sum(axis=1)) for name, owned in weighted_layers(model)}


def _nonfinite(t) -> tf.Tensor:
    return tf.logical_not(tf.reduce_all(tf.math.is_finite(tf.cast(t, tf.float32))))


class Locator:
    """The replay of one step for one built (and compiled) model: forward layer by layer, the
    loss, and the gradients, each reduced to one is-it-non-finite flag. It runs eagerly: a
    replay is paid only by a run that went non-finite, and tracing it would cost more than
    the few replays of a structure."""

    def __init__(self, model: keras.Model, loss_scaled: bool):
        self.model = model
        self.loss_scaled = loss_scaled
        self.layers = list(model.layers)
        try:  # every layer's output as the model computes it (Sequential and functional models)
            self.probe = keras.Model(model.inputs, [layer.output for layer in self.layers])
        except (AttributeError, ValueError, TypeError):
            self.probe = None  # a subclassed model: no layer graph to walk
        self.owned = owned_weights(model)
        self.weighted = [(layer.name, owned) for layer, owned in zip(self.layers, self.owned) if owned]
        self.seed_states = [layer.seed_generator.state for layer in model._flatten_layers(include_self=False)
                            if isinstance(getattr(layer, "seed_generator", None), keras.random.SeedGenerator)]

    def _flags(self, weights, x, y, training: bool, states=()):
        """[layers] output flags, the loss's value and gradient flags, [layers] gradient flags."""
        trainable = self.model.trainable_weights
        x = tf.convert_to_tensor(x)
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(weights)
            tape.watch(x)
            with keras.StatelessScope(state_mapping=list(zip(trainable, weights)) + list(states)):
                outs = self.probe(x, training=training)
                outs = list(outs) if isinstance(outs, (list, tuple)) else [outs]
                loss = self.model.compute_loss(x=x, y=y, y_pred=outs[-1], training=training)
        out_flags = tf.stack([_nonfinite(h) for h in outs])
        loss_flag = _nonfinite(loss)
        if self.loss_scaled or not training:
            return out_flags, loss_flag, tf.constant(False), tf.zeros([len(outs)], tf.bool)
        d_outs = tape.gradient(loss, outs, unconnected_gradients="zero")
        d_x = tape.gradient(loss, x, unconnected_gradients="zero")
        d_w = tape.gradient(loss, weights, unconnected_gradients="zero")
        grad_flags = []
        for k, owned in enumerate(self.owned):  # what layer k's backward pass produces
            produced = [d_outs[k - 1] if k else d_x] + [d_w[i] for i in owned]
            grad_flags.append(tf.reduce_any(tf.stack([_nonfinite(g) for g in produced])))
        return out_flags, loss_flag, _nonfinite(d_outs[-1]), tf.stack(grad_flags)

    def _replayed(self, weights, x, y, training: bool, states) -> tuple[str, str] | None:
        """(layer, part) of the first non-finite value of the forward and backward pass; None when both are finite."""
        out_flags, loss_flag, loss_grad, grad_flags = (
            np.asarray(f) for f in self._flags(weights, tf.constant(x), tf.constant(y), training, states))
        for k in np.flatnonzero(out_flags)[:1]:
            return self.layers[k].name, "output"
        if loss_flag:
            return LOSS, "output"
        if loss_grad:
            return LOSS, "gradient"
        for k in np.flatnonzero(grad_flags)[::-1][:1]:
            return self.layers[k].name, "gradient"
        return None

    def __call__(self, before, after, x, y, *, source: str, training: bool = True) -> tuple[str | None, str | None]:
        """(layer, part) of the first non-finite value of a step whose first non-finite source is
        `source`, replayed on `before` (the trainable weights it started from) and its batch
        (x, y); `after`: the weights it left (None: not kept). (None, None) when the replay does not
        find it (a subclassed model, or a value only the step's own dropout mask made)."""
        x, y = np.asarray(x), np.asarray(y)
        if source == "input" or not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
            return INPUT, "output"
        if self.probe is not None:
            weights = [tf.constant(np.asarray(w), dtype=v.dtype) for w, v in zip(before, self.model.trainable_weights)]
            random = training and bool(self.seed_states)
            for back in range(RANDOM_DRAWS if random else 1):  # the seed states the run went through, last first
                states = [(v, tf.constant(np.asarray(v.numpy()) - np.array([0, back]), dtype=v.dtype))
                          for v in self.seed_states] if back else []
                if any(int(value.numpy()[1]) < 0 for _, value in states):
                    continue
                found = self._replayed(weights, x, y, training, states)
                if not random or _stage(found) == source:
                    break
            else:  # no mask reproduced the step's source: the layer is unknown, not a wrong one
                return None, None
            if found is not None:
                return found
        if after is not None:
            for name, owned in self.weighted:
                if not all(np.all(np.isfinite(after[i])) for i in owned):
                    return name, "weights"
        return None, None


def _stage(found: tuple[str, str] | None) -> str:
    """The step's source a replay's finding corresponds to (nanbench.vocab.SOURCES): a layer's
    output or the loss value is ``loss``, a gradient ``gradients``, nothing before the update ``weights``."""
    if found is None:
        return "weights"
    return "loss" if found[1] == "output" else "gradients"


def batch_rows(n: int, batch_size: int, seed: int, shuffle: bool, step: int) -> np.ndarray:
    """The rows step `step` trained on in the fused and side-by-side engines: the epoch's order
    (a stateless shuffle seeded by (seed, epoch), as their graphs draw it), then the step's slice."""
    per_epoch = -(-n // batch_size)
    epoch, i = divmod(step, per_epoch)
    order = (tf.random.experimental.stateless_shuffle(tf.range(n), seed=tf.constant([seed, epoch], tf.int32)).numpy()
             if shuffle else np.arange(n))
    return order[i * batch_size:min((i + 1) * batch_size, n)]


def replay_step(locator: Callable[[], Locator], spec, data, before, after, final):
    """The engines' ``locate``: (step, source) -> (layer, part) for a run of `spec` on `data` whose
    first non-finite step started from `before` and left `after` (the step's batch as the fused
    and side-by-side engines drew it); with no such step, `final` (the weights the run ended with)
    for a run non-finite only in the evaluation after its last step. None when neither was kept.
    `locator` gives the structure's Locator, made on first use."""
    if before is None and final is None:
        return None

    def locate(step: int, source: str) -> tuple[str | None, str | None]:
        if before is None:  # the whole data, in inference mode, as the evaluation after the run
            return locator()(final, None, data.X, data.y, source=source, training=False)
        rows = batch_rows(len(data.X), spec.train.batch_size, spec.train.seed, spec.train.shuffle, step)
        return locator()(before, after, data.X[rows], data.y[rows], source=source)
    return locate
