"""`python -m nanbench.studies.examples` end to end (nanbench.studies.examples.cli): real,
shortened runs into a temporary MLflow store; the table, the CSVs and the MLflow runs agree."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest

from nanbench.studies.claims.sweeps import load_sweep
from nanbench.studies.examples.cli import main
from nanbench.studies.examples.definitions import ALL
from nanbench.studies.examples.judge import VERDICTS
from nanbench.vocab import OUTCOMES


@pytest.mark.slow
def test_cli_writes_the_table_from_real_runs_logged_to_mlflow(tmp_path, store):
    """`python -m nanbench.studies.examples` shortened: every example and variant at most 1 epoch (as written
    too) at 2 seeds, one claim's sweep; the table, the CSVs and the MLflow runs agree."""
    from mlflow.tracking import MlflowClient

    out = tmp_path / "results"
    assert main(["--out", str(out), "--tracking-uri", store, "--epochs-cap", "1",
                          "--claims", "nan_inputs", "--seeds", "2"]) == 0
    with (out / "examples.csv").open() as f:
        rows = {r["key"]: r for r in csv.DictReader(f)}
    assert list(rows) == [e.key for e in ALL]
    required = ("doc", "example", "as_written", "outcome", "final_loss", "final_loss_seed_min",
                "final_loss_seed_max", "seeds", "seeds_nonfinite", "dead_fraction", "first_nonfinite_epoch", "claim",
                "verdict", "wall_s", "steps_per_s", "run_id")
    assert all(c in next(iter(rows.values())) for c in required)

    # the as-written record: the code ran, or the exact error; the equivalent says so
    for key in ("doc000-ex1", "doc000-ex2", "doc000-ex3", "doc003-ex1"):
        assert rows[key]["as_written"] == "ran" and rows[key]["ran_as"] == "as written"
        assert rows[key]["matches_as_written"] == "yes"  # nanbench's forensic fit = the code's own fit
    assert rows["doc003-ex2"]["as_written"] == "NameError: name 'X_train' is not defined"
    assert rows["doc003-ex2"]["as_written_with_data"] == "ran"
    assert rows["doc003-ex3"]["as_written_with_data"] == "ValueError: Could not interpret loss identifier: huber_loss"
    assert rows["doc003-ex2"]["ran_as"] == rows["doc003-ex3"]["ran_as"] == "equivalent"
    assert "epochs=100 capped at 1 (--epochs-cap)" in rows["doc003-ex3"]["changes"]
    assert "input_shape" in rows["doc000-ex1"]["warnings"]
    assert all(r["ran_as"] == "variant" for k, r in rows.items() if "/" in k)
    for r in rows.values():
        assert r["outcome"] in OUTCOMES and r["verdict"] in VERDICTS
        assert int(r["steps"]) <= 8  # capped: at most 1 epoch of 256 rows in batches of 32
        assert r["seeds"] == "0 1"    # seed 0 in this process, seed 1 in the worker

    # MLflow: one run per row in experiment `examples`, the same outcome, finite metrics only
    client = MlflowClient(tracking_uri=store)
    exp = client.get_experiment_by_name("examples")
    runs = {r.info.run_id: r for r in client.search_runs([exp.experiment_id], max_results=1000)}
    assert set(runs) == {r["run_id"] for r in rows.values()}
    for r in rows.values():
        run = runs[r["run_id"]]
        assert run.data.tags["outcome"] == r["outcome"] and run.data.tags["verdict"] == r["verdict"]
        assert run.data.tags["example_key"] == r["key"] and "first_nonfinite_source" in run.data.tags
        assert all(math.isfinite(v) for v in run.data.metrics.values())
    claim_runs = len(load_sweep("claim_nan_inputs").runs())   # every run of the claim's sweep file, once
    claim_exp = client.get_experiment_by_name("claim_nan_inputs")
    assert len(client.search_runs([claim_exp.experiment_id], max_results=1000)) == claim_runs

    with (out / "claims.csv").open() as f:
        claim_rows = list(csv.DictReader(f))
    assert {r["claim"] for r in claim_rows} == {"nan_inputs"}
    assert sum(int(r["runs"]) for r in claim_rows) == claim_runs
    assert {r["steps"] for r in claim_rows} == {"160"}
    md = (out / "examples.md").read_text()
    import keras
    import tensorflow as tf
    assert f"TensorFlow {tf.__version__}" in md and f"Keras {keras.__version__}" in md
    assert f"NumPy {np.__version__}" in md and "sweeps/claim_nan_inputs.yaml" in md
    assert all(f"| {doc} | ex{n} | " in md for doc in ("doc000", "doc003") for n in (1, 2, 3))
    assert "final loss over 2 seeds" in md and "difference [95% CI]" in md
