"""nanbench.data: generators have their stated properties; the documents' arrays are exact."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from conftest import compose_config
from nanbench.data import load, make_dataset, preprocess
from nanbench.spec import from_config


def raw(*overrides):
    spec = from_config(compose_config(list(overrides)))
    return make_dataset(spec.dataset)


def test_doc_arrays_are_exact():
    X, y = raw("dataset=doc000_outlier")
    assert X.tolist() == [[1], [2], [3], [1000]] and y.ravel().tolist() == [2, 4, 6, 2000]
    X, y = raw("dataset=doc000_clean")
    assert X.tolist() == [[1], [2], [3], [4]] and y.ravel().tolist() == [2, 4, 6, 8]
    X, y = raw("dataset=doc003_outlier")
    assert X.tolist() == [[1, 2], [4, 5], [7, 8], [1000, 1000]] and y.ravel().tolist() == [3, 6, 9, 1000]


def test_diabetes_is_sklearn_unscaled():
    from sklearn.datasets import load_diabetes
    X, y = raw("dataset=diabetes")
    ref_X, ref_y = load_diabetes(return_X_y=True, scaled=False)
    assert X.shape == (442, 10) and np.array_equal(X, ref_X) and np.array_equal(y.ravel(), ref_y)


def test_clean_is_linear_plus_small_noise_and_seeded():
    X, y = raw("dataset=clean", "dataset.noise=0.1")
    assert X.shape == (256, 10) and y.shape == (256, 1)
    design = np.hstack([X, np.ones((len(X), 1))])
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    residual = y - design @ coef
    assert 0.05 < residual.std() < 0.15  # the noise, nothing else
    X2, _ = raw("dataset=clean")
    X3, _ = raw("dataset=clean", "dataset.seed=1")
    assert np.array_equal(X, X2) and not np.array_equal(X, X3)


def test_outliers_are_a_few_rows_100_to_1000_times_larger():
    clean_X, clean_y = raw("dataset=clean")
    X, y = raw("dataset=outliers", "dataset.outlier_fraction=0.02")
    ratio = np.abs(X).max(axis=1) / np.abs(clean_X).max(axis=1)
    big = ratio > 50
    assert big.sum() == 5  # round(0.02 * 256)
    # each outlier row is the clean row times one factor in [100, 1000]
    f = X[big] / clean_X[big]
    assert np.allclose(f, f[:, :1]) and (f >= 100).all() and (f <= 1000).all()
    assert np.allclose(y[big] / clean_y[big], f[:, :1])


def test_unscaled_features_span_1e_minus3_to_1e4_with_offset():
    X, y = raw("dataset=unscaled")
    scales = X.std(axis=0)
    assert scales.min() < 1e-2 and scales.max() > 1e3
    assert y.mean() > 5e3


def test_nan_inputs_have_one_nan_feature_in_a_fraction_of_rows():
    X, y = raw("dataset=nan_inputs", "dataset.nan_fraction=0.05")
    rows = np.isnan(X).any(axis=1)
    assert rows.sum() == round(0.05 * 256)
    assert (np.isnan(X[rows]).sum(axis=1) == 1).all() and np.isfinite(y).all()


def test_scalers_are_fitted_on_x_and_optionally_y():
    spec = from_config(compose_config(["dataset=unscaled", "preprocess=standard"]))
    data = load(spec.dataset, spec.preprocess)
    assert np.allclose(data.X.mean(axis=0), 0, atol=1e-4) and np.allclose(data.X.std(axis=0), 1, atol=1e-3)
    assert data.y.mean() > 5e3  # target untouched by default
    spec = from_config(compose_config(["dataset=unscaled", "preprocess=minmax", "preprocess.scale_target=true"]))
    data = load(spec.dataset, spec.preprocess)
    assert data.X.min() == pytest.approx(0) and data.X.max() == pytest.approx(1)
    assert data.y.min() == pytest.approx(0) and data.y.max() == pytest.approx(1)
    assert data.X.dtype == np.float32


def test_scaling_keeps_nan_rows():
    spec = from_config(compose_config(["dataset=nan_inputs", "preprocess=robust"]))
    data = load(spec.dataset, spec.preprocess)
    assert np.isnan(data.X).any()


@pytest.mark.parametrize("mode", ["remove", "clip", "winsorize"])
def test_outlier_handling_tames_doc000(mode):
    X, y = raw("dataset=doc000_outlier")
    spec = from_config(compose_config(["dataset=doc000_outlier", f"preprocess.outliers={mode}",
                                       "preprocess.quantiles=[0.0,0.75]"]))
    data = preprocess(X, y, spec.preprocess)
    assert data.X.max() < 1000 and data.y.max() < 2000
    if mode == "remove":
        assert data.rows_removed == 1 and data.X.ravel().tolist() == [1, 2, 3]
    else:
        assert data.n_samples == 4


def test_a_new_dataset_of_an_existing_generator_is_one_yaml_file(tmp_path):
    from nanbench.config import compose
    from nanbench.data import load
    from nanbench.spec import OutlierData, from_config

    (tmp_path / "dataset").mkdir()
    (tmp_path / "dataset" / "heavy_outliers.yaml").write_text(
        "name: heavy_outliers\ngenerator: outliers\nn_samples: 64\nn_features: 3\nnoise: 0.1\nseed: 0\n"
        "outlier_fraction: 0.25\noutlier_scale_min: 1.0e5\noutlier_scale_max: 1.0e6\n")
    (tmp_path / "run.yaml").write_text("defaults:\n  - config\n  - _self_\n")
    spec = from_config(compose(["dataset=heavy_outliers"], config_name="run", config_dir=tmp_path))
    assert isinstance(spec.dataset, OutlierData) and spec.dataset.kind == "outliers"
    assert "dataset.generator" not in spec.factors()  # how it is made, not a factor
    X = load(spec.dataset, spec.preprocess).X
    assert X.shape == (64, 3) and (abs(X).max(axis=1) > 1e4).sum() == 16


def test_an_unknown_generator_or_knob_is_a_one_line_error():
    from conftest import compose_config
    from nanbench.spec import ConfigError, from_config

    with pytest.raises(ConfigError, match=r"^dataset.generator must be one of the generators clean, outliers"):
        from_config(compose_config(["dataset=clean", "dataset.generator=cleen"]))
    with pytest.raises(ConfigError, match=r"^dataset.nan_fraction must be one of the keys"):
        from_config(compose_config(["dataset=clean", "+dataset.nan_fraction=0.1"]))


def loaded(*overrides):
    """The spec, the preprocessed Data and y as a vector."""
    spec = from_config(compose_config(list(overrides)))
    data = load(spec.dataset, spec.preprocess)
    return spec, data, data.y.ravel()


def test_bundled_classification_sets_are_sklearns_with_their_task_and_classes():
    from sklearn.datasets import load_breast_cancer, load_digits
    spec, data, y = loaded("dataset=breast_cancer", "loss=crossentropy")
    X0, y0 = load_breast_cancer(return_X_y=True)
    assert spec.dataset.problem == "binary" and spec.dataset.classes == 2
    assert data.X.shape == X0.shape and (y == y0).all()
    spec, data, y = loaded("dataset=digits", "loss=crossentropy")
    X0, y0 = load_digits(return_X_y=True)
    assert spec.dataset.problem == "multiclass" and spec.dataset.classes == 10
    assert data.X.shape == (1797, 64) and (y == y0).all()
    assert from_config(compose_config(["dataset=clean"])).dataset.problem == "regression"


def test_separable_classes_are_split_by_a_plane_with_the_margin():
    X, y = raw("dataset=separable", "dataset.margin=2.0")
    assert set(np.unique(y)) == {0.0, 1.0}
    from sklearn.svm import LinearSVC
    svm = LinearSVC(C=1e4, fit_intercept=False, max_iter=100_000).fit(X, y.ravel())
    assert svm.score(X, y.ravel()) == 1.0  # linearly separable
    w = svm.coef_.ravel() / np.linalg.norm(svm.coef_)
    assert np.abs(X @ w).min() >= 2.0 - 1e-6  # every point at least the margin from the plane


def test_constant_feature_has_one_zero_variance_column_that_manual_standard_turns_into_nan():
    X, _ = raw("dataset=constant_feature", "dataset.constant_column=3")
    assert X.std(axis=0)[3] == 0.0 and (X.std(axis=0)[np.arange(10) != 3] > 0.5).all()
    manual = loaded("dataset=constant_feature", "preprocess=manual_standard")[1].X
    assert np.isnan(manual[:, 0]).all() and np.isfinite(manual[:, 1:]).all()
    np.testing.assert_allclose(manual[:, 1:].std(axis=0), 1.0, rtol=1e-5)
    sklearn = loaded("dataset=constant_feature", "preprocess=standard")[1].X
    assert (sklearn[:, 0] == 0).all()  # scikit-learn's scaler leaves a zero-variance column at 0


def test_sequences_are_flat_steps_with_a_summed_target_and_classes_by_quantile():
    spec = from_config(compose_config(["dataset=sequences", "dataset.seq_len=7", "dataset.n_features=3"]))
    X, y = make_dataset(spec.dataset)
    assert X.shape == (256, 21) and spec.dataset.seq_shape == (7, 3) and spec.dataset.problem == "regression"
    spec = from_config(compose_config(["dataset=sequences", "dataset.target=classification",
                                       "dataset.n_classes=4", "loss=crossentropy"]))
    _, y = make_dataset(spec.dataset)
    assert spec.dataset.problem == "multiclass" and spec.dataset.classes == 4
    assert np.bincount(y.ravel().astype(int)).tolist() == [64, 64, 64, 64]
    binary = from_config(compose_config(["dataset=sequences", "dataset.target=classification", "loss=crossentropy"]))
    assert binary.dataset.problem == "binary"
    tokens = from_config(compose_config(["dataset=token_sequences", "model=embedding"]))
    X, _ = make_dataset(tokens.dataset)
    assert X.shape == (256, 20) and (X == X.round()).all() and X.min() == 0 and X.max() == 49


def test_out_of_range_labels_are_a_few_rows_labelled_n_classes():
    _, _, y = loaded("dataset=digits", "loss=crossentropy", "dataset.label_noise=out_of_range",
                        "dataset.label_noise_fraction=0.01")
    assert (y == 10).sum() == round(0.01 * 1797) and y.max() == 10
    _, _, clean = loaded("dataset=digits", "loss=crossentropy")
    assert (y[y != 10] == clean[y != 10]).all()  # the other labels are untouched


def test_labels_are_never_scaled_or_clipped():
    _, data, y = loaded("dataset=digits", "loss=crossentropy", "preprocess=standard", "preprocess.outliers=clip")
    assert set(np.unique(y)) == set(range(10)) and abs(data.X.mean()) < 0.1
    _, data, y = loaded("dataset=breast_cancer", "loss=crossentropy", "preprocess.outliers=remove")
    assert set(np.unique(y)) == {0.0, 1.0} and len(y) == data.n_samples < 569


def test_nonfinite_rows_are_kept_dropped_or_imputed_before_anything_else():
    """preprocess.nonfinite: drop removes every row with NaN/inf in X or y; impute fills X's
    non-finite values with the column's finite mean and drops only the rows whose y is not finite."""
    X = np.array([[1.0, 2.0], [np.nan, 4.0], [3.0, np.inf], [5.0, 6.0]])
    y = np.array([[1.0], [2.0], [3.0], [np.nan]])
    base = from_config(compose_config([])).preprocess
    kept = preprocess(X, y, base)
    assert kept.n_samples == 4 and not np.isfinite(kept.X).all()
    dropped = preprocess(X, y, dataclasses.replace(base, nonfinite="drop"))
    np.testing.assert_array_equal(dropped.X, [[1.0, 2.0]])
    assert dropped.rows_removed == 3
    imputed = preprocess(X, y, dataclasses.replace(base, nonfinite="impute"))
    np.testing.assert_array_equal(imputed.X, [[1.0, 2.0], [2.0, 4.0], [3.0, 3.0]])  # means of 1, 3 and of 2, 4
    np.testing.assert_array_equal(imputed.y, [[1.0], [2.0], [3.0]])
    assert imputed.rows_removed == 1
    # drop before the scaler: the scaled rows are finite
    scaled = preprocess(X, y, dataclasses.replace(base, nonfinite="impute", scaler="standard"))
    assert np.isfinite(scaled.X).all()


def test_target_scaler_scales_y_alone_or_with_its_own_kind():
    X = np.array([[1.0], [2.0], [3.0]]) * 1000
    y = np.array([[10.0], [20.0], [30.0]])
    base = from_config(compose_config([])).preprocess
    y_only = preprocess(X, y, dataclasses.replace(base, scale_target=True, target_scaler="standard"))
    np.testing.assert_array_equal(y_only.X, X.astype(np.float32))  # X untouched: scaler none
    np.testing.assert_allclose(y_only.y.ravel(), [-1.2247449, 0.0, 1.2247449], rtol=1e-6)
    same = preprocess(X, y, dataclasses.replace(base, scale_target=True))  # scaler none, "same": y untouched
    np.testing.assert_array_equal(same.y, y.astype(np.float32))
