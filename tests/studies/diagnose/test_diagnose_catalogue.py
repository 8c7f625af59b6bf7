"""nanbench.studies.diagnose.catalogue: which single changes apply, read from the spec and from
what the first run measured (never from a dataset's name), and applying them."""

from __future__ import annotations

import pytest

from nanbench.config import compose
from nanbench.studies.diagnose.catalogue import Change, Evidence, apply, catalogue, distance
from nanbench.studies.diagnose.spec import prepare
from nanbench.studies.diagnose.tries import prepare as prepare_tries

NORMS = Evidence(grad_norms=(4.0, 1.0, 100.0), nonfinite_data=False)


def changes_for(*overrides: str, evidence: Evidence = NORMS) -> dict[str, Change]:
    spec, config, _ = prepare(compose(list(overrides), config_name="diagnose"))
    return {c.name: c for c in catalogue(spec, config, evidence)}


def test_sgd_on_mse_regression_gets_lr_clipping_scaling_huber_adam_and_init():
    names = changes_for("optimizer=sgd")
    assert {"lr/3", "lr/10", "lr/100", "standard scaling of X", "standard scaling of y",
            "standard scaling of X and y", "Huber instead of mse", "Adam instead of sgd",
            "init_scale=0.1"} <= set(names)
    assert dict(names["lr/10"].settings)["optimizer.lr"] == pytest.approx(0.001)
    # clipping thresholds are the measured norms' median (4) and smallest (1), for both kinds
    clips = {(dict(c.settings)["clipping.kind"], dict(c.settings)["clipping.threshold"])
             for c in names.values() if "clipping.kind" in dict(c.settings)}
    assert clips == {("global_clipnorm", 4.0), ("global_clipnorm", 1.0), ("clipnorm", 4.0), ("clipnorm", 1.0)}
    assert not {"drop non-finite rows", "impute non-finite inputs"} & set(names)  # the data held none


def test_what_does_not_apply_is_left_out():
    adam = changes_for("optimizer=adam", "preprocess=standard", "preprocess.scale_target=true", "loss=mae",
                       evidence=Evidence(grad_norms=(), nonfinite_data=True))
    assert not any(n.startswith(("standard scaling", "Huber", "Adam", "global_clipnorm", "clipnorm")) for n in adam)
    assert {"drop non-finite rows", "impute non-finite inputs"} <= set(adam)  # evidence: the data hold NaN
    labels = changes_for("dataset=breast_cancer", "loss=log_loss_naive", "train.precision=mixed_float16")
    assert "standard scaling of y" not in labels and "standard scaling of X and y" not in labels
    assert {"Keras cross-entropy (from_logits) instead of log_loss_naive", "float32 instead of mixed_float16",
            "standard scaling of X"} <= set(labels)


def test_apply_swaps_a_group_whole_then_sets_keys_and_the_spec_checks_the_result():
    spec, config, _ = prepare(compose(["dataset=breast_cancer", "loss=log_loss_naive"], config_name="diagnose"))
    swap = Change("xent", groups=(("loss", "crossentropy"),), settings=(("loss.from_logits", True),))
    changed = apply(config, swap)
    assert changed["loss"]["class"] == "nanbench.losses.CrossEntropy" and changed["loss"]["from_logits"] is True
    assert config["loss"]["name"] == "log_loss_naive"  # the original is left as it was
    assert swap.overrides == ["loss=crossentropy", "loss.from_logits=true"]
    tried = prepare_tries(spec, config, [swap, Change("y", settings=(("preprocess.scale_target", True),)),
                                         Change("same", settings=(("optimizer.lr", spec.optimizer.lr),))])
    assert tried[0].spec is not None and tried[0].spec.model.output_activation == "linear"  # logits
    assert tried[1].spec is None and "preprocess.scale_target" in tried[1].skipped  # labels are not scaled
    assert tried[2].spec is None and "same configuration" in tried[2].skipped


def test_distance_counts_changed_factors_and_the_decades_a_number_moves():
    spec, config, _ = prepare(compose(["optimizer=sgd"], config_name="diagnose"))
    lr3, lr100 = (prepare_tries(spec, config, [c])[0].spec for c in
                  (Change("a", settings=(("optimizer.lr", 0.01 / 3),)),
                   Change("b", settings=(("optimizer.lr", 1e-4),))))
    assert distance(spec, spec) == 0
    assert 1 < distance(spec, lr3) < distance(spec, lr100) == pytest.approx(3.0)


def test_activation_changes_apply_where_the_layers_have_another_and_the_task_asks_for_it():
    # an exponential output on a regression: linear offered; relu hidden: selu and tanh offered
    exp = changes_for("model=mlp", "model.final_activation=exponential")
    assert dict(exp["linear output instead of exponential"].settings) == {"model.final_activation": "linear"}
    assert {"hidden selu instead of relu", "hidden tanh instead of relu"} <= set(exp)
    assert "hidden relu instead of relu" not in exp and not any("cross-entropy" in n for n in exp)
    # nanbench's own output follows the task: nothing to change; a linear model has no hidden layer
    plain = changes_for("model=linear")
    assert not any("output instead" in n or n.startswith("hidden") for n in plain)
    # MSE on a multiclass target: cross-entropy from logits; its softmax output is what the task asks for
    classes = changes_for("dataset=digits", "model=mlp", "model.activation=tanh")
    swap = classes["cross-entropy (from_logits) instead of mse"]
    assert swap.groups == (("loss", "crossentropy"),) and dict(swap.settings) == {"loss.from_logits": True}
    assert "hidden relu instead of tanh" in classes and not any("output instead" in n for n in classes)
    # a relu output on a binary task: sigmoid; with logits (from_logits) a linear output is right
    binary = changes_for("dataset=breast_cancer", "loss=crossentropy", "model.final_activation=relu")
    assert "sigmoid output instead of relu" in binary and not any("cross-entropy" in n for n in binary)
    logits = changes_for("dataset=breast_cancer", "loss=crossentropy", "loss.from_logits=true")
    assert not any("output instead" in n for n in logits)


def test_a_users_model_is_read_for_its_activations(tmp_path):
    import keras
    keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, activation="relu", name="h"),
                      keras.layers.Dense(1, activation="exponential", name="out")]).save(tmp_path / "exp.keras")
    import numpy as np
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", X=rng.standard_normal((20, 3)), y=rng.standard_normal(20))
    names = changes_for("dataset=npz", f"dataset.path={tmp_path / 'd.npz'}", "model=keras",
                        f"model.path={tmp_path / 'exp.keras'}")
    out = names["linear output instead of exponential"]
    assert {"hidden selu instead of relu", "hidden tanh instead of relu"} <= set(names)
    assert dict(names["hidden tanh instead of relu"].settings) == {"model.hidden_activation": "tanh"}
    # the change rebuilds the saved model with a linear output, its saved weights kept
    spec, config, _ = prepare(compose(["dataset=npz", f"dataset.path={tmp_path / 'd.npz'}", "model=keras",
                                       f"model.path={tmp_path / 'exp.keras'}"], config_name="diagnose"))
    (tried,) = prepare_tries(spec, config, [out])
    from nanbench.model import build_model
    from nanbench.user_model import activation_names
    rebuilt = build_model(tried.spec.model, 3, seed=0)
    saved = keras.saving.load_model(tmp_path / "exp.keras", compile=False)
    assert activation_names(rebuilt) == (("relu",), "linear")
    for a, b in zip(rebuilt.get_weights(), saved.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_a_saved_models_compiled_loss_is_read_for_the_loss_changes(tmp_path):
    import keras
    import numpy as np
    rng = np.random.default_rng(0)
    X = rng.standard_normal((30, 3))
    np.savez(tmp_path / "c.npz", X=X, y=np.digitize(X[:, 0], [-0.5, 0.5]))
    np.savez(tmp_path / "r.npz", X=X, y=X[:, 0])
    for name, outputs, loss in (("cce", 3, "categorical_crossentropy"), ("mse", 1, "mse")):
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(outputs, activation="relu")])
        model.compile(loss=loss)
        model.save(tmp_path / f"{name}.keras")
    cce = changes_for("dataset=npz", f"dataset.path={tmp_path / 'c.npz'}", "model=keras",
                      f"model.path={tmp_path / 'cce.keras'}")
    assert not any(n.startswith("cross-entropy") for n in cce)  # it is one already
    mse = changes_for("dataset=npz", f"dataset.path={tmp_path / 'r.npz'}", "dataset.task=regression", "model=keras",
                      f"model.path={tmp_path / 'mse.keras'}")
    assert mse["Huber instead of compiled mse"].groups == (("loss", "huber"),)
