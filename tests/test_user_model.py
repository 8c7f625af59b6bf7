"""nanbench.user_model: model=keras (a saved .keras file) and model=builder (the user's function)
trained by both engines with Keras's own step, their initial weights, the fused engine's fallback
to fit (recorded as the run's engine), sweeps over them, and every bad model one line, exit 2
and nothing recorded."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pandas as pd
import pytest

from conftest import compose_config
from nanbench.data import load
from nanbench.engines import batched
from nanbench.run import check_user_model, execute
from nanbench.spec import ConfigError, from_config

BUILDERS = textwrap.dedent('''
    """Builders for the tests: each is a function(input_shape, task) returning a keras.Model."""
    import keras
    import tensorflow as tf


    def mlp(input_shape, task, classes=None):
        return keras.Sequential([keras.Input(input_shape), keras.layers.Dense(8, activation="relu", name="hidden"),
                                 keras.layers.Dense(classes or 1, name="out")])


    class RawRead(keras.layers.Layer):
        """Multiplies by the TensorFlow variable behind its Keras variable (kernel._value), which a
        forward pass on values read beforehand (the fused engine's) does not see."""

        def build(self, shape):
            self.kernel = self.add_weight(shape=(shape[-1], 1), initializer="glorot_uniform", name="kernel")

        def compute_output_shape(self, shape):
            return (shape[0], 1)

        def call(self, x):
            return tf.matmul(x, self.kernel._value)


    def raw_read(input_shape, task):
        inputs = keras.Input(input_shape)
        return keras.Model(inputs, RawRead()(inputs))


    def raises(input_shape, task):
        raise ValueError("the builder's own error")


    def not_a_model(input_shape, task):
        return [keras.layers.Dense(1)]


    def wrong_input(input_shape, task):
        return keras.Sequential([keras.Input((input_shape[0] + 2,)), keras.layers.Dense(1)])


    def exits(input_shape, task):
        import sys
        sys.exit(3)
''')


def write_table(path, seed: int = 0, n: int = 64, scale: float = 1.0):
    rng = np.random.default_rng(seed)
    X = scale * rng.standard_normal((n, 3))
    pd.DataFrame({"a": X[:, 0], "b": X[:, 1], "c": X[:, 2], "y": scale * (X @ [1.0, -2.0, 0.5] + 3.0)}).to_csv(
        path, index=False)


def save_model(path, inputs: int = 3, outputs: int = 1, seed: int = 7, hidden: bool = True):
    keras.utils.set_random_seed(seed)
    layers = [keras.layers.Dense(8, activation="tanh", name="hidden")] if hidden else []
    model = keras.Sequential([keras.Input((inputs,)), *layers, keras.layers.Dense(outputs, name="out")])
    model.save(path)
    return model


@pytest.fixture
def files(tmp_path, monkeypatch):
    """A CSV (3 features, target y), a saved .keras model that fits it, and a builders module
    importable from tmp_path (where the CLI tests start nanbench)."""
    write_table(tmp_path / "data.csv")
    save_model(tmp_path / "model.keras")
    (tmp_path / "builders.py").write_text(BUILDERS)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def data_args(files):
    return ["dataset=csv", f"dataset.path={files / 'data.csv'}", "dataset.target=y", "train.epochs=3"]


def spec_of(*overrides):
    """The run's spec, checked as the CLI checks it (from_config, then the model against the data)."""
    spec = from_config(compose_config(list(overrides)))
    check_user_model(spec)
    return spec


def test_a_saved_model_starts_from_its_saved_weights_and_both_engines_agree(files):
    args = [*data_args(files), "model=keras", f"model.path={files / 'model.keras'}"]
    fit, fused = (execute(spec_of(*args, f"train.engine={engine}")) for engine in ("fit", "fused"))
    assert fit.engine == "fit" and fused.engine == "fused" and fit.error is None and fused.error is None
    np.testing.assert_array_equal(fit.series.loss, fused.series.loss)        # Keras's own step, op for op
    np.testing.assert_array_equal(fit.series.grad_norm, fused.series.grad_norm)
    # the loss at the start is the saved model's own MSE on the data
    spec = spec_of(*args)
    data = load(spec.dataset, spec.preprocess)
    saved = keras.saving.load_model(files / "model.keras", compile=False)
    expected = float(np.mean((saved.predict(data.X, verbose=0) - data.y) ** 2))
    assert fit.verdict.initial_loss == pytest.approx(expected, rel=1e-5)
    assert spec.factors()["model.digest"] == spec.model.digest and not batched.supports(spec)


def test_reinit_draws_the_initializers_again_per_seed(files):
    args = [*data_args(files), "model=keras", f"model.path={files / 'model.keras'}", "train.epochs=1",
            "train.engine=fused"]
    saved = execute(spec_of(*args)).verdict.initial_loss
    seed0, again, seed1 = (execute(spec_of(*args, "model.reinit=true", f"train.seed={s}")).verdict.initial_loss
                           for s in (0, 0, 1))
    assert seed0 == again and len({saved, seed0, seed1}) == 3
    # unset (null): seed 0 is the saved model, seed k >= 1 the initializers drawn with k;
    # model.reinit=false: the saved weights at every seed
    default1 = execute(spec_of(*args, "train.seed=1")).verdict.initial_loss
    kept1 = execute(spec_of(*args, "model.reinit=false", "train.seed=1")).verdict.initial_loss
    assert default1 == seed1 and kept1 == saved
    fit = execute(spec_of(*args, "model.reinit=true", "train.seed=1", "train.engine=fit")).verdict.initial_loss
    assert fit == seed1  # the fit engine draws the same initial weights
    # model.init_scale: every kernel times it (the saved kernels at 1e-6: the outputs are the biases, 0)
    spec = spec_of(*args, "model.init_scale=1e-6")
    data = load(spec.dataset, spec.preprocess)
    assert execute(spec).verdict.initial_loss == pytest.approx(float(np.mean(data.y ** 2)), rel=1e-4)


def test_a_builders_model_trains_with_both_engines(files):
    args = [*data_args(files), "model=builder", "model.builder=builders:mlp"]
    fit, fused = (execute(spec_of(*args, f"train.engine={engine}")) for engine in ("fit", "fused"))
    assert fused.engine == "fused" and fit.outcome == fused.outcome != "error"
    np.testing.assert_array_equal(fit.series.loss, fused.series.loss)
    assert spec_of(*args).model.digest  # the module's source is part of the run's identity
    # a builder builds under the run's precision; a saved model keeps its dtypes, so it takes float32 only
    from nanbench import user_model
    built = user_model.build(spec_of(*args, "train.precision=mixed_bfloat16").model, 3, task="regression",
                             classes=None, seed=0, precision="mixed_bfloat16")
    assert built.get_layer("hidden").dtype_policy.name == "mixed_bfloat16"
    with pytest.raises(ConfigError, match="^train.precision must be float32 for model=keras"):
        spec_of(*data_args(files), "model=keras", f"model.path={files / 'model.keras'}",
                "train.precision=mixed_float16")


def test_a_structure_fused_cannot_trace_trains_with_fit_and_says_so(files):
    args = [*data_args(files), "model=builder", "model.builder=builders:raw_read"]
    fused = execute(spec_of(*args, "train.engine=fused"))
    fit = execute(spec_of(*args, "train.engine=fit"))
    assert fused.error is None and fused.engine == "fit" and fused.summary()["engine"] == "fit"
    assert fused.spec.train.engine == "fused"  # the configuration (and its hash) stay what was asked
    np.testing.assert_array_equal(fit.series.loss, fused.series.loss)


def test_nan_from_a_users_model_is_a_result(tmp_path, files):
    write_table(tmp_path / "huge.csv", scale=1e4)  # unscaled features and targets, SGD at a large step
    save_model(tmp_path / "linear.keras", hidden=False)
    spec = spec_of("dataset=csv", f"dataset.path={tmp_path / 'huge.csv'}", "dataset.target=y", "train.epochs=5",
                   "model=keras", f"model.path={tmp_path / 'linear.keras'}", "optimizer=sgd", "optimizer.lr=0.1",
                   "train.engine=fused")
    result = execute(spec)
    assert result.outcome in ("nan", "inf") and result.verdict.first_nonfinite_step is not None
    # layer forensics name the user's own layer (the saved model's only layer is "out")
    assert getattr(result, "first_nonfinite_layer", "out") in ("out", "loss")


def test_a_multiclass_model_needs_one_output_per_class(tmp_path, files):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 3))
    np.savez(tmp_path / "three.npz", X=X, y=np.digitize(X[:, 0], [-0.5, 0.5]))
    save_model(tmp_path / "three.keras", outputs=3)
    args = ["dataset=npz", f"dataset.path={tmp_path / 'three.npz'}", "loss=crossentropy", "loss.from_logits=true",
            "model=keras"]
    assert spec_of(*args, f"model.path={tmp_path / 'three.keras'}").dataset.classes == 3
    with pytest.raises(ConfigError, match=r"model.path must be a model with 3 output\(s\) per row"):
        spec_of(*args, f"model.path={files / 'model.keras'}")
    builder = spec_of(*args, "model=builder", "model.builder=builders:mlp", "train.epochs=2")
    assert execute(builder).outcome != "error"  # its `classes` parameter got 3


def nanbench(*args, cwd, timeout=600):
    return subprocess.run([sys.executable, "-m", "nanbench", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout)


@pytest.mark.slow
@pytest.mark.parametrize("overrides,key,says", [
    (["model=keras", "model.path=missing.keras"], "model.path", "no such file"),
    (["model=keras", "model.path=garbage.keras"], "model.path", "safe_mode=True"),
    (["model=keras", "model.path=data.csv"], "model.path", "named *.keras"),
    (["model=keras", "model.path=five.keras"], "model.path", "input of shape (None, 3)"),
    (["model=builder", "model.builder=builders:wrong_input"], "model.builder", "input of shape (None, 3)"),
    (["model=builder", "model.builder=builders:raises"], "model.builder", "the builder's own error"),
    (["model=builder", "model.builder=no_such_module:build"], "model.builder", "no module named"),
    (["model=builder", "model.builder=builders:not_a_model"], "model.builder", "returned list"),
    (["model=builder", "model.builder=builders"], "model.builder", "package.module:function"),
])
def test_a_bad_model_is_one_line_exit_2_and_nothing_recorded(files, overrides, key, says):
    (files / "garbage.keras").write_bytes(b"not a zip")
    save_model(files / "five.keras", inputs=5)
    before = sorted(p.name for p in files.iterdir())
    proc = nanbench("dataset=csv", "dataset.path=data.csv", "dataset.target=y", *overrides,
                    f"tracking.uri=sqlite:///{files / 'm.db'}", cwd=files)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith("nanbench:")]
    assert len(lines) == 1 and lines[0].startswith(f"nanbench: error: {key} must be"), proc.stderr[-2000:]
    assert says in lines[0] and "Traceback" not in proc.stderr and proc.stdout == ""
    assert sorted(p.name for p in files.iterdir() if p.name != "__pycache__") == \
        [n for n in before if n != "__pycache__"]  # no store, nothing written


def children(store, experiment="own"):
    from mlflow.tracking import MlflowClient
    client = MlflowClient(store)
    exp = client.get_experiment_by_name(experiment)
    return client.search_runs([exp.experiment_id], "tags.`nanbench.role` = 'child'", max_results=1000)


@pytest.mark.slow
def test_a_sweep_over_a_csv_and_a_saved_model_records_every_run_once_and_resumes(files):
    store = f"sqlite:///{files / 'm.db'}"
    cmd = ["-m", "dataset=csv", "dataset.path=data.csv", "dataset.target=y", "model=keras",
           "model.path=model.keras", "optimizer=sgd", "optimizer.lr=0.001,0.01,0.1", "train.epochs=2",
           "sweep.name=own", f"tracking.uri={store}", f"sweep.results_dir={files / 'results'}",
           f"hydra.sweep.dir={files / 'hydra'}"]
    proc = nanbench(*cmd, cwd=files)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = children(store)
    assert len(runs) == 3 and all(r.info.status == "FINISHED" for r in runs)
    assert sorted(float(r.data.params["optimizer.lr"]) for r in runs) == [0.001, 0.01, 0.1]
    assert {r.data.params["model.path"] for r in runs} == {str(files / "model.keras")}
    assert {r.data.tags["engine"] for r in runs} == {"fused"} and len({r.data.tags["config_hash"] for r in runs}) == 3
    assert (files / "results" / "own" / "summary.md").is_file()
    again = nanbench(*cmd, cwd=files)
    assert again.returncode == 0 and "nothing to do: all 3 configurations" in again.stdout
    # the same path with other bytes is another grid: its runs train, the first three stay
    write_table(files / "data.csv", seed=1)
    third = nanbench(*cmd, cwd=files)
    assert third.returncode == 0, third.stderr[-3000:]
    assert "nothing to do" not in third.stdout and len(children(store)) == 6
    assert len({r.data.params["dataset.digest"] for r in children(store)}) == 2


@pytest.mark.slow
def test_a_grid_over_files_checks_each_before_any_store(files):
    def sweep(paths):
        return nanbench("-m", "dataset=csv", f"dataset.path={paths}", "dataset.target=y", "optimizer.lr=0.01,0.1",
                        "train.epochs=2", "sweep.name=own", f"tracking.uri=sqlite:///{files / 'm.db'}",
                        f"sweep.results_dir={files / 'results'}", f"hydra.sweep.dir={files / 'hydra'}", cwd=files)
    proc = sweep("data.csv,missing.csv")
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "dataset.path must be" in lines[0] and "missing.csv" in lines[0]
    assert not (files / "m.db").exists() and not (files / "hydra").exists()
    write_table(files / "other.csv", seed=3)
    proc = sweep("data.csv,other.csv")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert sorted(r.data.params["dataset.path"] for r in children(f"sqlite:///{files / 'm.db'}")) == \
        [str(files / "data.csv")] * 2 + [str(files / "other.csv")] * 2


def test_a_keras_files_digest_is_its_content_not_its_zip_bytes(tmp_path):
    """Saving the same model twice changes the zip's bytes (metadata.json's date, Keras's object
    ids in config.json) but not model.digest; other weights change it. (Layer names are content:
    they are named explicitly here, as Keras numbers unnamed layers per process.)"""
    from nanbench import user_data

    def save(name, bias=0.0):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((3,), name="x"), keras.layers.Dense(4, activation="relu", name="hidden"),
                                  keras.layers.Dense(1, name="out")], name="m")
        model.layers[-1].bias.assign([bias])
        model.save(tmp_path / name)
        return str(tmp_path / name)

    a, b, c = save("a.keras"), save("b.keras"), save("c.keras", bias=1.0)
    assert user_data.keras_digest(a) == user_data.keras_digest(b)
    assert user_data.keras_digest(a) != user_data.keras_digest(c)
    (tmp_path / "junk.keras").write_bytes(b"not a zip")
    assert user_data.keras_digest(str(tmp_path / "junk.keras")) == user_data.digest(str(tmp_path / "junk.keras"))


@pytest.mark.parametrize("make,builder,says", [
    (lambda f: (f / "garbage.keras").write_bytes(b"not a zip"), None, "not a valid .keras file"),
    (lambda f: (f / "garbage.keras").write_bytes((f / "model.keras").read_bytes()[:500]), None,
     "not a valid .keras file"),                                                     # truncated
    (None, "os:getcwd", "os is part of Python"),                                     # not the user's module
    (None, "builders:exits", "raised SystemExit: 3"),                                # sys.exit(3) in the builder
])
def test_a_bad_model_says_what_is_wrong_with_it(files, make, builder, says):
    """What is wrong is said as it is: a corrupt file is not "File not found", os is not
    "no module named 'os'", and a builder's sys.exit is its one line, not the process's exit."""
    if make is not None:
        make(files)
    overrides = ["model=keras", f"model.path={files / 'garbage.keras'}"] if builder is None else \
        ["model=builder", f"model.builder={builder}"]
    with pytest.raises(ConfigError, match="model.path" if builder is None else "model.builder") as caught:
        spec_of(*data_args(files), *overrides)
    assert says in str(caught.value) and "\n" not in str(caught.value)


def save_relu_output(path, compiled: bool = True):
    """A classifier whose output layer is relu with every unit off (bias -10): compiled with
    categorical cross-entropy, its probabilities are 0 / 0 (Keras divides by their sum) at step 0;
    with MSE it is finite (every output 0 against one-hot labels)."""
    keras.utils.set_random_seed(3)
    off = keras.initializers.Constant(-10.0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(3, activation="relu", bias_initializer=off)])
    if compiled:
        model.compile(optimizer="adam", loss="categorical_crossentropy", loss_weights=[1.0])
    model.save(path)
    return model


def test_a_saved_model_trains_with_the_loss_it_was_compiled_with(tmp_path, files):
    rng = np.random.default_rng(0)
    X = 0.1 * rng.standard_normal((40, 3))
    np.savez(tmp_path / "onehot.npz", X=X, y=np.eye(3)[np.digitize(X[:, 0], [-0.05, 0.05])])
    save_relu_output(tmp_path / "relu.keras")
    args = ["dataset=npz", f"dataset.path={tmp_path / 'onehot.npz'}", "model=keras", "train.epochs=2",
            f"model.path={tmp_path / 'relu.keras'}"]
    spec = spec_of(*args)  # loss=auto (the default): the file's own categorical cross-entropy
    assert spec.loss.name == "compiled" and '"loss":"categorical_crossentropy"' in spec.loss.compiled
    assert spec.factors()["loss.compiled"] == spec.loss.compiled  # recorded with the run (a factor)
    from nanbench.tracking.record import run_name
    assert run_name(spec).endswith("compiled categorical_crossentropy")
    result = execute(spec)
    assert result.outcome == "nan" and result.verdict.first_nonfinite_step == 0  # 0 / 0 as in plain Keras
    plain = keras.losses.CategoricalCrossentropy()(np.eye(3)[[0]], np.zeros((1, 3), "float32"))
    assert np.isnan(float(plain))
    # the user's loss= overrides it; a model saved uncompiled trains with mse and has no compiled loss
    assert execute(spec_of(*args, "loss=mse")).outcome != "nan"
    save_relu_output(tmp_path / "bare.keras", compiled=False)
    bare = [*args[:-1], f"model.path={tmp_path / 'bare.keras'}"]
    assert spec_of(*bare).loss.name == "mse" and spec_of("train.epochs=1").loss.name == "mse"
    with pytest.raises(ConfigError, match="^loss.name must be a loss option"):
        spec_of(*bare, "loss=compiled")


def test_a_model_with_two_inputs_trains_on_an_npzs_x0_and_x1(tmp_path, files):
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((48, 4)), rng.standard_normal((48, 2))
    np.savez(tmp_path / "two.npz", X0=a, X1=b, y=a[:, 0] - b[:, 1])
    keras.utils.set_random_seed(5)
    i0, i1 = keras.Input((4,), name="a"), keras.Input((2,), name="b")
    joined = keras.layers.Concatenate()([keras.layers.Dense(8, activation="relu")(i0), keras.layers.Dense(3)(i1)])
    saved = keras.Model([i0, i1], keras.layers.Dense(1, name="out")(joined))
    saved.compile(loss="mse")
    saved.save(tmp_path / "two.keras")
    args = ["dataset=npz", f"dataset.path={tmp_path / 'two.npz'}", "dataset.task=regression", "model=keras",
            f"model.path={tmp_path / 'two.keras'}", "train.epochs=2"]
    fit, fused = (execute(spec_of(*args, f"train.engine={engine}")) for engine in ("fit", "fused"))
    assert fit.error is None and fused.error is None and fused.engine == "fused"
    np.testing.assert_array_equal(fit.series.loss, fused.series.loss)
    expected = float(np.mean((saved.predict([a, b], verbose=0)[:, 0] - (a[:, 0] - b[:, 1])) ** 2))
    assert fit.verdict.initial_loss == pytest.approx(expected, rel=1e-5)  # the user's model on (X0, X1), as saved
    np.savez(tmp_path / "narrow.npz", X0=a, X1=b[:, :1], y=a[:, 0])
    with pytest.raises(ConfigError, match=r"^model.path must be a model whose inputs.*add up to the data's 5"):
        spec_of(*args[:1], f"dataset.path={tmp_path / 'narrow.npz'}", *args[2:])
