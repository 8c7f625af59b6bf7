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
                                         "separable", "constant_feature", "sequences", "token_sequences",
                                         "csv", "npz"])
    assert options("preprocess") == ["manual_standard", "minmax", "none", "robust", "standard"]
    assert {"linear", "mlp", "mlp_batchnorm", "lstm", "gru", "embedding"} <= set(options("model"))
    assert options("optimizer") == ["adam", "momentum", "rmsprop", "sgd"]
    assert options("clipping") == ["clipnorm", "clipvalue", "global_clipnorm", "none"]
    assert options("loss") == ["auto", "builder", "compiled", "crossentropy", "huber", "log_loss_naive", "mae", "mse",
                               "msle", "rmse"]


# options that do not fit the defaults (dataset=clean, model=linear, loss=mse) and what they fit
PARTNERS = {"model=lstm": ["dataset=sequences"],
            "model=gru": ["dataset=sequences"], "model=embedding": ["dataset=token_sequences"],
            "loss=crossentropy": ["dataset=breast_cancer"], "loss=log_loss_naive": ["dataset=digits"]}


# the user's own data and models need their files (tests/test_user_data.py, tests/test_user_model.py)
USER_OPTIONS = {("dataset", "csv"): "dataset.path", ("dataset", "npz"): "dataset.path",
                ("model", "keras"): "model.path", ("model", "builder"): "model.builder",
                ("loss", "builder"): "loss.builder", ("loss", "compiled"): "loss.name"}


@pytest.mark.parametrize("group,option,key", [(g, o, k) for (g, o), k in USER_OPTIONS.items()])
def test_a_users_option_without_its_file_is_the_one_line_error(group, option, key):
    with pytest.raises(ConfigError, match=rf"^{key} must be "):
        from_config(compose_config([f"{group}={option}", "dataset.target=y" if option == "csv" else "train.seed=0"]))


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in options(g) if (g, o) not in USER_OPTIONS])
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


# each option's config hash before the classification / sequence factors came (commit 53c9582):
# new keys with defaults must leave every existing run's hash as it was
HASHES_BEFORE_NEW_FACTORS = {
    "dataset=clean": "cc19d15a5e9c6f10",
    "dataset=diabetes": "1baa0009c9a5e585",
    "dataset=doc000_clean": "082e8edef99c2572",
    "dataset=doc000_outlier": "535d39fe7d40e963",
    "dataset=doc003_outlier": "ae57e7ed504c3c74",
    "dataset=nan_inputs": "dd71865d009125b9",
    "dataset=outliers": "6d273214a1e26c1c",
    "dataset=unscaled": "52a8f2291b7b056d",
    "preprocess=minmax": "fd340d9bd11dd9dd",
    "preprocess=none": "cc19d15a5e9c6f10",
    "preprocess=robust": "8b769e47f8147733",
    "preprocess=standard": "895fc01dbe86e054",
    "model=linear": "cc19d15a5e9c6f10",
    "model=mlp": "d5c133806222b08f",
    "model=mlp_deep": "0ef387ac2b32f0ac",
    "model=mlp_sigmoid": "45ec0eb9a16071aa",
    "model=mlp_tanh": "c114c7ca43cf8410",
    "optimizer=adam": "cc19d15a5e9c6f10",
    "optimizer=momentum": "9433e156e2f82d14",
    "optimizer=rmsprop": "b842d0de95819547",
    "optimizer=sgd": "a056731914af3b61",
    "clipping=clipnorm": "4b296bf08a9111f8",
    "clipping=clipvalue": "bc5405517ad874c6",
    "clipping=global_clipnorm": "6ee602257e62c2c6",
    "clipping=none": "cc19d15a5e9c6f10",
    "loss=huber": "a54a037d9d71d584",
    "loss=mae": "52b26db7567ac83f",
    "loss=mse": "cc19d15a5e9c6f10",
    "train=default": "cc19d15a5e9c6f10",
}


@pytest.mark.parametrize("override", sorted(HASHES_BEFORE_NEW_FACTORS))
def test_existing_options_keep_their_config_hash(override):
    spec = from_config(compose_config([override]))
    assert spec.config_hash() == HASHES_BEFORE_NEW_FACTORS[override]
    assert not {"dataset.task", "loss.from_logits", "model.units", "model.init_scale", "preprocess.nonfinite",
                "preprocess.target_scaler"} & set(spec.factors())


def test_keys_added_at_their_default_leave_the_hash_and_set_elsewhere_join_it():
    """preprocess.nonfinite and preprocess.target_scaler are factors only when they differ from
    their defaults (validate.OMITTED_AT_DEFAULT): every earlier run keeps its hash."""
    base = from_config(compose_config([]))
    same = from_config(compose_config(["preprocess.nonfinite=keep", "preprocess.target_scaler=same"]))
    assert same.config_hash() == base.config_hash()
    for override, key, value in (("model.init_scale=0.1", "model.init_scale", 0.1),
                                 ("preprocess.nonfinite=drop", "preprocess.nonfinite", "drop"),
                                 ("preprocess.target_scaler=standard", "preprocess.target_scaler", "standard")):
        spec = from_config(compose_config([override]))
        assert spec.factors()[key] == value and spec.config_hash() != base.config_hash()


def test_a_dataset_declares_its_task_and_the_model_output_follows_it_and_from_logits():
    def model(*overrides):
        return from_config(compose_config(list(overrides))).model
    assert (model().outputs, model().output_activation) == (1, "linear")
    binary = model("dataset=breast_cancer", "loss=crossentropy")
    assert (binary.outputs, binary.output_activation) == (1, "sigmoid")
    multi = model("dataset=digits", "loss=crossentropy")
    assert (multi.outputs, multi.output_activation) == (10, "softmax")
    logits = model("dataset=digits", "loss=crossentropy", "loss.from_logits=true")
    assert (logits.outputs, logits.output_activation) == (10, "linear")
    lstm = model("dataset=sequences", "dataset.seq_len=5", "model=lstm")
    assert lstm.seq_shape == (5, 4) and lstm.units == 32
    # derived from factors, so no factor of its own; a replaced dataset re-derives it
    spec = from_config(compose_config(["dataset=sequences", "model=lstm"]))
    assert spec.replace(dataset={"seq_len": 9}).model.seq_shape == (9, 4)
    assert "model.outputs" not in spec.factors() and spec.factors()["dataset.task"] == "regression"


@pytest.mark.parametrize("overrides,key,allowed", [
    (["model=lstm"], "model.name", "linear, mlp or mlp_batchnorm for the regression dataset clean"),
    (["model=gru", "dataset=digits", "loss=crossentropy"], "model.name", "take dataset=sequences"),
    (["model=embedding", "dataset=sequences"], "model.name", "embedding takes token ids"),
    (["loss=crossentropy"], "loss.name", "a regression loss (mse, mae, huber, rmse, msle) for the regression dataset "
     "clean"),
    (["dataset=separable", "loss=log_loss_naive", "loss.from_logits=true"], "loss.from_logits", "probabilities"),
    (["dataset=breast_cancer", "loss=crossentropy", "preprocess=standard", "preprocess.scale_target=true"],
     "preprocess.scale_target", "its targets are labels"),
    (["dataset=token_sequences", "model=embedding", "preprocess=standard"], "preprocess.scaler", "token ids"),
    (["dataset=constant_feature", "+dataset.label_noise=out_of_range"], "dataset.label_noise", "one of the keys"),
    (["dataset=sequences", "dataset.label_noise=out_of_range"], "dataset.label_noise", "none for dataset sequences"),
    (["dataset=sequences", "dataset.task=binary"], "dataset.task", "regression for dataset sequences"),
    (["dataset=digits", "dataset.task=binary", "loss=crossentropy"], "dataset.task", "multiclass for dataset digits"),
    (["dataset=separable", "dataset.task=multiclass", "loss=crossentropy"], "dataset.task", "one of binary"),
    (["dataset=token_sequences", "model=embedding", "dataset.n_features=3"], "dataset.n_features", "one token id"),
    (["dataset=sequences", "model=lstm", "model.units=0"], "model.units", ">= 1"),
    (["dataset=separable", "loss=crossentropy", "loss.from_logits=maybe"], "loss.from_logits", "true or false"),
    (["+model.outputs=3"], "model.outputs", "left out"),
])
def test_a_model_or_loss_that_does_not_fit_the_data_is_a_one_line_error(overrides, key, allowed):
    with pytest.raises(ConfigError) as err:
        from_config(compose_config(overrides))
    message = str(err.value)
    assert err.value.key == key and message.startswith(f"{key} must be") and allowed in message, message
    assert "\n" not in message


@pytest.mark.parametrize("overrides,key,words", [
    (["dataset=clean", "dataset.name=outliers"], "dataset.name", "dataset=outliers"),  # a group's name alone
    (["dataset=outliers", "dataset.name=clean"], "dataset.name", "dataset=clean"),
    (["dataset.name=../../../x"], "dataset.name", "a name of letters"),  # diagnose's folder is named after it
    (["dataset.name=/abs/dir"], "dataset.name", "a name of letters"),
    (["dataset.name=.hidden"], "dataset.name", "a name of letters"),
])
def test_a_dataset_name_that_is_another_option_or_a_path_is_refused(overrides, key, words):
    with pytest.raises(ConfigError, match=key) as caught:
        from_config(compose_config(overrides))
    assert words in str(caught.value) and "\n" not in str(caught.value)


def test_a_dataset_of_its_own_name_keeps_its_generator():
    """A new name (no option file) on a generator is a new dataset, as a new option file would be."""
    spec = from_config(compose_config(["dataset=outliers", "dataset.name=heavy_outliers.v2"]))
    assert (spec.dataset.name, spec.dataset.kind) == ("heavy_outliers.v2", "outliers")


@pytest.mark.parametrize("value", [0, 1, 1.5, -0.1, "x"])
def test_outcome_target_ratio_outside_0_1_is_the_one_line_error(value):
    with pytest.raises(ConfigError, match=r"^outcome.target_ratio must be "):
        from_config(compose_config([f"outcome.target_ratio={value}"]))


def test_outcome_target_ratio_at_its_default_leaves_the_config_hash_as_it_was():
    default = from_config(compose_config([]))
    assert default.config_hash() == from_config(compose_config(["outcome.target_ratio=0.1"])).config_hash()
    assert default.config_hash() != from_config(compose_config(["outcome.target_ratio=0.2"])).config_hash()
    assert from_config(compose_config(["outcome.target_ratio=0.2"])).outcome.target_ratio == 0.2
