"""nanbench.sweep.grid: a grid's size, counted from its axes (each key once), and its limit."""

from __future__ import annotations

import pytest
from omegaconf import open_dict

from conftest import SWEEPS
from nanbench.config import compose
from nanbench.spec import ConfigError
from nanbench.sweep.grid import check_size, grid_size


def _sweep(*task: str, name: str = "config", **sweep):
    """A sweep's composed config with `task` as its command line's grid (what Hydra's -m gives)."""
    cfg = compose([f"sweep.{k}={v}" for k, v in sweep.items()], config_name=name,
                  config_dir=SWEEPS if name != "config" else SWEEPS.parent / "conf", hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.overrides.task = list(task)
    return cfg


def test_an_axis_given_in_the_sweep_file_and_on_the_command_line_is_counted_once():
    """smoke: 2 datasets x 2 preprocess x 2 optimizers x 3 inner learning rates = 24; with
    optimizer=sgd on the command line Hydra trains 12 (the command line's value wins)."""
    assert grid_size(_sweep(name="smoke")) == 24
    assert grid_size(_sweep("optimizer=sgd", name="smoke")) == 12
    assert grid_size(_sweep("optimizer=sgd,adam,rmsprop", "preprocess=none", name="smoke")) == 18


def test_ranges_are_counted_without_listing_them():
    assert grid_size(_sweep("optimizer.lr=range(1,10001)", "train.seed=range(0,10000)")) == 10 ** 8
    assert grid_size(_sweep(f"train.seed=range(0,{10 ** 12})")) == 10 ** 12
    assert grid_size(_sweep("optimizer.lr=range(0.1,1.05,0.05)")) == 19  # as Hydra steps it
    assert grid_size(_sweep("train.seed=range(10,0,-3)", "optimizer=sgd,adam")) == 8


def test_a_grid_beyond_sweep_max_runs_is_refused_with_its_count():
    with pytest.raises(ConfigError) as caught:
        check_size(_sweep("optimizer.lr=range(1,10001)", "train.seed=range(0,10000)"))
    assert caught.value.key == "sweep.max_runs"
    assert str(caught.value).startswith("this grid has 100000000 runs, more than sweep.max_runs=1000000;")
    check_size(_sweep("train.seed=range(0,1000)", max_runs=1000))  # at the limit: runs
    with pytest.raises(ConfigError, match="1001 runs, more than sweep.max_runs=1000"):
        check_size(_sweep("train.seed=range(0,1001)", max_runs=1000))
    with pytest.raises(ConfigError, match="sweep.max_runs must be"):
        check_size(_sweep("train.seed=1", max_runs=0))


@pytest.mark.parametrize("override,key", [("sweep.name=../escape_rel", "sweep.name"),
                                          ("sweep.name=/abs/dir", "sweep.name"),
                                          ("tracking.experiment=../up", "tracking.experiment")])
def test_a_sweep_name_that_would_leave_the_results_folder_is_refused(override, key):
    """The sweep's name is its summary's folder under sweep.results_dir: one path component."""
    from nanbench.sweep.grid import check_base
    cfg = compose([override, *(["sweep.name=null"] if key == "tracking.experiment" else [])],
                  config_name="smoke", config_dir=SWEEPS, hydra_config=True)
    with pytest.raises(ConfigError, match=key) as caught:
        check_base(cfg)
    assert "a name of letters" in str(caught.value)
