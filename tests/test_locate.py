"""nanbench.locate through the engines: planted runs whose first non-finite layer is known, named
alike by fit, fused and runs trained side by side; per-layer gradient norms that add up to the
global norm and survive steps.csv."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import compose_config
from nanbench.forensics import series_from_steps_csv
from nanbench.run import execute, execute_many
from nanbench.spec import from_config
from nanbench.tracking.record import steps_csv

ENGINES = ["fit", "fused"]

# (overrides, source, layer, part): the first non-finite value of each planted run
PLANTED = {
    # a NaN row in the data of a 3-layer model: the batch, before any layer
    "nan input": (["dataset=nan_inputs", "model=mlp", "model.depth=2"], "input", "input", "output"),
    # the hand-written (x - mean) / std on a zero-variance column: the data, before the model
    "zero std": (["dataset=constant_feature", "dataset.n_samples=64", "preprocess=manual_standard"],
                 "input", "input", "output"),
    # log(0) in a hand-written log loss, once the sigmoid saturates on separable classes
    "log(0)": (["dataset=separable", "optimizer=sgd", "optimizer.lr=10", "loss=log_loss_naive", "train.epochs=5"],
               "loss", "loss", "output"),
    # sqrt at a perfect fit: the loss is 0, its gradient 1 / (2 sqrt(0)) times a zero residual
    "sqrt(0)": (["dataset=constant_feature", "dataset.n_samples=32", "dataset.n_features=1", "dataset.noise=0",
                 "preprocess=minmax", "preprocess.scale_target=true", "loss=rmse"], "gradients", "loss", "gradient"),
    # kernels 1e35 times Keras's on large-magnitude features: the first Dense layer overflows
    "huge init": (["dataset=unscaled", "model=mlp", "model.depth=2", "model.init_scale=1e35"],
                  "loss", "hidden0", "output"),
    # a finite step whose update overflows: lr 1e38 times a gradient above 3.4
    "huge update": (["dataset=unscaled", "model=linear", "optimizer=sgd", "optimizer.lr=1e38"],
                    "weights", "output", "weights"),
}


def run(engine: str, overrides, epochs: int = 2):
    has_epochs = any(o.startswith("train.epochs=") for o in overrides)
    return execute(from_config(compose_config(
        [*overrides, f"train.engine={engine}", *([] if has_epochs else [f"train.epochs={epochs}"])])))


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("case", list(PLANTED))
def test_a_planted_run_names_its_first_nonfinite_layer_and_part(engine, case):
    overrides, source, layer, part = PLANTED[case]
    result = run(engine, overrides)
    assert result.outcome in ("nan", "inf"), result.error
    assert result.verdict.first_nonfinite_source == source
    assert (result.first_nonfinite_layer, result.first_nonfinite_part) == (layer, part)
    summary = result.summary()
    assert (summary["first_nonfinite_layer"], summary["first_nonfinite_part"]) == (layer, part)


@pytest.mark.parametrize("engine", ENGINES)
def test_a_finite_run_names_no_layer(engine):
    result = run(engine, ["dataset=clean", "model=mlp", "optimizer.lr=0.001"])
    assert result.outcome not in ("nan", "inf")
    assert result.first_nonfinite_layer is None and result.first_nonfinite_part is None


@pytest.mark.parametrize("engine", ENGINES)
def test_layer_gradient_norms_add_up_to_the_global_norm_and_survive_steps_csv(engine):
    result = run(engine, ["dataset=unscaled", "model=mlp", "model.depth=2", "optimizer=sgd", "optimizer.lr=0.01"],
                 epochs=3)
    s = result.series
    assert list(s.layer_grad_norm) == ["hidden0", "hidden1", "output"]
    per_layer = np.stack(list(s.layer_grad_norm.values()))
    finite = np.isfinite(s.grad_norm)
    assert finite.any()
    np.testing.assert_allclose(np.sqrt((per_layer[:, finite] ** 2).sum(axis=0)), s.grad_norm[finite], rtol=1e-9)
    back = series_from_steps_csv(steps_csv(result), s.initial_loss, s.final_loss)
    for name, norms in s.layer_grad_norm.items():
        np.testing.assert_array_equal(back.layer_grad_norm[name], norms)


def test_both_engines_give_the_same_layer_gradient_norms_for_a_recurrent_model():
    fit, fused = (run(engine, ["dataset=sequences", "model=lstm", "optimizer=sgd", "optimizer.lr=0.1"]).series
                  for engine in ENGINES)
    assert list(fit.layer_grad_norm) == list(fused.layer_grad_norm) == ["lstm0", "output"]
    for name in fit.layer_grad_norm:
        np.testing.assert_allclose(fused.layer_grad_norm[name], fit.layer_grad_norm[name], rtol=1e-4)


def test_runs_side_by_side_name_the_same_layers_and_norms_as_alone():
    specs = [from_config(compose_config(["dataset=unscaled", "model=mlp", "optimizer=sgd", f"optimizer.lr={lr}",
                                         "train.engine=fused", "train.epochs=3", f"train.seed={seed}"]))
             for lr in (1e-4, 1e-2, 1.0) for seed in (0, 1)]
    together = execute_many(specs, side_by_side=64)
    assert {r.side_by_side for r in together} == {len(specs)}
    assert any(r.first_nonfinite_layer is not None for r in together)
    for spec, shared in zip(specs, together):
        alone = execute(spec)
        assert (shared.first_nonfinite_layer, shared.first_nonfinite_part) == (
            alone.first_nonfinite_layer, alone.first_nonfinite_part)
        assert list(shared.series.layer_grad_norm) == list(alone.series.layer_grad_norm)
        for name, norms in alone.series.layer_grad_norm.items():
            np.testing.assert_array_equal(shared.series.layer_grad_norm[name], norms)


DROPOUT_LOSS = '''
import keras
from keras import ops


def model(input_shape, task):
    """A sigmoid unit behind Dropout: one step in ten, its mask zeroes the prediction."""
    return keras.Sequential([keras.Input(input_shape), keras.layers.Dense(1, activation="sigmoid", name="dense"),
                             keras.layers.Dropout(0.1, seed=1, name="dropout")])


def loss(y_true, y_pred):
    """y * log(p) by hand: 0 * log(0) = NaN on a row whose prediction the mask dropped (y is 0)."""
    return -ops.mean(y_true * ops.log(y_pred), axis=-1)
'''


@pytest.mark.parametrize("engine", ENGINES)
def test_a_nan_only_the_steps_dropout_mask_makes_is_the_loss_not_a_layers_weights(tmp_path, monkeypatch, engine):
    (tmp_path / "dropout_loss.py").write_text(DROPOUT_LOSS)
    monkeypatch.syspath_prepend(str(tmp_path))
    X = np.random.default_rng(0).standard_normal((16, 2))
    np.savez(tmp_path / "zeros.npz", X=X, y=np.zeros(16))
    result = run(engine, ["dataset=npz", f"dataset.path={tmp_path / 'zeros.npz'}", "dataset.task=regression",
                          "model=builder", "model.builder=dropout_loss:model", "loss=builder",
                          "loss.builder=dropout_loss:loss", "train.batch_size=1", "optimizer=sgd"], epochs=1)
    assert result.outcome == "nan" and result.verdict.first_nonfinite_source == "loss"
    assert (result.first_nonfinite_layer, result.first_nonfinite_part) in (("loss", "output"), (None, None))
    assert result.first_nonfinite_layer == "loss"  # a draw of the mask reproduces the step: the loss, named
