"""`python -m nanbench.diagnose` on a user's own CSV and saved .keras model, written in a
temporary directory: unscaled targets rank a scaling or clipping remedy first, NaN rows rank
dropping or imputing them first, and the first non-finite layer is the model's own."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from nanbench.studies.diagnose.cli import main


def files(tmp_path, nan_rows: int = 0):
    import keras
    rng = np.random.default_rng(0)
    X = rng.uniform(0, 1000, size=(128, 4))
    price = X @ [30.0, -10.0, 5.0, 20.0] + 400_000 + rng.normal(0, 100, 128)
    frame = pd.DataFrame({"rooms": X[:, 0], "age": X[:, 1], "floor": X[:, 2], "area": X[:, 3], "price": price})
    if nan_rows:
        frame.loc[:nan_rows - 1, "age"] = np.nan
        frame["price"] = (frame["price"] - frame["price"].mean()) / frame["price"].std()
        frame[["rooms", "age", "floor", "area"]] /= 1000.0
    frame.to_csv(tmp_path / "houses.csv", index=False)
    keras.utils.set_random_seed(0)
    keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu", name="hidden"),
                      keras.layers.Dense(1, name="price")]).save(tmp_path / "houses.keras")
    return ["dataset=csv", f"dataset.path={tmp_path / 'houses.csv'}", "dataset.target=price", "model=keras",
            f"model.path={tmp_path / 'houses.keras'}"]


def diagnose(tmp_path, capsys, *overrides: str) -> dict:
    argv = [*overrides, "train.epochs=5", "diagnose.boundary=false", f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}",
            f"diagnose.out={tmp_path / 'out'}"]
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


@pytest.mark.slow
def test_a_users_unscaled_csv_and_keras_model_rank_scaling_or_clipping_first(tmp_path, capsys):
    s = diagnose(tmp_path, capsys, *files(tmp_path), "optimizer=sgd", "optimizer.lr=0.1")
    assert s["outcome"] in ("nan", "inf")
    assert s["first_nonfinite_layer"] in ("hidden", "price", "loss")
    first = s["remedies"][0]
    assert first["stable_seeds"] == 3 and ("scaling" in first["change"] or "clipnorm" in first["change"])


@pytest.mark.slow
def test_a_users_csv_with_nan_rows_ranks_dropping_or_imputing_them_first(tmp_path, capsys):
    s = diagnose(tmp_path, capsys, *files(tmp_path, nan_rows=3), "optimizer=adam", "optimizer.lr=0.001")
    assert s["outcome"] == "nan" and s["first_nonfinite_source"] == "input" and s["first_nonfinite_layer"] == "input"
    assert s["remedies"][0]["change"] in ("drop non-finite rows", "impute non-finite inputs")
    assert s["remedies"][0]["stable_seeds"] == 3
