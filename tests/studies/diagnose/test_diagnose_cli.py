"""`python -m nanbench.diagnose` end to end on planted cases whose answer is known: unscaled
targets (a scaling or clipping remedy first), NaN rows (dropping or imputing them first), a stable
configuration (nothing to fix); the MLflow records; bad input (one line, exit 2, nothing recorded)."""

from __future__ import annotations

import json

import pytest

from nanbench.studies.diagnose.cli import main

SMALL = ["dataset.n_samples=64", "train.epochs=5"]


def diagnose(tmp_path, capsys, *overrides: str) -> dict:
    argv = [*overrides, *SMALL, f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}", f"diagnose.out={tmp_path / 'out'}"]
    assert main(argv) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    return json.loads(last)


@pytest.mark.slow
def test_unscaled_targets_rank_a_scaling_or_clipping_remedy_first_and_every_try_is_a_child_run(tmp_path, capsys):
    s = diagnose(tmp_path, capsys, "dataset=unscaled", "optimizer=sgd", "diagnose.boundary_evaluations=12")
    assert s["outcome"] == "nan" and s["first_nonfinite_source"] in ("loss", "gradients", "weights")
    assert s["grad_norm_history"] and all(v is not None for v in s["grad_norm_history"])
    first = s["remedies"][0]
    assert first["trained_seeds"] == 3 and ("scaling" in first["change"] or "clipnorm" in first["change"])
    trained = [m["trained_seeds"] for m in s["remedies"]]
    assert trained == sorted(trained, reverse=True) and min(trained) >= 1  # every remedy trains somewhere
    assert all(m["trained_seeds"] == 0 for m in s["avoids_nan_only"])
    assert s["lr_max_stable"] is not None and s["lr_max_stable"] < 0.01 and s["verdict"] == "fixed by a single change"
    assert s["lr_max_trains"] is None or s["lr_max_trains"] <= s["lr_max_stable"]
    tried = {t["change"] for t in s["tried"]}
    assert {"lr/3", "lr/10", "lr/100", "Huber instead of mse", "Adam instead of sgd"} <= tried
    report = (tmp_path / "out" / s["name"] / "report.md").read_text()
    assert first["change"] in report and (tmp_path / "out" / s["name"] / "report.html").exists()

    from mlflow.tracking import MlflowClient
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.get_experiment_by_name("diagnose")
    children = client.search_runs([exp.experiment_id], f"tags.mlflow.parentRunId = '{s['parent_run_id']}'",
                                  max_results=1000)
    tries = [r for r in children if r.data.tags.get("nanbench.role") == "try"]
    searches = [r for r in children if r.data.tags.get("nanbench.role") == "search"]
    assert len(tries) == s["runs"] and len(searches) == 1  # every try at every seed, and the boundary search
    parent = client.get_run(s["parent_run_id"])
    assert parent.info.status == "FINISHED" and parent.data.tags["best_remedy"] == first["change"]


@pytest.mark.slow
def test_nan_rows_rank_dropping_or_imputing_them_first(tmp_path, capsys):
    # lr 0.01: at the default 0.001, 5 epochs of 64 rows leave every remedy stalled (L/L0 0.98)
    s = diagnose(tmp_path, capsys, "dataset=nan_inputs", "optimizer.lr=0.01")
    assert s["outcome"] == "nan" and s["first_nonfinite_step"] == 0 and s["first_nonfinite_source"] == "input"
    assert s["remedies"][0]["change"] in ("drop non-finite rows", "impute non-finite inputs")
    assert s["remedies"][0]["trained_seeds"] == 3 and s["lr_max_stable"] is None
    # NaN in the data at step 0: no learning rate can change it, so no search, and the report says why
    assert s["boundary_status"] == "skipped" and "no learning rate can change it" in s["boundary_note"]
    assert s["boundary_note"] in (tmp_path / "out" / s["name"] / "report.md").read_text()


@pytest.mark.slow
def test_a_stable_configuration_has_nothing_to_fix(tmp_path, capsys):
    s = diagnose(tmp_path, capsys, "dataset=clean", "model=linear", "optimizer.lr=0.01")
    assert s["verdict"] == "nothing to fix" and s["remedies"] == [] and s["tried"] == []
    assert s["outcomes"] == ["improving"] * 3 and s["runs"] == 3 and s["lr_max_stable"] is None


@pytest.mark.parametrize("override, key", [("optimizer.lr=-1", "optimizer.lr"), ("diagnose.seeds=2", "diagnose.seeds"),
                                           ("model.nope=1", "model.nope"),
                                           ("preprocess.nonfinite=x", "preprocess.nonfinite")])
def test_bad_input_is_one_line_exit_2_and_nothing_recorded(tmp_path, capsys, override, key):
    with pytest.raises(SystemExit) as info:
        main([override, f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}", f"diagnose.out={tmp_path / 'out'}"])
    err = capsys.readouterr().err.strip()
    assert info.value.code == 2 and key in err and len(err.splitlines()) == 1
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "out").exists()


@pytest.mark.slow
def test_when_no_single_change_suffices_a_pair_does(tmp_path, capsys):
    """NaN rows and a learning rate past the boundary (clean data diverge at lr 1.2 with SGD):
    dropping or imputing the rows leaves the run diverged, and nothing else reaches past the NaN
    input; a pair with one of them is stable in every seed."""
    s = diagnose(tmp_path, capsys, "dataset=nan_inputs", "optimizer=sgd", "optimizer.lr=1.2", "diagnose.boundary=false")
    singles = {t["change"]: t for t in s["tried"] if " + " not in t["change"]}
    assert singles["drop non-finite rows"]["outcomes"] == ["diverged"] * 3
    assert not any(t["trained_seeds"] == 3 for t in singles.values())
    assert s["verdict"] == "fixed by a pair of changes"
    best = s["remedies"][0]
    assert " + " in best["change"] and best["trained_seeds"] == 3
    assert "drop non-finite rows" in best["change"] or "impute non-finite inputs" in best["change"]


@pytest.mark.slow
def test_an_exponential_output_on_a_regression_is_fixed_by_a_linear_output(tmp_path, capsys):
    # unscaled inputs through a relu MLP give outputs in the hundreds: exp overflows in the first forward pass
    s = diagnose(tmp_path, capsys, "dataset=unscaled", "model=mlp", "model.final_activation=exponential",
                 "optimizer=adam", "diagnose.boundary=false", "diagnose.pairs=false")
    assert s["outcome"] in ("nan", "inf") and s["first_nonfinite_step"] == 0
    remedies = {m["change"]: m for m in s["remedies"]}
    assert remedies["linear output instead of exponential"]["stable_seeds"] == 3
    assert "hidden tanh instead of relu" in {t["change"] for t in s["tried"]}
