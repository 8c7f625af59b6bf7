"""nanbench.engines.batched: runs trained side by side equal the same runs trained one at a time."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from conftest import compose_config
from nanbench.data import load
from nanbench.engines import batched, fused, products
from nanbench.run import execute, execute_many
from nanbench.spec import from_config

# shapes whose batched matmul gives each run its own matmul's bits (products.layer_products)
SMALL = ["dataset=outliers", "dataset.n_samples=64", "dataset.n_features=10", "model=mlp", "model.width=64",
         "train.epochs=4", "train.batch_size=32", "clipping.threshold=0.5", "train.engine=fused"]
SERIES = ("loss", "grad_norm", "weight_norm", "flags", "epoch_loss", "epoch_full_loss")


def _spec(*overrides):
    return from_config(compose_config([*SMALL, *overrides]), multirun=True)


def _assert_identical(together, alone):
    for name in SERIES:  # bit for bit, NaN where NaN
        np.testing.assert_array_equal(getattr(together.series, name), getattr(alone.series, name), err_msg=name)
    assert together.series.steps_per_epoch == alone.series.steps_per_epoch
    np.testing.assert_array_equal([together.series.initial_loss, together.series.final_loss],
                                  [alone.series.initial_loss, alone.series.final_loss])
    assert together.dead_fraction == alone.dead_fraction
    assert together.dead_fraction_at_nonfinite == alone.dead_fraction_at_nonfinite


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam", "rmsprop"])
def test_every_clipping_and_loss_side_by_side_is_bit_identical_to_one_at_a_time(optimizer):
    # one call per loss: 4 clip kinds x 3 learning rates x 2 seeds side by side, from stable to
    # runs that turn inf/NaN at different steps (Hydra composes each clip kind once; the numbers
    # are set on its spec: composing all 72 runs took longer than training them)
    for loss in ["mse", "mae", "huber"]:
        clips = {clip: _spec(f"optimizer={optimizer}", f"loss={loss}", f"clipping={clip}")
                 for clip in ["none", "clipnorm", "global_clipnorm", "clipvalue"]}
        specs = [clips[clip].replace(optimizer={"lr": lr}, train={"seed": seed})
                 for clip, lr, seed in itertools.product(clips, [0.01, 3.0, 300.0], [0, 1])]
        datas = [load(s.dataset, s.preprocess) for s in specs]
        together = batched.train_together(specs, datas, "/CPU:0")
        for spec, data, out in zip(specs, datas, together):
            _assert_identical(out, fused.train(spec, data, "/CPU:0"))
        if optimizer in ("sgd", "momentum") and loss == "mse":  # the grid breaks runs, at different steps
            lengths = {len(out.series.loss) for out in together}
            assert len(lengths) >= 3 and any(np.isnan(out.series.weight_norm).any() for out in together)
            assert any(out.series.flags.any() for out in together) and not all(out.series.flags.any() for out in together)


def test_a_run_that_turns_nan_changes_nothing_for_the_runs_beside_it():
    stable, exploding = _spec("optimizer=sgd", "optimizer.lr=0.01"), _spec("optimizer=sgd", "optimizer.lr=1e4")
    data = load(stable.dataset, stable.preprocess)
    alone = batched.train_together([stable, stable], [data, data], "/CPU:0")[0]
    beside, broken = batched.train_together([stable, exploding], [data, data], "/CPU:0")
    _assert_identical(beside, alone)
    assert len(broken.series.loss) < len(beside.series.loss)  # cut at the step that broke its weights
    assert np.isnan(broken.series.weight_norm[-1]) and np.isfinite(broken.series.weight_norm[:-1]).all()


def test_each_run_is_clipped_by_its_own_gradients():
    # global_clipnorm over one run's gradients: a run with a huge threshold beside one with a tiny
    # one is not clipped by the other's norm (each equals its run alone)
    specs = [_spec("optimizer=sgd", "optimizer.lr=0.05", "clipping=global_clipnorm", f"clipping.threshold={t}")
             for t in (1e-3, 1e6)]
    datas = [load(s.dataset, s.preprocess) for s in specs]
    tight, loose = batched.train_together(specs, datas, "/CPU:0")
    assert not np.array_equal(tight.series.loss, loose.series.loss)
    _assert_identical(loose, batched.train_together([specs[1]] * 2, datas, "/CPU:0")[0])


def test_execute_many_groups_by_structure_and_keeps_order_and_results():
    specs = [_spec("optimizer=sgd", f"optimizer.lr={lr}", f"clipping={clip}")
             for lr in (0.01, 0.1) for clip in ("none", "clipnorm")]
    specs.insert(2, _spec("optimizer=adam", "optimizer.lr=0.01"))  # another structure, alone
    specs.append(_spec("optimizer=sgd", "model.dropout=0.5"))    # a structure batched does not write out
    results = execute_many(specs)
    assert [r.spec for r in results] == specs
    assert [r.side_by_side for r in results] == [4, 4, 1, 4, 4, 1]
    for result, spec in zip(results, specs):
        alone = execute(spec)
        assert result.outcome == alone.outcome
        np.testing.assert_array_equal(result.series.loss, alone.series.loss)
    assert execute_many(specs[:2], side_by_side=1)[0].side_by_side == 1


def test_a_layer_whose_batched_matmul_rounds_otherwise_multiplies_run_by_run_with_the_same_bits():
    # 4 features into 8 units: TensorFlow's batched kernel sums these dot products in another
    # order; each run's own matmul (in a loop over the runs) gives the bits of the run alone
    odd = [_spec("optimizer=sgd", "dataset.n_features=4", "model.width=8", f"optimizer.lr={lr}", f"clipping={clip}")
           for lr, clip in itertools.product((0.01, 0.1, 30.0), ("none", "global_clipnorm"))]
    assert products.layer_products(odd[0], 64, 4, len(odd))[0] == products.PER_RUN
    datas = [load(s.dataset, s.preprocess) for s in odd]
    together = batched.train_together(odd, datas, "/CPU:0")
    for spec, data, out in zip(odd, datas, together):
        _assert_identical(out, fused.train(spec, data, "/CPU:0"))
    assert any(np.isnan(out.series.weight_norm).any() for out in together)  # lr 30 breaks, the rest go on
    results = execute_many(odd)
    assert {r.side_by_side for r in results} == {len(odd)}


def test_the_doc003_example_trains_side_by_side_with_the_bits_of_each_run_alone():
    # 4 rows of 2 features into 64 units: the batched kernel rounds the first layer otherwise
    specs = [from_config(compose_config(["dataset=doc003_outlier", "model=mlp", "model.width=64", "train.steps=40",
                                         "train.engine=fused", f"optimizer={opt}", f"optimizer.lr={lr}"]), multirun=True)
             for opt, lr in itertools.product(("sgd", "adam"), (1e-3, 1e-1))]
    data = load(specs[0].dataset, specs[0].preprocess)
    assert products.layer_products(specs[0], data.n_samples, data.n_features, 2) == (products.PER_RUN, products.BATCHED)
    results = execute_many(specs)
    assert {r.side_by_side for r in results} == {2}
    for result, spec in zip(results, specs):
        alone = execute(spec)
        assert result.outcome == alone.outcome
        for name in SERIES:
            np.testing.assert_array_equal(getattr(result.series, name), getattr(alone.series, name), err_msg=name)


NADAM = ("optimizer=adam", "optimizer.class=keras.optimizers.Nadam", "optimizer.name=nadam")  # a copy of adam.yaml


def test_a_new_optimizer_file_trains_side_by_side_like_adam_with_the_bits_of_each_run_alone():
    # an option file naming another Keras class (here adam.yaml's keys with Nadam's class): its
    # runs train side by side as Adam's do, each with the bits it gets alone, at its own rate
    specs = [_spec(*opt, f"optimizer.lr={lr}", f"clipping={clip}")
             for opt in (NADAM, ("optimizer=adam",)) for lr, clip in ((1e-3, "none"), (0.1, "clipnorm"))]
    results = execute_many(specs)
    assert [r.side_by_side for r in results] == [2, 2, 2, 2]
    assert not np.array_equal(results[0].series.loss, results[1].series.loss)  # each its own learning rate
    assert not np.array_equal(results[0].series.loss, results[2].series.loss)  # Nadam is not Adam
    for result, spec in zip(results[:2], specs):  # Adam's runs: pinned by the tests above
        alone = execute(spec)
        assert result.outcome == alone.outcome and alone.side_by_side == 1
        for name in SERIES:
            np.testing.assert_array_equal(getattr(result.series, name), getattr(alone.series, name), err_msg=name)


@pytest.mark.parametrize("cls", ["Adagrad", "AdamW", pytest.param("Lion", marks=pytest.mark.slow),
                                 pytest.param("Ftrl", marks=pytest.mark.slow),
                                 pytest.param("Lamb", marks=pytest.mark.slow)])
def test_any_keras_optimizer_side_by_side_is_bit_identical_to_one_at_a_time(cls):
    # AdamW's weight decay, Lion's sign, Ftrl's powers and Adagrad's accumulator start: each run's
    # own optimizer's arithmetic; Lamb's trust ratio (a norm over a variable) in a loop over the
    # runs (nanbench.engines.updates.PER_RUN); a rate that breaks its run beside ones that do not
    specs = [_spec("optimizer=adam", f"optimizer.class=keras.optimizers.{cls}", f"optimizer.name={cls.lower()}",
                   "train.epochs=2", f"optimizer.lr={lr}", f"clipping={clip}")
             for lr, clip in ((1e-3, "none"), (0.05, "global_clipnorm"), (1e4, "none"))]
    datas = [load(s.dataset, s.preprocess) for s in specs]
    for spec, data, out in zip(specs, datas, batched.train_together(specs, datas, "/CPU:0")):
        _assert_identical(out, fused.train(spec, data, "/CPU:0"))


def test_runs_of_an_optimizer_no_update_side_by_side_reproduces_train_alone_and_one_line_says_so(capsys):
    # a user's class whose apply also keeps a moving average of the weights: its runs train one
    # at a time (and train), the line on stderr says how many and which class
    specs = [_spec("optimizer=adam", "optimizer.class=user_optimizers.MovingAverageAdam", "optimizer.name=ema_adam",
                   "train.epochs=1", f"optimizer.lr={lr}") for lr in (1e-3, 1e-2)]
    results = execute_many(specs)
    assert [r.side_by_side for r in results] == [1, 1] and {r.outcome for r in results}.isdisjoint({"error"})
    assert ("nanbench: 2 run(s) train one at a time (2 of user_optimizers.MovingAverageAdam)"
            in capsys.readouterr().err)


def test_what_batched_writes_out_and_what_it_leaves_to_fused():
    assert batched.supports(_spec("optimizer=rmsprop", "loss=huber", "clipping=clipvalue"))
    assert batched.supports(_spec("model=linear", "optimizer=momentum"))
    assert batched.supports(_spec(*NADAM))  # any Keras optimizer (nanbench.engines.updates)
    for other in (["model.dropout=0.2"], ["model.weight_decay=0.01"], ["train.precision=mixed_float16"]):
        try:
            spec = _spec(*other)
        except Exception:  # noqa: BLE001 - an option the config refuses is not a case here
            continue
        assert not batched.supports(spec), other
