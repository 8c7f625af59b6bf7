"""nanbench.engines: the fused engine matches Keras fit, and reuses one trace per structure."""

from __future__ import annotations

import gc
import itertools

import numpy as np
import pytest

from conftest import compose_config
from nanbench.data import load
from nanbench.engines import fused
from nanbench.run import execute
from nanbench.spec import from_config

OPTIMIZERS = ["sgd", "momentum", "adam", "rmsprop"]
CLIPPING = ["none", "clipnorm", "clipvalue", "global_clipnorm"]
LOSSES = ["mse", "mae", "huber"]


SMALL_MLP = ["dataset=clean", "dataset.n_samples=70", "dataset.n_features=4", "model=mlp",
             "model.width=8", "model.activation=tanh"]


def _pair(*overrides, problem=tuple(SMALL_MLP)):
    base = [*problem, "train.epochs=2", "train.batch_size=16", "optimizer.lr=0.05",
            "clipping.threshold=0.3", *overrides]
    fit = execute(from_config(compose_config([*base, "train.engine=fit"])))
    fast = execute(from_config(compose_config([*base, "train.engine=fused"])))
    return fit, fast


@pytest.mark.slow
@pytest.mark.parametrize("optimizer,clipping,loss", list(itertools.product(OPTIMIZERS, CLIPPING, LOSSES)))
def test_fused_matches_fit_per_epoch_within_1e_5(optimizer, clipping, loss):
    fit, fast = _pair(f"optimizer={optimizer}", f"clipping={clipping}", f"loss={loss}")
    assert fit.outcome == fast.outcome
    np.testing.assert_allclose(fast.series.epoch_loss, fit.series.epoch_loss, rtol=1e-5)
    np.testing.assert_allclose(fast.series.grad_norm, fit.series.grad_norm, rtol=1e-5)


def test_fused_matches_fit_through_divergence_to_nan():
    fit, fast = _pair("optimizer=sgd", "optimizer.lr=0.01", "train.epochs=30",
                      problem=("dataset=doc000_outlier",))
    assert fit.outcome == fast.outcome == "nan"
    assert fit.verdict == fast.verdict
    assert fit.steps_run == fast.steps_run
    np.testing.assert_array_equal(fit.series.flags, fast.series.flags)


def test_a_run_that_breaks_its_weights_mid_epoch_ends_there_in_both_engines():
    # the fused engine checks the weights once per epoch: the steps after the first NaN in the
    # weights are cut, and that epoch's loss is the running mean at that step, as fit's
    fit, fast = _pair("optimizer=momentum", "optimizer.lr=1.0", "clipping=none", "train.epochs=30",
                      "train.batch_size=8")
    assert fast.steps_run % fast.series.steps_per_epoch != 0  # mid-epoch
    assert fit.steps_run == fast.steps_run
    assert fit.verdict == fast.verdict and fast.outcome == "nan"
    np.testing.assert_array_equal(fit.series.flags, fast.series.flags)
    np.testing.assert_allclose(fast.series.epoch_loss, fit.series.epoch_loss, rtol=1e-5)
    np.testing.assert_allclose(fast.series.loss, fit.series.loss, rtol=1e-5)


def test_runs_that_differ_only_in_numbers_share_one_trace():
    fused.clear_cache()
    gc.unfreeze()
    base = from_config(compose_config(["train.engine=fused", "clipping=clipnorm", "train.epochs=2"]))
    results = [execute(base.replace(optimizer={"lr": lr}, clipping={"threshold": t}, train={"seed": s}))
               for lr, t, s in [(1e-3, 1.0, 0), (1e-1, 0.5, 1), (1.0, 2.0, 2)]]
    assert len(fused._TRAINERS) == 1
    assert results[0].first_step_s > 0 and results[1].first_step_s == results[2].first_step_s == 0
    assert gc.get_freeze_count() > 0  # the trace's long-lived objects are out of later collections
    # and each of them still equals a fresh fit run of the same numbers
    for r in results[1:]:
        ref = execute(r.spec.replace(train={"engine": "fit"}))
        np.testing.assert_allclose(r.series.epoch_loss, ref.series.epoch_loss, rtol=1e-5)


@pytest.mark.parametrize("lr,breaks", [(0.05, False), (1.0, True)])
def test_the_forensic_row_is_the_same_taken_before_or_beside_the_update(lr, breaks):
    # one TensorFlow thread: the fused engine takes a step's row before the update; more: beside it
    spec = from_config(compose_config(["train.engine=fused", "optimizer=momentum", f"optimizer.lr={lr}",
                                       "clipping=none", "train.epochs=30", "train.batch_size=8"]))
    data = load(spec.dataset, spec.preprocess)
    outputs = []
    for serial in (True, False):
        trainer = fused.Trainer(spec, data.n_features, "/CPU:0")
        trainer.serial = serial
        outputs.append(trainer.run(spec, data.X, data.y)[:3])
    (rows, epoch_loss, per_epoch), (rows2, epoch_loss2, per_epoch2) = outputs
    assert rows.shape[1] == 4 and len(rows) == len(rows2) and per_epoch == per_epoch2
    assert np.isnan(rows[-1, 3]) == breaks and (len(rows) < 30 * per_epoch) == breaks
    np.testing.assert_array_equal(rows, rows2)
    np.testing.assert_array_equal(epoch_loss, epoch_loss2)


def test_runtime_clip_threshold_changes_the_result():
    spec = from_config(compose_config(["train.engine=fused", "optimizer=sgd", "optimizer.lr=0.1",
                                       "clipping=global_clipnorm", "train.epochs=1"]))
    a = execute(spec.replace(clipping={"threshold": 1e-3}))
    b = execute(spec.replace(clipping={"threshold": 1e3}))
    assert not np.allclose(a.series.loss[1:], b.series.loss[1:])


def test_dropout_and_weight_decay_match_fit_per_epoch():
    # the fused engine's forward pass runs on the weights it read (a StatelessScope): dropout's
    # seed state must advance as in fit, and the L2 penalty must be taken on those weights
    fit, fast = _pair("model.dropout=0.3", "model.weight_decay=0.05", "train.epochs=4")
    assert fit.outcome == fast.outcome
    np.testing.assert_allclose(fast.series.loss, fit.series.loss, rtol=1e-5)
    np.testing.assert_allclose(fast.series.epoch_loss, fit.series.epoch_loss, rtol=1e-5)
    np.testing.assert_allclose(fast.series.weight_norm, fit.series.weight_norm, rtol=1e-5)


@pytest.mark.parametrize("precision", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_trains_in_both_engines(precision):
    fit, fast = _pair(f"train.precision={precision}", "optimizer=adam")
    assert fit.outcome == fast.outcome and fit.outcome in ("converged", "stalled")
    np.testing.assert_allclose(fast.series.epoch_loss, fit.series.epoch_loss, rtol=1e-3)


def test_gpu_requested_without_one_fails_clearly():
    from nanbench.run import resolve_device
    from nanbench.spec import ConfigError
    import tensorflow as tf
    if tf.config.list_physical_devices("GPU"):
        assert resolve_device("gpu") == "/GPU:0"
    else:
        with pytest.raises(ConfigError, match="train.device"):
            resolve_device("gpu")
        assert resolve_device("auto") == "/CPU:0"
