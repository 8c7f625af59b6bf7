"""nanbench.user_data: dataset=csv / dataset=npz read into the pipeline's arrays, the task read
from the target, the file's digest part of the run's identity, and every bad file one line, exit
2 and nothing recorded."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from conftest import ROOT, compose_config
from nanbench.data import load
from nanbench.spec import ConfigError, from_config
from nanbench.user_data import infer_task, labels


def table(n: int = 64, seed: int = 0) -> pd.DataFrame:
    """Three features and a linear float target (known weights 1, -2, 0.5 and intercept 3)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 3))
    return pd.DataFrame({"a": X[:, 0], "b": X[:, 1], "c": X[:, 2], "y": X @ [1.0, -2.0, 0.5] + 3.0})


@pytest.fixture
def csv(tmp_path):
    path = tmp_path / "data.csv"
    table().to_csv(path, index=False)
    return path


def spec_of(*overrides):
    return from_config(compose_config(["train.epochs=2", *overrides]))


def test_csv_target_column_is_y_and_the_rest_are_features(csv):
    spec = spec_of("dataset=csv", f"dataset.path={csv}", "dataset.target=b")
    data = load(spec.dataset, spec.preprocess)
    frame = table()
    np.testing.assert_array_equal(data.X, frame[["a", "c", "y"]].to_numpy(np.float32))
    np.testing.assert_array_equal(data.y[:, 0], frame["b"].to_numpy(np.float32))
    assert spec.dataset.task == "regression" and spec.dataset.path == str(csv)
    assert spec.factors()["dataset.target"] == "b"


def test_the_task_is_read_from_the_target():
    assert infer_task(np.array([0.5, 1.0, 2.0])) == "regression"       # a non-integer value
    assert infer_task(np.array([1.0, np.nan, 1.0])) == "regression"    # a missing value
    assert infer_task(np.array([2, 5, 5, 2])) == "binary"               # two distinct integers
    assert infer_task(np.array([0, 1, 2, 3, 1])) == "multiclass"        # a few distinct integers
    assert infer_task(np.arange(100)) == "regression"                   # many distinct integers: counts
    assert infer_task(np.ones(5)) == "regression"                       # one value: nothing to classify
    np.testing.assert_array_equal(labels(np.array([5.0, 2.0, 5.0])).ravel(), [1, 0, 1])


def test_a_binary_csv_gets_labels_and_a_sigmoid_output(tmp_path):
    frame = table()
    frame["y"] = np.where(frame["y"] > 3.0, 7, 4)  # two distinct integers, not 0/1
    path = tmp_path / "binary.csv"
    frame.to_csv(path, index=False)
    spec = spec_of("dataset=csv", f"dataset.path={path}", "dataset.target=y", "loss=crossentropy")
    assert spec.dataset.task == "binary" and spec.model.output_activation == "sigmoid"
    data = load(spec.dataset, spec.preprocess)
    np.testing.assert_array_equal(data.y[:, 0], (frame["y"] == 7).to_numpy(np.float32))
    # a regression task set by hand is kept (the integers as numbers)
    assert spec_of("dataset=csv", f"dataset.path={path}", "dataset.target=y", "dataset.task=regression").dataset.task \
        == "regression"


def test_npz_arrays_and_a_multiclass_target(tmp_path):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((50, 4))
    y = np.digitize(X[:, 0], [-0.5, 0.5])  # 3 classes
    path = tmp_path / "arrays.npz"
    np.savez(path, X=X, y=y)
    spec = spec_of("dataset=npz", f"dataset.path={path}", "loss=crossentropy")
    assert spec.dataset.task == "multiclass" and spec.dataset.classes == 3 and spec.model.outputs == 3
    data = load(spec.dataset, spec.preprocess)
    np.testing.assert_array_equal(data.X, X.astype(np.float32))
    np.testing.assert_array_equal(data.y[:, 0], y)


def test_user_data_flow_through_preprocessing(csv):
    spec = spec_of("dataset=csv", f"dataset.path={csv}", "dataset.target=y", "preprocess=standard",
                   "preprocess.scale_target=true")
    data = load(spec.dataset, spec.preprocess)
    np.testing.assert_allclose(data.X.mean(axis=0), 0, atol=1e-6)
    np.testing.assert_allclose(data.y.std(), 1, atol=1e-5)


def test_the_files_content_is_part_of_the_runs_identity(tmp_path):
    path = tmp_path / "data.csv"
    table(seed=0).to_csv(path, index=False)
    args = ("dataset=csv", f"dataset.path={path}", "dataset.target=y")
    first = spec_of(*args)
    assert spec_of(*args).config_hash() == first.config_hash()  # same bytes: same configuration
    table(seed=1).to_csv(path, index=False)                      # other bytes at the same path
    second = spec_of(*args)
    assert second.dataset.digest != first.dataset.digest and second.config_hash() != first.config_hash()
    with pytest.raises(ConfigError, match="dataset.digest"):  # a digest given must be the file's
        spec_of(*args, f"+dataset.digest={first.dataset.digest}")


def test_nan_cells_stay_nan_and_the_run_says_where(tmp_path):
    frame = table()
    frame.loc[5, "a"] = np.nan
    path = tmp_path / "holes.csv"
    frame.to_csv(path, index=False)
    from nanbench.run import execute
    result = execute(spec_of("dataset=csv", f"dataset.path={path}", "dataset.target=y", "train.engine=fused"))
    assert result.outcome == "nan" and result.verdict.first_nonfinite_source == "input"
    assert result.verdict.first_nonfinite_step == 0  # row 5 is in the first batch


def nanbench(*args, cwd):
    return subprocess.run([sys.executable, "-m", "nanbench", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def test_one_run_on_a_csv_through_the_cli(tmp_path, csv):
    store = f"sqlite:///{tmp_path / 'm.db'}"
    proc = nanbench("dataset=csv", f"dataset.path={csv}", "dataset.target=y", "train.epochs=2",
                    f"tracking.uri={store}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    from mlflow.tracking import MlflowClient
    (run,) = MlflowClient(store).search_runs([MlflowClient(store).get_experiment_by_name("nanbench").experiment_id])
    assert run.info.run_id == summary["run_id"]
    assert run.data.params["dataset.path"] == str(csv) and run.data.params["dataset.target"] == "y"
    assert run.data.params["dataset.digest"] == spec_of("dataset=csv", f"dataset.path={csv}",
                                                        "dataset.target=y").dataset.digest


def _bad_files(tmp_path):
    table().assign(city="Paris", kind="x").to_csv(tmp_path / "text.csv", index=False)
    (tmp_path / "garbage.npz").write_bytes(b"\x00\x01 not a zip archive")
    np.savez(tmp_path / "named.npz", features=np.zeros((3, 2)), target=np.zeros(3))
    table().to_csv(tmp_path / "good.csv", index=False)
    (tmp_path / "empty.csv").write_text("")


@pytest.mark.parametrize("overrides,key,says", [
    (["dataset=csv", "dataset.path=missing.csv", "dataset.target=y"], "dataset.path", "no such file"),
    (["dataset=csv", "dataset.target=y"], "dataset.path", "set dataset.path=FILE"),
    (["dataset=csv", "dataset.path=empty.csv", "dataset.target=y"], "dataset.path", "readable CSV"),
    (["dataset=csv", "dataset.path=good.csv", "dataset.target=price"], "dataset.target", "a, b, c, y"),
    (["dataset=csv", "dataset.path=text.csv", "dataset.target=y"], "dataset.path", "non-numeric: city, kind"),
    (["dataset=npz", "dataset.path=garbage.npz"], "dataset.path", "readable .npz"),
    (["dataset=npz", "dataset.path=named.npz"], "dataset.path", "features, target"),
    (["dataset=csv", "dataset.path=good.csv", "dataset.target=y", "dataset.task=binary"], "dataset.task",
     "distinct"),
])
def test_a_bad_file_is_one_line_exit_2_and_nothing_recorded(tmp_path, overrides, key, says):
    _bad_files(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    proc = nanbench(*overrides, f"tracking.uri=sqlite:///{tmp_path / 'm.db'}", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("nanbench: error: " + key + " must be"), proc.stderr
    assert says in lines[0] and "Traceback" not in proc.stderr and proc.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no store, nothing written


def test_a_folder_or_a_header_only_csv_says_what_is_wrong(tmp_path):
    """A folder is not "no such file", and a CSV with a header and no rows is not "non-numeric"."""
    (tmp_path / "folder.csv").mkdir()
    (tmp_path / "header.csv").write_text("a,b,c,y\n")
    for path, says in (("folder.csv", "a CSV file, not a folder"), ("header.csv", "at least one row")):
        with pytest.raises(ConfigError, match="dataset.path") as caught:
            spec_of("dataset=csv", f"dataset.path={tmp_path / path}", "dataset.target=y")
        assert says in str(caught.value), str(caught.value)


def test_one_hot_labels_in_an_npz_or_csv_are_classes_and_mse_on_them_trains(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 3))
    classes = np.digitize(X[:, 0], [-0.5, 0.5])
    classes[0] = 3  # a fourth class, seen once: one column per class whether seen often or not
    onehot = np.eye(4)[classes]
    np.savez(tmp_path / "onehot.npz", X=X, y=onehot)
    spec = spec_of("dataset=npz", f"dataset.path={tmp_path / 'onehot.npz'}", "loss=mse", "model=mlp",
                   "train.epochs=20", "train.engine=fused")
    assert spec.dataset.task == "multiclass" and spec.dataset.classes == 4 and spec.model.outputs == 4
    data = load(spec.dataset, spec.preprocess)
    np.testing.assert_array_equal(data.y.ravel(), classes)  # the column of each row's 1
    from nanbench.run import execute
    result = execute(spec)  # MSE on one-hot labels, as the user wrote it: trains
    assert result.error is None and result.outcome in ("converged", "improving")
    frame = pd.DataFrame({"a": X[:, 0], "b": X[:, 1], "c": X[:, 2], **{f"k{i}": onehot[:, i] for i in range(4)}})
    frame.to_csv(tmp_path / "onehot.csv", index=False)
    csv_spec = spec_of("dataset=csv", f"dataset.path={tmp_path / 'onehot.csv'}", "dataset.target=[k0,k1,k2,k3]",
                       "loss=crossentropy")
    assert csv_spec.dataset.classes == 4 and load(csv_spec.dataset, csv_spec.preprocess).X.shape == (60, 3)
    # one-hot labels as a regression target, several real targets as classes: one line each
    with pytest.raises(ConfigError, match=r"^dataset.task must be binary or multiclass for one-hot labels"):
        spec_of("dataset=npz", f"dataset.path={tmp_path / 'onehot.npz'}", "dataset.task=regression")
    with pytest.raises(ConfigError, match=r"^dataset.task must be regression for 2 target columns"):
        spec_of("dataset=csv", f"dataset.path={tmp_path / 'onehot.csv'}", "dataset.target=[a,b]",
                "dataset.task=multiclass")


def test_several_target_columns_are_a_multi_output_regression_that_trains_in_both_engines(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 3))
    Y = np.column_stack([X @ [1.0, -2.0, 0.5], X @ [0.0, 1.0, 3.0] + 1.0])
    np.savez(tmp_path / "two.npz", X=X, y=Y)
    from nanbench.run import execute
    results = []
    for engine in ("fit", "fused"):
        spec = spec_of("dataset=npz", f"dataset.path={tmp_path / 'two.npz'}", "train.epochs=5",
                       f"train.engine={engine}", "optimizer.lr=0.05")
        assert spec.dataset.task == "regression" and spec.model.outputs == 2
        data = load(spec.dataset, spec.preprocess)
        assert data.y.shape == (64, 2)
        result = execute(spec)
        assert result.error is None and result.engine == engine and result.outcome in ("converged", "improving")
        # the initial loss is Keras's MSE over both outputs at the seeded initial weights
        results.append(result)
    np.testing.assert_allclose(results[0].series.loss, results[1].series.loss, rtol=1e-6)
    pd.DataFrame({"a": X[:, 0], "b": X[:, 1], "c": X[:, 2], "u": Y[:, 0], "v": Y[:, 1]}).to_csv(
        tmp_path / "two.csv", index=False)
    spec = spec_of("dataset=csv", f"dataset.path={tmp_path / 'two.csv'}", "dataset.target=[u,v]",
                   "preprocess=standard", "preprocess.scale_target=true")
    data = load(spec.dataset, spec.preprocess)
    assert spec.model.outputs == 2 and data.X.shape == (64, 3)
    np.testing.assert_allclose(data.y.mean(axis=0), 0, atol=1e-6)  # each target column scaled on its own
