"""nanbench.studies.examples.in_nanbench: an example trained inside nanbench."""

from __future__ import annotations

import numpy as np

from nanbench.studies.examples.definitions import BY_KEY
from nanbench.studies.examples.in_nanbench import capped, keras_optimizer, run_in_nanbench


def test_epochs_cap_is_a_listed_change():
    ex = BY_KEY["doc003-ex1"]
    assert capped(ex, 3) == (3, ("epochs=100 capped at 3 (--epochs-cap)",))
    assert capped(ex, None) == (100, ())
    assert capped(ex, 500) == (100, ())


def test_optimizer_arguments_are_passed_as_the_code_passes_them():
    import keras
    assert keras_optimizer("adam") == "adam"
    opt = keras_optimizer(("SGD", {"learning_rate": 0.3, "clipnorm": 1.0}))
    assert isinstance(opt, keras.optimizers.SGD) and opt.clipnorm == 1.0
    assert float(opt.learning_rate) == np.float32(0.3)


def test_the_unscaled_outlier_example_overflows_with_sgd():
    """doc000 example 1 with SGD (lr 0.01) on X up to 1000 (4 rows: one step an epoch): every
    step overshoots, the loss grows ~1e7x a step and overflows float32 at step 5, as inf."""
    result, caught, losses = run_in_nanbench(BY_KEY["doc000-ex1/sgd"])
    v = result.verdict
    assert result.outcome == "inf" and v.first_nonfinite_step == v.first_inf_step == 5
    assert v.first_nonfinite_source == "loss" and v.first_nan_step is None
    assert any("input_shape" in w for w in caught)  # Keras warns about Dense(input_shape=...)
    assert len(losses) == 10 and np.isfinite(losses[:5]).all() and np.isinf(losses[5:]).all()
