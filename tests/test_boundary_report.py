"""Boundary tables and plots: from search summaries, without training."""

from __future__ import annotations

import json

import pytest

from nanbench.studies.boundary.report import table, write_plot, write_table


def _summary(status: str, optimizer: str = "sgd", **extra) -> dict:
    found = status == "bracketed"
    s = {
        "lr_max_stable": {"bracketed": 3.9e-6, "stable_everywhere": 10.0}.get(status),
        "lr_min_unstable": {"bracketed": 4.1e-6, "unstable_everywhere": 1e-8}.get(status),
        "rel_precision": 0.05, "found": found, "status": status, "note": f"note {status}",
        "lr_theory": 4e-6 if found else None, "lambda_max": 5e5 if found else None,
        "theory_reason": None if found else "optimizer adam is adaptive (no closed form)",
        "measured_over_theory": 0.975 if found else None, "evaluations": 7, "lr_low": 1e-8,
        "lr_high": 10.0, "epochs": 500, "steps_per_run": 500,
        "factors": {"dataset": "doc000_outlier", "preprocess": "none", "model": "linear",
                    "optimizer": optimizer, "clipping": "none", "loss": "mse", "batch_size": 512,
                    "n_samples": 4, "full_batch": True},
    }
    s.update(extra)
    return s


def test_table_states_missing_boundaries_plainly():
    rows = [_summary("bracketed"), _summary("stable_everywhere", "adam"),
            _summary("unstable_everywhere", "rmsprop")]
    text = table(rows)
    assert "≥ 10 (stable up to lr = 10)" in text
    assert "unstable down to lr = 1e-08" in text
    assert "| 3.9e-06 | 4.1e-06 | 4e-06 | 0.975 |" in text
    assert "nan" not in text.lower().replace("nanbench", "")


def test_write_table_and_plot(tmp_path):
    rows = [_summary("bracketed"), _summary("stable_everywhere", "adam")]
    write_table(rows, tmp_path / "boundaries.md", command="python -m nanbench.studies.boundary --grid g.yaml")
    write_plot(rows, tmp_path / "boundaries.png")
    md = (tmp_path / "boundaries.md").read_text()
    assert md.startswith("# Stability boundaries") and "--grid g.yaml" in md
    assert "The closed form applies to 1 of 2 configurations" in md
    assert "Searches without a boundary inside the range" in md
    assert (tmp_path / "boundaries.png").read_bytes()[:4] == b"\x89PNG"
    json.dumps(rows, allow_nan=False)  # the summaries themselves are strict JSON


@pytest.mark.slow
def test_grid_end_to_end(tmp_path, store, capsys):
    from nanbench.studies.boundary import main

    grid = tmp_path / "grid.yaml"  # a sweep file like sweeps/boundaries.yaml, two jobs
    grid.write_text(
        "defaults: [boundary, _self_]\n"
        "train: {epochs: 200, batch_size: 64}\n"
        "boundary: {lr_high: 2.0}\n"
        "hydra: {sweeper: {params: {dataset: doc000_clean, preprocess: standard, optimizer: 'sgd,adam'}}}\n")
    main(["--grid", str(grid), "--out", str(tmp_path / "out"), f"tracking.uri={store}"])
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert last["configurations"] == 2
    rows = json.loads((tmp_path / "out" / "boundaries.json").read_text())
    by_opt = {r["factors"]["optimizer"]: r for r in rows}
    assert by_opt["sgd"]["lr_theory"] == pytest.approx(1.0, rel=1e-5)
    assert by_opt["sgd"]["measured_over_theory"] == pytest.approx(1.0, rel=0.05)
    assert by_opt["adam"]["lr_theory"] is None
    md = (tmp_path / "out" / "boundaries.md").read_text()
    assert "doc000_clean" in md and (tmp_path / "out" / "boundaries.png").exists()


def test_multirun_callback_writes_the_table_into_the_sweep_folder(tmp_path):
    from hydra.core.utils import JobReturn, JobStatus
    from omegaconf import OmegaConf

    from nanbench.studies.boundary import BoundaryCallback

    callback = BoundaryCallback()
    for i, status in enumerate(["bracketed", "stable_everywhere"]):
        ret = JobReturn(overrides=[f"optimizer={'sgd' if i == 0 else 'adam'}"], status=JobStatus.COMPLETED)
        ret.return_value = _summary(status, "sgd" if i == 0 else "adam")
        callback.on_job_end(config=None, job_return=ret)
    failed = JobReturn(overrides=["optimizer=rmsprop"], status=JobStatus.FAILED)
    failed.return_value = RuntimeError("a bug")
    callback.on_job_end(config=None, job_return=failed)  # a crashed job is not a row
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path / "sweep")},
                                         "job": {"config_name": "boundaries"}}})
    callback.on_multirun_end(config=config)
    rows = json.loads((tmp_path / "sweep" / "boundaries.json").read_text())
    assert [r["overrides"] for r in rows] == [["optimizer=sgd"], ["optimizer=adam"]]
    assert (tmp_path / "sweep" / "boundaries.md").exists() and (tmp_path / "sweep" / "boundaries.png").exists()
