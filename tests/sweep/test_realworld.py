"""sweeps/realworld.yaml: every case in sweeps/realworld/ is in the grid once and composes into a
run nanbench accepts (a dataset with the models and losses that fit it), and the grid crosses the
cases with the optimizers, a learning-rate range and clipping none/global_clipnorm."""

from __future__ import annotations

import pytest

from conftest import SWEEPS
from nanbench.config import compose, sweep_jobs
from nanbench.spec import from_config
from nanbench.sweep import expand, inner_grid

CASES = sorted(p.stem for p in (SWEEPS / "realworld").glob("*.yaml"))


def test_the_grid_holds_every_case_once_crossed_with_the_optimizers():
    jobs = sweep_jobs(SWEEPS / "realworld.yaml")
    cases = [dict(o.split("=", 1) for o in job)["realworld"] for job in jobs]
    assert sorted(set(cases)) == CASES and len(CASES) == 28
    assert len(jobs) == 2 * len(CASES)
    assert {dict(o.split("=", 1) for o in job)["optimizer"] for job in jobs} == {"sgd", "adam"}


def test_every_case_composes_into_a_run_that_fits_its_data():
    seen = {"dataset": set(), "model": set(), "loss": set(), "preprocess": set()}
    for case in CASES:
        cfg = compose([f"realworld={case}", "optimizer=sgd"], config_name="realworld", config_dir=SWEEPS)
        runs = expand(cfg)
        assert len(runs) == 12, case  # 6 learning rates x 2 clipping kinds
        spec = from_config(runs[0], multirun=True)  # a misfit (an LSTM on a table, ...) is a ConfigError
        assert spec.train.steps == 160 and spec.train.engine == "fused"
        dataset, model, loss, prep = case.split("-")[:3] + [case.split("-")[3] if case.count("-") == 3 else "none"]
        assert (spec.dataset.name, spec.model.name, spec.preprocess.scaler) == (dataset, model, prep), case
        assert spec.loss.name == loss.removesuffix("_logits") and spec.loss.from_logits == loss.endswith("_logits")
        seen["dataset"].add(spec.dataset.name)
        seen["model"].add(spec.model.name)
        seen["loss"].add(spec.loss.name)
        seen["preprocess"].add(spec.preprocess.scaler)
    assert seen["dataset"] == {"breast_cancer", "digits", "separable", "constant_feature", "sequences",
                               "token_sequences"}
    assert seen["model"] == {"mlp", "mlp_batchnorm", "lstm", "gru", "embedding"}
    assert seen["loss"] == {"crossentropy", "log_loss_naive", "mse", "rmse"}
    assert "manual_standard" in seen["preprocess"]


def test_the_inner_grid_spans_the_learning_rates_and_clipping():
    cfg = compose(["realworld=digits-mlp-crossentropy"], config_name="realworld", config_dir=SWEEPS)
    combos = inner_grid(cfg)
    assert {c["clipping.kind"] for c in combos} == {"none", "global_clipnorm"}
    lrs = sorted({c["optimizer.lr"] for c in combos})
    assert lrs[0] <= 1e-4 and lrs[-1] >= 10.0


@pytest.mark.slow
def test_a_slice_of_the_realworld_sweep_writes_its_summary_with_layers(tmp_path, store):
    """`make sweep SWEEP=realworld` narrowed to two cases, SGD and two learning rates: every run is
    recorded, the summary is written, runs.csv carries the layer and skipped-step columns, and the
    planted causes are named: manual_standard on constant_feature at the input, the hand-written
    log loss on digits at its loss."""
    import subprocess
    import sys

    import pandas as pd

    from conftest import ROOT

    cmd = [sys.executable, "-m", "nanbench", "-m", "--config-dir", str(SWEEPS), "--config-name", "realworld",
           'hydra.sweeper.params.realworld="digits-mlp-log_loss_naive,constant_feature-mlp-mse-manual_standard"',
           "hydra.sweeper.params.optimizer=sgd", "sweep.inner={optimizer.lr:[0.01,10.0],clipping.kind:[none]}",
           f"tracking.uri={store}", f"sweep.results_dir={tmp_path}", f"hydra.sweep.dir={tmp_path}/hydra"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "realworld"
    assert (out / "summary.md").is_file() and (out / "summary.html").is_file()
    runs = pd.read_csv(out / "runs.csv", keep_default_na=False, na_values=[""])
    assert len(runs) == 4
    assert {"first_nonfinite_layer", "first_nonfinite_part", "skipped_steps"} <= set(runs.columns)
    manual = runs[runs["preprocess.scaler"] == "manual_standard"]
    assert (manual["outcome"] == "nan").all() and (manual["first_nonfinite_layer"] == "input").all()
    naive = runs[(runs["loss.name"] == "log_loss_naive") & (runs["optimizer.lr"] == 10.0)]
    assert (naive["outcome"] == "nan").all() and (naive["first_nonfinite_layer"] == "loss").all()
