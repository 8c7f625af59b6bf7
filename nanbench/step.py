"""One training step with forensics: the math both engines share.

The step is Keras's own `train_step` (TensorFlow backend): forward pass, `compute_loss` (compiled
loss plus regularization losses), loss scaling, `tape.gradient`, `optimizer.apply` (which clips
and updates). Around it, forensics costs three reductions, because a sum of squares taken in
float64 is itself the non-finite check: it is NaN iff some element is NaN, +inf iff some element
is infinite and none is NaN, and it cannot overflow for finite float32 inputs. Each step yields:

- ``loss``: the batch loss (what Keras averages into the epoch loss);
- ``input_sq``: the sum of squares of the batch (x and y);
- ``grad_sq``: the sum of squares of the gradients before clipping (after unscaling);
- ``weight_sq``: the sum of squares of the trainable weights after the update.

On the host, square roots give the global gradient and weight norms, and
nanbench.forensics.step_flags turns the four numbers into the per-step inf/NaN flags.
"""

from __future__ import annotations

import keras
import tensorflow as tf


def sum_of_squares(tensors) -> tf.Tensor:
    """Sum of squares over all tensors, in float64 (no overflow for finite float32 values).

    The tensors are flattened into one vector first: one cast, square and sum instead of one
    per tensor, which matters when a step is a few hundred microseconds."""
    flat = tf.concat([tf.reshape(tf.cast(t, tf.float32), [-1]) for t in tensors], axis=0)
    return tf.reduce_sum(tf.square(tf.cast(flat, tf.float64)))


def loss_scaled(optimizer) -> bool:
    return isinstance(optimizer, keras.optimizers.LossScaleOptimizer)


def row_sums_of_squares(X, y) -> tf.Tensor:
    """Per row, the sum of squares of its features and target (float64): a batch's ``input_sq``
    is the sum of its rows' values, so an engine that batches fixed data computes this once."""
    return tf.reduce_sum(tf.square(tf.cast(X, tf.float64)), axis=1) + tf.square(tf.cast(y[:, 0], tf.float64))


def forensic_step(model: keras.Model, optimizer, x, y, *, forensics: bool = True, input_sq=None) -> dict:
    """Run one Keras training step on (x, y) and return its loss and forensic numbers.

    ``input_sq`` may be given when the caller already has it (see row_sums_of_squares)."""
    with tf.GradientTape() as tape:
        y_pred = model(x, training=True)
        loss = model.compute_loss(x=x, y=y, y_pred=y_pred, training=True)
        scaled_loss = optimizer.scale_loss(loss)
    weights = model.trainable_weights
    grads = tape.gradient(scaled_loss, weights)
    if forensics:
        if loss_scaled(optimizer):
            if not optimizer.built:  # dynamic_scale must exist to unscale
                optimizer.build(weights)
            true_grads = [g / tf.cast(optimizer.dynamic_scale, g.dtype) for g in grads]
        else:
            true_grads = grads
        if input_sq is None:
            input_sq = sum_of_squares([x, y])
        grad_sq = sum_of_squares(true_grads)
    optimizer.apply(grads, weights)
    if not forensics:
        return {"loss": loss}
    return {"loss": loss, "input_sq": input_sq, "grad_sq": grad_sq,
            "weight_sq": sum_of_squares([w.value for w in weights])}
