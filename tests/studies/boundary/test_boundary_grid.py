"""nanbench.studies.boundary.grid: a sweep file's jobs, composed as `-m` would, and run end to end."""

from __future__ import annotations

import json

import pytest

from nanbench.studies.boundary.grid import compose_job, load_grid, run_grid
from nanbench.studies.boundary.spec import BoundarySpec, prepare


@pytest.mark.slow
def test_grid_file_is_a_hydra_sweep_whose_jobs_compose():
    jobs = load_grid("sweeps/boundaries.yaml")
    assert jobs and len(jobs) == len({tuple(j) for j in jobs})   # one search per distinct configuration
    for job in jobs[::5]:  # a spread of jobs, each composed as `-m` would
        spec, bs = prepare(compose_job("sweeps/boundaries.yaml", job))
        assert spec.train.engine == "fused" and bs == BoundarySpec()
    theory_cells = [j for j in jobs if {"optimizer=sgd", "clipping=none", "loss=mse"} <= set(j)]
    assert theory_cells  # the grid holds configurations the closed form covers
    # narrowing one axis from the command line: the same jobs with that axis at the one value
    narrowed = load_grid("sweeps/boundaries.yaml", ["hydra.sweeper.params.dataset=doc000_clean"])
    expected = [["dataset=doc000_clean" if o.startswith("dataset=") else o for o in j] for j in jobs]
    assert narrowed == list(map(list, dict.fromkeys(map(tuple, expected))))


def test_a_grid_without_jobs_fails_with_one_line(tmp_path, capsys):
    grid = tmp_path / "grid.yaml"  # no hydra.sweeper.params: nothing to search
    grid.write_text("defaults: [boundary, _self_]\n")
    with pytest.raises(SystemExit) as info:
        run_grid(grid, tmp_path / "out")
    err = capsys.readouterr().err.strip()
    assert info.value.code == 2 and len(err.splitlines()) == 1 and "hydra.sweeper.params" in err
    assert not (tmp_path / "out").exists()


def test_a_bad_job_fails_before_anything_trains(tmp_path, capsys, store):
    grid = tmp_path / "grid.yaml"
    grid.write_text("defaults: [boundary, _self_]\n"
                    "hydra: {sweeper: {params: {dataset: doc000_clean, boundary.growth_factor: '2,1'}}}\n")
    with pytest.raises(SystemExit) as info:
        run_grid(grid, tmp_path / "out", [f"tracking.uri={store}"])
    err = capsys.readouterr().err.strip()
    assert info.value.code == 2 and len(err.splitlines()) == 1
    assert "boundary.growth_factor must be > 1" in err and "(job: dataset=doc000_clean boundary.growth_factor=1)" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_grid_end_to_end(tmp_path, store, capsys):
    from nanbench.studies.boundary.cli import main

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
