"""One training step with forensics: the math both engines share.

The step is Keras's own `train_step` (TensorFlow backend): forward pass, `compute_loss` (compiled
loss plus regularization losses), loss scaling, `tape.gradient`, `optimizer.apply` (which clips
and updates). Forensics looks at three things around it: the batch (x and y), the gradients
before clipping (after unscaling) and the trainable weights after the update. Each is reduced to
a sum of squares taken in float64, which is itself the non-finite check: it is NaN iff some
element is NaN, +inf iff some element is infinite and none is NaN, and it cannot overflow for
finite float32 inputs. Per step:

- ``loss``: the batch loss (what Keras averages into the epoch loss);
- ``input_sq``: the sum of squares of the batch (x and y);
- ``grad_sq``: the sum of squares of the gradients before clipping (after unscaling);
- ``weight_sq``: the sum of squares of the trainable weights after the update.

The fit engine reduces every step (forensic_step). The fused engine runs each step on weights it
read itself (keras_gradients's ``weights``), keeps the step's loss, gradients and those weights as
one float32 row (flat) and reduces all of a run's rows at once (sums_of_squares), which is the
same arithmetic in a fraction of a step's ops. On the host, square roots give the global gradient
and weight norms, and nanbench.forensics.step_flags turns the four numbers into the per-step inf/NaN flags.
"""

from __future__ import annotations

import keras
import tensorflow as tf


def _flat(t) -> tf.Tensor:
    """``t`` as a vector; vectors (biases) as they are, since a step's reshape is an op to run."""
    return t if t.shape.rank == 1 else tf.reshape(t, [-1])


def flat(tensors) -> tf.Tensor:
    """All tensors as one float32 vector (one concat: a step is a few hundred microseconds)."""
    return tf.concat([_flat(tf.cast(t, tf.float32)) for t in tensors], axis=0)


def unflatten(vector, shapes) -> list:
    """A flat vector (flat's order) as one NumPy array per shape."""
    import numpy as np
    ends = np.cumsum([int(np.prod(shape)) for shape in shapes])
    return [part.reshape(shape) for part, shape in zip(np.split(vector, ends[:-1]), shapes)]


def sum_of_squares(tensors) -> tf.Tensor:
    """Sum of squares over all tensors, in float64 (no overflow for finite float32 values)."""
    return tf.reduce_sum(tf.square(tf.cast(flat(tensors), tf.float64)))


def grouped_squares(rows: tf.Tensor, parts: int) -> tf.Tensor:
    """For a [steps, parts * size] float32 matrix (one flat vector of `parts` equal-size groups
    per step), each element's square in float64: [steps, parts, size]."""
    return tf.square(tf.cast(tf.reshape(rows, [tf.shape(rows)[0], parts, -1]), tf.float64))


def sums_of_squares(rows: tf.Tensor, parts: int) -> tf.Tensor:
    """Each step's sum of squares per group of grouped_squares, in float64: [steps, parts]."""
    return tf.reduce_sum(grouped_squares(rows, parts), axis=2)


def loss_scaled(optimizer) -> bool:
    return isinstance(optimizer, keras.optimizers.LossScaleOptimizer)


def row_sums_of_squares(X, y) -> tf.Tensor:
    """Per row, the sum of squares of its features and target (float64): a batch's ``input_sq``
    is the sum of its rows' values, so an engine that batches fixed data computes this once."""
    return (tf.reduce_sum(tf.square(tf.cast(X, tf.float64)), axis=1)
            + tf.reduce_sum(tf.square(tf.cast(y, tf.float64)), axis=1))


def keras_gradients(model: keras.Model, optimizer, x, y, *, weights=None):
    """Keras's training step on (x, y) up to the update. Returns the loss, the gradients to apply
    (scaled under loss scaling) and the true gradients (unscaled; the same list without loss
    scaling), in the order of the trainable weights.

    With ``weights`` (the trainable weights' values, as read by the caller just before the step),
    the forward pass runs on them: Keras runs the same layers and loss inside a
    ``keras.StatelessScope``, and what the layers update there (dropout's seed state) is assigned
    back. A caller that keeps the weights a step starts from then pays no reads of its own: the
    forward pass would read them anyway."""
    trainable = model.trainable_weights
    with tf.GradientTape() as tape:
        if weights is None:
            y_pred = model(x, training=True)
            loss = model.compute_loss(x=x, y=y, y_pred=y_pred, training=True)
        else:
            tape.watch(weights)
            with keras.StatelessScope(state_mapping=list(zip(trainable, weights))) as scope:
                y_pred = model(x, training=True)
                loss = model.compute_loss(x=x, y=y, y_pred=y_pred, training=True)
        scaled_loss = optimizer.scale_loss(loss)
    if weights is not None:
        for variable in model.non_trainable_variables:
            value = scope.get_current_value(variable)
            if value is not None:
                variable.assign(value)
    grads = tape.gradient(scaled_loss, trainable if weights is None else weights)
    true_grads = grads
    if loss_scaled(optimizer):
        if not optimizer.built:  # dynamic_scale must exist to unscale
            optimizer.build(trainable)
        true_grads = [g / tf.cast(optimizer.dynamic_scale, g.dtype) for g in grads]
    return loss, grads, true_grads


def full_loss(model: keras.Model, X, y) -> tf.Tensor:
    """The loss over the whole data set at the model's current weights, in inference mode (no
    dropout), as ``Model.evaluate`` computes it on one batch: the baseline and the end point of
    the outcome rule (nanbench.forensics.classify), free of which rows a batch happened to hold."""
    y_pred = model(X, training=False)
    return tf.cast(model.compute_loss(x=X, y=y, y_pred=y_pred, training=False), tf.float32)


def keras_step(model: keras.Model, optimizer, x, y):
    """Run one Keras training step on (x, y): keras_gradients, then ``optimizer.apply`` (which
    clips and updates). Returns the loss and the true gradients (a caller that does not use them
    leaves their unscaling out of the graph: nothing depends on it)."""
    loss, grads, true_grads = keras_gradients(model, optimizer, x, y)
    optimizer.apply(grads, model.trainable_weights)
    return loss, true_grads


def forensic_step(model: keras.Model, optimizer, x, y) -> dict:
    """Run one Keras training step on (x, y) and return its loss and forensic sums of squares
    (and each trainable variable's gradient sum of squares, for the per-layer gradient norms)."""
    loss, grads = keras_step(model, optimizer, x, y)
    return {"loss": loss, "input_sq": sum_of_squares([x, y]), "grad_sq": sum_of_squares(grads),
            "weight_sq": sum_of_squares([w.value for w in model.trainable_weights]),
            "variable_grad_sq": tf.stack([sum_of_squares([g]) for g in grads])}
