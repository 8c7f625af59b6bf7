"""nanbench.studies.diagnose.data_check: the bad columns and rows named, on arrays written here."""

from __future__ import annotations

import numpy as np

from nanbench.studies.diagnose.data_check import check, column_names, lines


def test_the_constant_column_the_nan_rows_and_the_extreme_scale_are_named():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((100, 4))
    X[:, 1] = 7.0                   # zero variance: standardising divides by 0
    X[:, 3] *= 1e5                  # a scale 1e5 times the others'
    X[[5, 40, 41], 2] = np.nan      # NaN rows in one column
    y = rng.standard_normal(100)
    y[60] = np.inf                  # and a target that is not finite
    found = check(X, y, names=["age", "const", "income", "price"])
    assert found["zero_variance_columns"] == ["const"]
    assert found["nonfinite_columns"] == {"income": 3}
    assert found["nonfinite_rows"] == [5, 40, 41, 60] and found["nonfinite_row_count"] == 4
    assert found["extreme_scale_columns"][0]["column"] == "price" and found["scale_ratio"] > 1e4
    said = "\n".join(lines(found))
    assert "columns of zero variance (standardising divides by 0): const" in said
    assert "4 row(s) with NaN or inf (counted from 0), first: 5, 40, 41, 60" in said
    assert "columns with NaN or inf: income (3 rows)" in said


def test_clean_data_has_nothing_to_name_and_columns_default_to_their_index():
    X = np.random.default_rng(1).standard_normal((50, 3))
    assert check(X, X[:, 0]) is None and lines(None) == []
    X[0, 2] = np.nan
    assert check(X)["nonfinite_columns"] == {"x2": 1}


def test_a_csvs_feature_names_leave_out_its_target(tmp_path):
    from nanbench.dataspec import UserData
    (tmp_path / "d.csv").write_text("a,b,y\n1,2,3\n")
    spec = UserData(name="csv", path=str(tmp_path / "d.csv"), target="y")
    assert column_names(spec) == ["a", "b"]


def test_an_npzs_several_inputs_name_their_columns_by_array(tmp_path):
    from nanbench.dataspec import UserData
    X1 = np.ones((5, 2))
    X1[:, 1] = np.arange(5.0)
    X1[3, 1] = np.nan
    np.savez(tmp_path / "two.npz", X0=np.arange(15.0).reshape(5, 3), X1=X1, y=np.zeros(5))
    names = column_names(UserData(name="npz", path=str(tmp_path / "two.npz")))
    assert names == ["X0[0]", "X0[1]", "X0[2]", "X1[0]", "X1[1]"]
    found = check(np.concatenate([np.arange(15.0).reshape(5, 3), X1], axis=1), np.zeros(5), names)
    assert found["nonfinite_columns"] == {"X1[1]": 1} and found["zero_variance_columns"] == ["X1[0]"]
