"""nanbench.spec: every option of every group composes and validates; bad values fail clearly."""

from __future__ import annotations

import pytest

from conftest import CONF, compose_config
from nanbench.spec import ConfigError, RunSpec, from_config

GROUPS = ["dataset", "preprocess", "model", "optimizer", "clipping", "loss", "train", "tracking"]


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def test_groups_have_the_option_names_users_rely_on():
    assert options("dataset") == sorted(["clean", "outliers", "unscaled", "nan_inputs", "doc000_outlier",
                                         "doc000_clean", "doc003_outlier", "diabetes", "breast_cancer", "digits",
                                         "separable", "constant_feature", "sequences", "token_sequences"])
    assert options("preprocess") == ["manual_standard", "minmax", "none", "robust", "standard"]
    assert {"linear", "mlp", "mlp_batchnorm", "lstm", "gru", "embedding"} <= set(options("model"))
    assert options("optimizer") == ["adam", "momentum", "rmsprop", "sgd"]
    assert options("clipping") == ["clipnorm", "clipvalue", "global_clipnorm", "none"]
    assert options("loss") == ["crossentropy", "huber", "log_loss_naive", "mae", "mse", "rmse"]


# options that do not fit the defaults (dataset=clean, model=linear, loss=mse) and what they fit
PARTNERS = {"dataset=digits": ["loss=crossentropy"], "model=lstm": ["dataset=sequences"],
            "model=gru": ["dataset=sequences"], "model=embedding": ["dataset=token_sequences"],
            "loss=crossentropy": ["dataset=breast_cancer"], "loss=log_loss_naive": ["dataset=digits"]}


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in options(g)])
def test_every_option_composes_into_a_run_spec(group, option):
    spec = from_config(compose_config([f"{group}={option}", *PARTNERS.get(f"{group}={option}", [])]))
    assert isinstance(spec, RunSpec)
    if group == "dataset":
        assert spec.dataset.name == option
    if group == "optimizer":
        assert spec.optimizer.name == option


@pytest.mark.parametrize("group", GROUPS)
def test_every_key_carries_a_comment(group):
    for path in (CONF / group).glob("*.yaml"):
        for line in path.read_text().splitlines():
            if line.strip() and not line.lstrip().startswith("#") and ":" in line:
                assert "#" in line, f"{path.name}: key without a comment: {line!r}"


def test_optimizer_defaults_are_keras_defaults():
    assert from_config(compose_config(["optimizer=sgd"])).optimizer.lr == 0.01
    assert from_config(compose_config(["optimizer=adam"])).optimizer.lr == 0.001
    assert from_config(compose_config(["optimizer=rmsprop"])).optimizer.lr == 0.001
    assert from_config(compose_config(["optimizer=momentum"])).optimizer.momentum == 0.9


def test_spec_is_frozen_and_hash_is_stable():
    a = from_config(compose_config(["optimizer=sgd"]))
    b = from_config(compose_config(["optimizer=sgd"]))
    with pytest.raises(Exception):
        a.optimizer.lr = 1.0  # type: ignore[misc]
    assert a.config_hash() == b.config_hash()
    assert a.replace(optimizer={"lr": 0.5}).config_hash() != a.config_hash()
    # tracking is where a run is recorded, not what it is
    assert a.replace(tracking={"experiment": "other"}).config_hash() == a.config_hash()


def test_factors_are_flat_dotted_keys_and_skip_knobs_a_dataset_does_not_take():
    factors = from_config(compose_config(["dataset=doc000_outlier"])).factors()
    assert factors["optimizer.lr"] == 0.001 and factors["dataset.name"] == "doc000_outlier"
    assert "dataset.n_samples" not in factors and not any(k.startswith("tracking.") for k in factors)


@pytest.mark.parametrize("override,key", [
    ("optimizer.lr=0", "optimizer.lr"),
    ("optimizer.lr=-0.1", "optimizer.lr"),
    ("train.epochs=0", "train.epochs"),
    ("train.batch_size=0", "train.batch_size"),
    ("clipping.threshold=0", "clipping.threshold"),
    ("clipping.threshold=-1", "clipping.threshold"),
    ("loss.delta=0", "loss.delta"),
    ("model.dropout=1.0", "model.dropout"),
    ("train.precision=float64", "train.precision"),
    ("train.engine=magic", "train.engine"),
    ("train.device=tpu", "train.device"),
])
def test_bad_values_name_the_key_and_what_is_allowed(override, key):
    with pytest.raises(ConfigError) as err:
        from_config(compose_config([override]))
    assert err.value.key == key
    message = str(err.value)
    assert message.startswith(key) and "must be" in message and "\n" not in message


@pytest.mark.parametrize("override,key", [
    ("dataset.nan_fraction=1.5", "dataset.nan_fraction"),
    ("dataset.nan_fraction=-0.1", "dataset.nan_fraction"),
])
def test_fractions_outside_unit_interval_are_rejected(override, key):
    with pytest.raises(ConfigError, match=key):
        from_config(compose_config(["dataset=nan_inputs", override]))
    with pytest.raises(ConfigError, match="dataset.outlier_fraction"):
        from_config(compose_config(["dataset=outliers", "dataset.outlier_fraction=2"]))
