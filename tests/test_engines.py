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
from nanbench.vocab import STABLE_OUTCOMES
from nanbench.spec import from_config

OPTIMIZERS = ["sgd", "momentum", "adam", "rmsprop"]
CLIPPING = ["none", "clipnorm", "clipvalue", "global_clipnorm"]
LOSSES = ["mse", "mae", "huber"]


SMALL_MLP = ["dataset=clean", "dataset.n_samples=70", "dataset.n_features=4", "model=mlp",
             "model.width=8", "model.activation=tanh"]


def _pair(*overrides, problem=tuple(SMALL_MLP)):
    base = [*problem, "train.epochs=2", "train.batch_size=16", "optimizer.lr=0.05",
            "clipping.threshold=0.3", *overrides]
    fast = from_config(compose_config([*base, "train.engine=fused"]))  # composed once: Hydra costs as much as a run
    return execute(fast.replace(train={"engine": "fit"})), execute(fast)


# pairwise (a covering array of strength 2): every optimizer with every clipping, and every loss
# with every optimizer and every clipping, in 16 runs instead of the 48 of the full product
PAIRWISE = [(opt, clip, LOSSES[(i + j) % len(LOSSES)])
            for i, opt in enumerate(OPTIMIZERS) for j, clip in enumerate(CLIPPING)]


def test_the_pairwise_cases_hold_every_pair_of_factor_values():
    for a, b in itertools.combinations(range(3), 2):
        sizes = [len(OPTIMIZERS), len(CLIPPING), len(LOSSES)]
        assert len({(case[a], case[b]) for case in PAIRWISE}) == sizes[a] * sizes[b]


@pytest.mark.slow
@pytest.mark.parametrize("optimizer,clipping,loss", PAIRWISE)
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


def test_a_falling_loss_on_outliers_is_not_diverged_in_either_engine():
    # the case: the first batch holds no outlier row, so its loss (about 12) is no
    # baseline for a set whose whole-data loss starts near 40,000; the run's loss falls, slowly
    # (clipped steps of 1e-4): stalled, where the first-batch rule said diverged
    fit, fast = _pair("optimizer=sgd", "optimizer.lr=0.0001", "clipping=clipnorm", "clipping.threshold=1.0",
                      "train.epochs=20", "train.batch_size=32", problem=("dataset=outliers",))
    assert fit.outcome == fast.outcome == "stalled"
    assert fit.verdict.initial_loss > 1_000 > fit.series.loss[0]  # the whole data vs the first batch
    assert fit.verdict.final_loss < fit.verdict.initial_loss
    np.testing.assert_allclose([fast.verdict.initial_loss, fast.verdict.final_loss],
                               [fit.verdict.initial_loss, fit.verdict.final_loss], rtol=1e-5)


def test_train_steps_gives_every_dataset_the_same_updates():
    fit, fast = _pair("train.steps=12", problem=("dataset=doc000_clean",))  # 4 rows: 1 step an epoch
    assert fit.steps_run == fast.steps_run == 12
    fit, fast = _pair("train.steps=12")  # 70 rows, batches of 16: 5 steps an epoch, 3 epochs
    assert fit.steps_run == fast.steps_run == 15


def test_dead_relu_units_are_found_in_both_engines():
    relu = [*SMALL_MLP[:-1], "model.activation=relu"]
    fit, fast = _pair("optimizer=sgd", "optimizer.lr=0.001", "train.epochs=1", problem=tuple(relu))
    assert fit.dead_fraction == fast.dead_fraction and 0 <= fit.dead_fraction < 1
    # larger steps leave some units silent on every row (the same ones in both engines) ...
    fit, fast = _pair("optimizer=sgd", "optimizer.lr=0.3", "clipping=none", "train.epochs=5", problem=tuple(relu))
    assert fit.dead_fraction == fast.dead_fraction > 0
    # ... and a run that turns NaN has no dead units at its end, only at the step that broke
    fit, fast = _pair("optimizer=sgd", "optimizer.lr=3.0", "clipping=none", "train.epochs=5", problem=tuple(relu))
    assert fit.outcome == fast.outcome == "nan" and fit.dead_fraction is fast.dead_fraction is None
    assert fit.dead_fraction_at_nonfinite == fast.dead_fraction_at_nonfinite is not None
    tanh = _pair("train.epochs=1")[1]
    assert tanh.dead_fraction is None and tanh.dead_fraction_at_nonfinite is None


def test_a_network_built_dead_is_all_dead():
    from nanbench.model import build_model, dead_fraction
    from nanbench.spec import ModelSpec
    model = build_model(ModelSpec(name="mlp", width=6, depth=2, activation="relu"), 3, seed=0)
    X = np.random.default_rng(0).standard_normal((50, 3)).astype(np.float32)
    assert dead_fraction(model, X) < 0.5
    model.get_layer("hidden0").bias.assign(np.full(6, -1e3, dtype=np.float32))
    assert dead_fraction(model, X) == 1.0  # hidden0 dead, so hidden1 sees zeros: bias 0 -> dead too


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
    # loss, the three sums of squares, and one gradient sum of squares per variable (kernel, bias)
    assert rows.shape[1] == 4 + 2 and len(rows) == len(rows2) and per_epoch == per_epoch2
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
    assert fit.outcome == fast.outcome and fit.outcome in STABLE_OUTCOMES
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


def test_a_nan_initial_loss_is_nan_at_step_0_in_both_engines():
    # realworld's case: unscaled breast_cancer through BatchNorm in inference mode (moving mean 0,
    # variance 1) saturates the sigmoid, and the hand-written log loss takes log(0) * 0 = NaN in
    # the first forward pass; training-mode BatchNorm steps stay finite. Not stalled: NaN at step 0.
    fit, fast = _pair("optimizer=sgd", "optimizer.lr=0.001", "loss=log_loss_naive", "train.batch_size=64",
                      problem=("dataset=breast_cancer", "model=mlp_batchnorm"))
    for run in (fit, fast):
        assert run.outcome == "nan" and not run.trained
        assert (run.verdict.first_nonfinite_step, run.verdict.first_nonfinite_source) == (0, "loss")
        assert (run.first_nonfinite_layer, run.first_nonfinite_part) == ("loss", "output")
        assert np.all(np.isfinite(run.series.loss))  # every training step was finite
    assert fit.verdict == fast.verdict


def test_time_to_target_is_measured_alike_in_both_engines():
    fit, fast = _pair("optimizer=adam", "optimizer.lr=0.05", "train.epochs=12", problem=("dataset=clean",
                      "dataset.n_samples=70", "dataset.n_features=4", "model=linear"))
    assert fit.trained and fast.trained
    np.testing.assert_allclose(fast.series.epoch_full_loss, fit.series.epoch_full_loss, rtol=1e-5)
    assert len(fit.series.epoch_full_loss) == 12
    assert fit.steps_to_target == fast.steps_to_target is not None
    assert fit.steps_to_target % fit.series.steps_per_epoch == 0  # resolution: epochs
    # gated (forensics.TARGET_GATE): measured at the crossing, never after it
    crossing = fit.steps_to_target // fit.series.steps_per_epoch - 1
    for run in (fit, fast):
        assert run.series.epoch_full_loss[crossing] <= 0.1 * run.series.initial_loss
        assert np.isnan(run.series.epoch_full_loss[crossing + 1:]).all()
        assert np.isnan(run.series.epoch_full_loss[:crossing]).sum() >= 1  # far from it, not measured
    assert fit.seconds_to_target > 0 and fast.summary()["steps_to_target"] == fast.steps_to_target


def test_full_batch_time_to_target_takes_the_next_steps_loss_alike_in_both_engines():
    # one step an epoch: step e + 1's loss is the whole data's at epoch e's end (no pass of its own)
    fit, fast = _pair("optimizer=adam", "optimizer.lr=0.2", "train.epochs=40", "train.batch_size=70",
                      problem=("dataset=clean", "dataset.n_samples=70", "dataset.n_features=4", "model=linear"))
    for run in (fit, fast):
        assert run.series.steps_per_epoch == 1
        np.testing.assert_array_equal(run.series.epoch_full_loss[:-1], run.series.loss[1:])
        assert run.series.epoch_full_loss[-1] == run.series.final_loss
    np.testing.assert_allclose(fast.series.epoch_full_loss, fit.series.epoch_full_loss, rtol=1e-5)
    assert fit.steps_to_target == fast.steps_to_target is not None


def test_dead_units_of_a_batchnorm_network_are_those_keras_computes_in_inference_mode():
    import keras

    from nanbench.model import build_model, dead_fraction
    from nanbench.spec import ModelSpec
    model = build_model(ModelSpec(name="mlp_batchnorm", width=6, depth=2, activation="relu"), 3, seed=0)
    X = np.random.default_rng(0).standard_normal((50, 3)).astype(np.float32)
    norm = model.get_layer("batchnorm0")  # moving statistics that shift half the units far below 0
    norm.moving_mean.assign(np.array([0, 0, 0, 50, 50, 50], np.float32))
    norm.moving_variance.assign(np.full(6, 0.5, np.float32))
    model.get_layer("hidden1").bias.assign(np.array([0, 0, 0, 0, -1e3, -1e3], np.float32))
    probe = keras.Model(model.inputs, [model.get_layer(n).output for n in ("hidden0", "hidden1")])
    dead = sum(int(np.sum(np.all(np.asarray(h) == 0, axis=0))) for h in probe(X, training=False))
    assert dead_fraction(model, X) == dead / 12 and dead >= 2
