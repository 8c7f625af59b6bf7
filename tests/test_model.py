"""nanbench.model: optimizers and losses are the Keras classes the option files name; a new one
is one YAML file; unknown names fail with the one-line error, never a silent fallback."""

from __future__ import annotations

import dataclasses
import shutil

import keras
import numpy as np
import pytest

from conftest import CONF, compose_config
from nanbench.config import compose
from nanbench.model import build_loss, build_model, build_optimizer, dead_fraction
from nanbench.run import execute
from nanbench.spec import ClippingSpec, ConfigError, from_config


def own_config_dir(tmp_path, group: str, name: str, text: str):
    """A config folder with one new option file, composed as `--config-dir` would compose it."""
    (tmp_path / group).mkdir()
    (tmp_path / group / f"{name}.yaml").write_text(text)
    (tmp_path / "run.yaml").write_text("defaults:\n  - config\n  - _self_\n")
    return tmp_path


def test_a_copied_option_file_naming_another_keras_optimizer_just_works(tmp_path):
    text = (CONF / "optimizer" / "adam.yaml").read_text().replace("name: adam", "name: nadam") \
        .replace("keras.optimizers.Adam", "keras.optimizers.Nadam")
    folder = own_config_dir(tmp_path, "optimizer", "nadam", text)
    cfg = compose(["optimizer=nadam", "dataset=clean", "train.epochs=2", "train.engine=fit",
                   f"tracking.uri=sqlite:///{tmp_path / 'm.db'}"], config_name="run", config_dir=folder)
    spec = from_config(cfg)
    opt = build_optimizer(spec.optimizer, spec.clipping)
    assert type(opt) is keras.optimizers.Nadam and spec.optimizer.name == "nadam"
    result = execute(spec)
    assert result.outcome in ("converged", "improving", "stalled") and result.steps_run == 16


def test_a_class_keras_does_not_have_is_a_one_line_error_listing_what_it_has():
    cfg = compose_config(["optimizer=adam", "optimizer.class=keras.optimizers.Adamm"])
    with pytest.raises(ConfigError, match=r"^optimizer.class must be a class of keras.optimizers: .*Nadam") as err:
        from_config(cfg)
    assert "\n" not in str(err.value)


def test_a_name_alone_never_switches_the_class_silently():
    with pytest.raises(ConfigError, match=r"^loss.name must be .*choose loss=huber"):
        from_config(compose_config(["loss=mse", "loss.name=huber"]))


def test_momentum_goes_only_to_classes_that_take_it():
    spec = from_config(compose_config(["optimizer=momentum"]))
    assert build_optimizer(spec.optimizer, spec.clipping).momentum == pytest.approx(0.9)
    nadam = spec.replace(optimizer={"cls": "keras.optimizers.Nadam", "name": "nadam"})
    with pytest.raises(ConfigError, match=r"^optimizer.momentum must be 0 for keras.optimizers.Nadam"):
        build_optimizer(nadam.optimizer, nadam.clipping)


def test_a_user_class_that_is_not_an_optimizer_is_refused():
    spec = from_config(compose_config(["optimizer=adam", "optimizer.name=mine",
                                       "optimizer.class=collections.OrderedDict"]))
    with pytest.raises(ConfigError, match=r"^optimizer.class must be a keras Optimizer class"):
        build_optimizer(spec.optimizer, spec.clipping)


@pytest.mark.parametrize("option,cls", [("mse", keras.losses.MeanSquaredError),
                                        ("mae", keras.losses.MeanAbsoluteError), ("huber", keras.losses.Huber)])
def test_each_loss_option_builds_its_keras_class(option, cls):
    spec = from_config(compose_config([f"loss={option}", "loss.delta=2.5"]))
    loss = build_loss(spec.loss)
    assert type(loss) is cls
    if cls is keras.losses.Huber:
        y, p = np.zeros((1, 1), np.float32), np.full((1, 1), 10.0, np.float32)
        assert float(loss(y, p)) == pytest.approx(2.5 * (10 - 0.5 * 2.5))  # linear part with delta 2.5


def test_clipping_is_keras_own_argument():
    spec = from_config(compose_config(["optimizer=sgd"]))
    for kind in ("clipnorm", "clipvalue", "global_clipnorm"):
        opt = build_optimizer(spec.optimizer, ClippingSpec(kind=kind, threshold=0.5))
        assert getattr(opt, kind) == pytest.approx(0.5)


def test_models_start_from_identical_weights_for_a_seed_and_dead_units_are_counted():
    spec = from_config(compose_config(["model=mlp", "model.width=8", "model.depth=2"]))
    a = build_model(spec.model, 3, seed=4)
    b = build_model(spec.model, 3, seed=4)
    assert all(np.array_equal(x, y) for x, y in zip(a.get_weights(), b.get_weights()))
    c = build_model(spec.model, 3, seed=5)
    assert not np.array_equal(a.get_weights()[0], c.get_weights()[0])
    # biases of -1e6 on the first layer: every unit outputs 0 on every row -> that layer is dead
    weights = a.get_weights()
    weights[1] = np.full_like(weights[1], -1e6)
    a.set_weights(weights)
    X = np.random.default_rng(0).standard_normal((20, 3))
    assert dead_fraction(a, X) >= 0.5


NEW_MODELS = {  # the new architectures, each on data it fits (shrunk)
    "mlp_batchnorm": ["dataset=clean", "dataset.n_features=3", "model=mlp_batchnorm", "model.width=4"],
    "lstm": ["dataset=sequences", "dataset.seq_len=4", "dataset.n_features=2", "model=lstm", "model.units=3"],
    "gru": ["dataset=sequences", "dataset.seq_len=4", "dataset.n_features=2", "model=gru", "model.units=3"],
    "embedding": ["dataset=token_sequences", "dataset.seq_len=4", "dataset.tokens=6", "model=embedding",
                  "model.units=3"],
}


@pytest.mark.parametrize("name", sorted(NEW_MODELS))
def test_reset_model_restores_what_build_model_starts_from_for_every_new_layer(name):
    from nanbench.model import reset_model
    spec = from_config(compose_config(NEW_MODELS[name]))
    n_features = {"mlp_batchnorm": 3, "lstm": 8, "gru": 8, "embedding": 4}[name]
    fresh = build_model(spec.model, n_features, seed=7)
    model = build_model(spec.model, n_features, seed=3)
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss="mse")
    X = np.random.default_rng(0).integers(0, 6, (16, n_features)).astype(np.float32)
    model.fit(X, np.ones((16, 1), np.float32), epochs=2, verbose=0)  # weights and BatchNorm's statistics move
    reset_model(model, seed=7)
    assert len(model.variables) == len(fresh.variables)
    for a, b in zip(model.variables, fresh.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
    different = build_model(spec.model, n_features, seed=8)
    assert any(not np.array_equal(a.numpy(), b.numpy()) for a, b in zip(fresh.variables, different.variables))


def test_the_output_layer_follows_the_task_and_from_logits():
    def output(*overrides, n_features=30):
        spec = from_config(compose_config(list(overrides)))
        layer = build_model(spec.model, n_features, seed=0).get_layer("output")
        return layer.units, layer.activation.__name__
    assert output("dataset=breast_cancer", "loss=crossentropy") == (1, "sigmoid")
    assert output("dataset=breast_cancer", "loss=crossentropy", "loss.from_logits=true") == (1, "linear")
    assert output("dataset=digits", "loss=log_loss_naive", n_features=64) == (10, "softmax")
    assert output("dataset=clean", n_features=10) == (1, "linear")


def test_mlp_batchnorm_puts_batchnorm_after_each_hidden_dense_layer():
    spec = from_config(compose_config(["model=mlp_batchnorm", "model.depth=2"]))
    kinds = [type(layer).__name__ for layer in build_model(spec.model, 10, seed=0).layers]
    assert kinds == ["Dense", "BatchNormalization", "Dense", "BatchNormalization", "Dense"]


def test_dead_units_are_counted_under_a_softmax_output_too():
    spec = from_config(compose_config(["dataset=digits", "loss=crossentropy", "model=mlp", "model.width=8"]))
    model = build_model(spec.model, 64, seed=0)
    X = np.random.default_rng(0).standard_normal((32, 64)).astype(np.float32)
    assert dead_fraction(model, X) is not None
    bn = from_config(compose_config(["dataset=digits", "loss=crossentropy", "model=mlp_batchnorm"]))
    # BatchNorm models too (realworld's 181 mlp_batchnorm runs had none): BatchNorm in inference form
    assert dead_fraction(build_model(bn.model, 64, seed=0), X) is not None


def test_init_scale_shrinks_every_initial_kernel_and_reset_model_draws_it_again():
    """model.init_scale=0.1: Glorot's draws x 0.1; the engines' reset_model puts a built model
    back at those weights."""
    from nanbench.model import reset_model

    spec = from_config(compose_config(["model=mlp"])).model
    plain = build_model(spec, 5, seed=3)
    small = build_model(dataclasses.replace(spec, init_scale=0.1), 5, seed=3)
    for a, b in zip(plain.layers, small.layers):
        np.testing.assert_allclose(b.kernel.numpy(), 0.1 * a.kernel.numpy(), rtol=1e-5, atol=1e-7)
    before = [w.numpy().copy() for w in small.weights]
    for w in small.weights:
        w.assign(np.ones(w.shape, dtype=w.dtype))
    reset_model(small, 3)
    for w, v in zip(small.weights, before):
        np.testing.assert_array_equal(w.numpy(), v)


def test_a_probability_by_hand_is_sigmoid_or_softmax_without_logits_for_the_loss_and_naive_overflows():
    import keras
    import numpy as np
    from nanbench.model import Probability, build_model
    z1 = np.array([[-3.0], [0.0], [2.0]], np.float32)
    z3 = np.array([[1.0, 2.0, 3.0], [0.0, -1.0, 5.0]], np.float32)
    for form in ("stable", "naive"):
        np.testing.assert_allclose(Probability(form)(z1), keras.ops.sigmoid(z1), rtol=1e-6)
        np.testing.assert_allclose(Probability(form)(z3), keras.ops.softmax(z3), rtol=1e-6)
        assert not hasattr(Probability(form)(keras.ops.convert_to_tensor(z3)), "_keras_logits")
    big = np.array([[1000.0, 0.0]], np.float32)
    assert np.isnan(keras.ops.convert_to_numpy(Probability("naive")(big))).any()  # inf / inf
    np.testing.assert_array_equal(Probability("stable")(big), [[1.0, 0.0]])
    np.testing.assert_array_equal(Probability("stable")(np.array([[-1000.0]], np.float32)), [[0.0]])
    spec = from_config(compose_config(["dataset=digits", "loss=crossentropy", "model.probability=naive"]))
    model = build_model(spec.model, 64, seed=0)
    assert [layer.name for layer in model.layers][-2:] == ["output", "probability"]
    assert model.get_layer("output").activation.__name__ == "linear"
    with pytest.raises(ConfigError, match="^model.probability must be keras for .* from logits"):
        from_config(compose_config(["dataset=digits", "loss=crossentropy", "loss.from_logits=true",
                                    "model.probability=stable"]))


def test_the_dead_unit_measure_reads_a_model_with_convolutions_and_a_dead_relu_output():
    """dense_layers cannot read a Reshape + Conv1D model: Keras computes its ReLU layers instead."""
    import keras
    import numpy as np
    from nanbench.model import dead_fraction, dense_layers
    keras.utils.set_random_seed(0)
    off = keras.initializers.Constant(-50.0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Reshape((4, 1)),
                              keras.layers.Conv1D(2, 2, activation="relu"), keras.layers.Flatten(),
                              keras.layers.Dense(3, activation="relu", bias_initializer=off)])
    X = np.random.default_rng(0).standard_normal((40, 4))
    assert dense_layers(model) is None
    object.__setattr__(model, "_nanbench_user_spec", "a user's model")  # as nanbench.user_model.build marks one
    conv = keras.Model(model.inputs, model.layers[1].output)(X.astype("float32"))
    dead_channels = int((~np.any(np.asarray(conv).reshape(-1, 2) > 0, axis=0)).sum())
    assert dead_fraction(model, X) == (dead_channels + 3) / 5  # the whole relu output layer is dead
    weights = [np.zeros_like(w) for w in model.get_weights()]  # on other weights: every unit gives 0
    assert dead_fraction(model, X, weights) == 1.0
