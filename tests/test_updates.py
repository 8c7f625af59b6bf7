"""nanbench.engines.updates: each run's own Keras optimizer applied to runs side by side, probed per class."""

from __future__ import annotations

from nanbench.engines import updates

SHAPES = ((3, 4), (4,), (4, 1), (1,))  # a tiny Dense stack: kernel, bias per layer


def test_an_elementwise_update_is_stacked_and_one_that_reduces_over_a_variable_runs_run_by_run():
    # Nadam and Adagrad update each element from that element alone (and Nadam's running product,
    # a scalar state, per run): one apply for all runs gives each run its own optimizer's bits
    for cls in ("keras.optimizers.Nadam", "keras.optimizers.Adagrad"):
        assert updates.update_mode(cls, 0.0, SHAPES, "/CPU:0") == updates.STACKED, cls
    # Lamb scales each variable's step by the ratio of its norm to the step's (a reduction over the
    # whole variable): stacked, that norm would be over every run's values; each run's own apply
    # in a loop over the runs gives its bits
    assert updates.update_mode("keras.optimizers.Lamb", 0.0, SHAPES, "/CPU:0") == updates.PER_RUN


def test_stacked_shape_keeps_every_value_rank_three_so_a_learning_rate_per_run_broadcasts():
    assert updates.stacked_shape((10, 64)) == (10, 64)
    assert updates.stacked_shape((64,)) == (1, 64)
    assert updates.stacked_shape(()) == (1, 1)
