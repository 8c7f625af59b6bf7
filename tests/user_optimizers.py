"""A user's optimizer class for the tests (``optimizer.class=user_optimizers.MovingAverageAdam``):
imported by nanbench.model.resolve_class when a run builds it, so Keras is imported then."""

from __future__ import annotations

import keras


class MovingAverageAdam(keras.optimizers.Adam):
    """Adam keeping a moving average of the weights (Keras's use_ema): an apply that is more than
    an update of the weights, which runs side by side do not run (nanbench.engines.updates)."""

    def __init__(self, learning_rate=0.001, **kwargs):
        super().__init__(learning_rate=learning_rate, use_ema=True, **kwargs)
