"""nanbench.config: one way to compose configs, as the command line does, and a sweep file's jobs
in the basic sweeper's order."""

from __future__ import annotations

import pytest

from nanbench.config import CONF_DIR, SWEEPS_DIR, compose, sweep_jobs


def test_compose_is_the_command_lines_config():
    cfg = compose(["dataset=outliers", "optimizer.lr=0.5"])
    assert cfg.dataset.name == "outliers" and cfg.optimizer.lr == 0.5 and "hydra" not in cfg
    assert compose([], hydra_config=True).hydra.job.config_name == "config"


def test_a_sweep_file_composes_with_conf_on_its_search_path():
    cfg = compose(["dataset=clean"], config_name="smoke", config_dir=SWEEPS_DIR)
    assert cfg.sweep.name == "smoke" and cfg.dataset.generator == "clean"


def test_sweep_jobs_expand_the_grid_first_key_outermost(tmp_path):
    (tmp_path / "grid.yaml").write_text(
        "defaults:\n  - config\n  - _self_\nhydra:\n  sweeper:\n    params:\n"
        "      optimizer: sgd,adam\n      optimizer.lr: 0.1,0.01,0.001\n")
    jobs = sweep_jobs(tmp_path / "grid.yaml")
    assert jobs[:2] == [("optimizer=sgd", "optimizer.lr=0.1"), ("optimizer=sgd", "optimizer.lr=0.01")]
    assert len(jobs) == 6 and jobs[-1] == ("optimizer=adam", "optimizer.lr=0.001")
    narrowed = sweep_jobs(tmp_path / "grid.yaml", ["hydra.sweeper.params.optimizer=adam"])
    assert [j[0] for j in narrowed] == ["optimizer=adam"] * 3


def test_every_option_file_of_conf_is_found_there():
    assert (CONF_DIR / "optimizer" / "adam.yaml").is_file()
    with pytest.raises(Exception, match="nadamm"):
        compose(["optimizer=nadamm"])  # Hydra's own error lists the options there are
