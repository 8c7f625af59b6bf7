"""One training step with forensics: the math both engines share.

The step is Keras's own `train_step` (TensorFlow backend): forward pass, `compute_loss` (compiled
loss plus regularization losses), loss scaling, `tape.gradient`, `optimizer.apply` (which clips
and updates), with cheap in-graph checks around it. Each step yields four numbers:

- ``loss``: the batch loss (what Keras averages into the epoch loss);
- ``grad_norm``: the global L2 norm of the gradients before clipping (after unscaling);
- ``weight_norm``: the global L2 norm of the trainable weights after the update;
- ``flags``: a bit set saying which of input, loss, gradients and weights held inf or NaN.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from nanbench.forensics import INF_BIT, NAN_BIT, SKIPPED_BIT


def _bits(tensors, source: str) -> tf.Tensor:
    inf = tf.reduce_any(tf.stack([tf.reduce_any(tf.math.is_inf(t)) for t in tensors]))
    nan = tf.reduce_any(tf.stack([tf.reduce_any(tf.math.is_nan(t)) for t in tensors]))
    return tf.cast(inf, tf.int32) * INF_BIT[source] + tf.cast(nan, tf.int32) * NAN_BIT[source]


def global_norm(tensors) -> tf.Tensor:
    """L2 norm over all tensors, in float64 so that squaring large finite values cannot overflow."""
    return tf.sqrt(tf.add_n([tf.reduce_sum(tf.square(tf.cast(t, tf.float64))) for t in tensors]))


def loss_scaled(optimizer) -> bool:
    return isinstance(optimizer, keras.optimizers.LossScaleOptimizer)


def forensic_step(model: keras.Model, optimizer, x, y, *, forensics: bool = True) -> dict:
    """Run one Keras training step on (x, y) and return its loss and forensic numbers."""
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
        flags = _bits([x, y], "input") + _bits([loss], "loss")
        grad_bits = _bits(true_grads, "gradients")
        if loss_scaled(optimizer):
            grad_bits = tf.where(grad_bits > 0, SKIPPED_BIT, 0)
        grad_norm = global_norm(true_grads)
    optimizer.apply(grads, weights)
    if not forensics:
        return {"loss": loss}
    values = [w.value for w in weights]
    flags = flags + grad_bits + _bits(values, "weights")
    return {"loss": loss, "grad_norm": grad_norm, "weight_norm": global_norm(values), "flags": flags}
