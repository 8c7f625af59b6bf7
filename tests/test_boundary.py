"""Stability boundary: the search logic, the theory oracle, and measured boundaries against theory."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from conftest import compose_config
from nanbench.studies.boundary import (BoundarySpec, boundary_spec, find_boundary, is_stable, lambda_max_mse,
                               load_grid, prepare, search, theory)
from nanbench.data import load
from nanbench.spec import ConfigError


def _compose(*overrides: str):
    return compose_config(list(overrides), config_name="boundary")


# ----------------------------------------------------------------- the search, against a fake oracle

def _threshold(boundary: float):
    seen = []

    def stable(lr: float, phase: str) -> bool:
        seen.append((lr, phase))
        return lr < boundary
    return stable, seen


@pytest.mark.parametrize("start", [1e-8, 1e-3, 0.01, 10.0])
@pytest.mark.parametrize("boundary", [3.3e-7, 0.0123, 4.56])
def test_search_brackets_then_bisects_to_the_precision(start, boundary):
    bs = BoundarySpec()
    stable, seen = _threshold(boundary)
    out = search(stable, bs, start)
    assert out.status == "bracketed" and out.found
    assert out.lr_max_stable < boundary <= out.lr_min_unstable
    assert out.lr_min_unstable / out.lr_max_stable <= 1 + bs.rel_precision
    assert [p.lr for p in out.probes] == [lr for lr, _ in seen]
    # bracketing by decades, then at most ceil(log2(ln(10) / ln(1.05))) = 6 bisections
    assert sum(p.phase == "bisect" for p in out.probes) <= 6


def test_search_says_when_no_boundary_lies_in_range():
    bs = BoundarySpec(lr_low=1e-4, lr_high=1.0)
    everywhere = search(lambda lr, phase: True, bs, 0.01)
    assert everywhere.status == "stable_everywhere" and not everywhere.found
    assert everywhere.lr_max_stable == 1.0 and everywhere.lr_min_unstable is None
    nowhere = search(lambda lr, phase: False, bs, 0.01)
    assert nowhere.status == "unstable_everywhere" and not nowhere.found
    assert nowhere.lr_max_stable is None and nowhere.lr_min_unstable == 1e-4


def test_search_stops_at_max_evaluations():
    bs = BoundarySpec(max_evaluations=3, rel_precision=1e-6)
    out = search(lambda lr, phase: lr < 0.5, bs, 0.01)
    assert len(out.probes) == 3 and out.status == "max_evaluations"


def test_stable_outcomes():
    assert is_stable("converged") and is_stable("improving") and is_stable("stalled")
    assert not any(is_stable(o) for o in ("nan", "inf", "diverged", "error"))


# ----------------------------------------------------------------- config

def test_boundary_config_composes_from_the_real_configs():
    spec, bs = prepare(_compose("dataset=doc000_outlier", "optimizer=sgd"))
    assert spec.train.engine == "fused" and spec.tracking.experiment == "boundaries"
    assert bs == BoundarySpec() == boundary_spec(None)  # conf/boundary.yaml and the dataclass agree


@pytest.mark.parametrize("override, key", [
    ("boundary.lr_low=0", "boundary.lr_low"),
    ("boundary.lr_high=1e-9", "boundary.lr_high"),
    ("boundary.growth_factor=1", "boundary.growth_factor"),
    ("boundary.lr_start=100", "boundary.lr_start"),
    ("+boundary.typo=1", "boundary.typo"),
])
def test_bad_boundary_values_name_the_key(override, key):
    with pytest.raises(ConfigError) as info:
        prepare(_compose(override))
    assert info.value.key == key


@pytest.mark.slow
def test_grid_file_is_a_hydra_sweep_whose_jobs_compose():
    from nanbench.studies.boundary import compose_job

    jobs = load_grid("sweeps/boundaries.yaml")
    assert len(jobs) == len({tuple(j) for j in jobs}) >= 20
    for job in jobs[::5]:  # a spread of jobs, each composed as `-m` would
        spec, bs = prepare(compose_job("sweeps/boundaries.yaml", job))
        assert spec.train.engine == "fused" and bs == BoundarySpec()
    theory_cells = [j for j in jobs if {"optimizer=sgd", "clipping=none", "loss=mse"} <= set(j)]
    assert theory_cells  # the grid holds configurations the closed form covers
    narrowed = load_grid("sweeps/boundaries.yaml", ["hydra.sweeper.params.dataset=doc000_clean"])
    assert len(narrowed) == len(jobs) // 2 and all("dataset=doc000_clean" in j for j in narrowed)


# ----------------------------------------------------------------- theory

def test_lambda_max_is_the_keras_mse_hessian():
    # doc000_outlier: H = (2/4) [[1000014, 1006], [1006, 4]]
    X = np.array([[1.0], [2.0], [3.0], [1000.0]], dtype=np.float32)
    assert lambda_max_mse(X) == pytest.approx(np.linalg.eigvalsh(0.5 * np.array([[1000014, 1006], [1006, 4]]))[-1])
    # standardized doc000_clean: H = 2 I
    Xs = (np.arange(1, 5) - 2.5) / np.std(np.arange(1, 5))
    assert lambda_max_mse(Xs[:, None]) == pytest.approx(2.0)


def test_theory_applies_only_where_its_assumptions_hold():
    def th(*overrides):
        spec, _ = prepare(_compose(*overrides))
        return theory(spec, load(spec.dataset, spec.preprocess).X)

    sgd = th("dataset=doc000_clean", "preprocess=standard", "optimizer=sgd")
    assert sgd.lr == pytest.approx(1.0, rel=1e-5) and sgd.reason is None
    heavy_ball = th("dataset=doc000_clean", "preprocess=standard", "optimizer=momentum")
    assert heavy_ball.lr == pytest.approx(1.9, rel=1e-5)
    mini = th("dataset=clean", "optimizer=sgd", "train.batch_size=32")
    assert mini.lr is None and mini.reason.startswith("mini-batch")
    for override in ("optimizer=adam", "loss=huber", "clipping=clipnorm", "model=mlp", "model.weight_decay=0.1"):
        out = th("dataset=doc000_clean", "optimizer=sgd", override)
        assert out.lr is None and out.reason


# ----------------------------------------------------------------- measured against theory

AGREEMENT = [
    # the documents' outlier set, raw: lambda_max ~ 5e5, lr_theory ~ 4e-6
    ("dataset=doc000_outlier", "preprocess=none"),
    # the documents' clean set after standard scaling: H = 2 I, lr_theory = 1 (sgd), 1.9 (momentum)
    ("dataset=doc000_clean", "preprocess=standard"),
    # a random well-conditioned problem, small n
    ("dataset=clean", "dataset.n_samples=64", "dataset.n_features=4"),
]


@pytest.mark.parametrize("optimizer", ["sgd", "momentum"])
@pytest.mark.parametrize("data", AGREEMENT, ids=lambda d: d[0].split("=")[1])
def test_measured_boundary_matches_theory(data, optimizer, store):
    cfg = _compose(*data, f"optimizer={optimizer}", "train.batch_size=1024", f"tracking.uri={store}")
    spec, bs = prepare(cfg)
    out = find_boundary(spec, bs)  # no tracker: the MLflow path is tested below
    s = out.summary()
    assert s["lr_theory"] is not None and s["found"], s["note"]
    assert s["lr_max_stable"] == pytest.approx(s["lr_theory"], rel=0.05)
    assert s["lr_min_unstable"] == pytest.approx(s["lr_theory"], rel=0.05)
    # and the bound lies inside the measured bracket (1000 steps resolve it to ~0.5%)
    assert s["lr_max_stable"] <= s["lr_theory"] * 1.005 and s["lr_theory"] <= s["lr_min_unstable"] * 1.005


@pytest.mark.slow
def test_search_is_tracked_as_parent_and_children(store, capsys):
    from mlflow.tracking import MlflowClient
    from nanbench.studies.boundary import run_one

    summary = run_one(_compose("dataset=doc000_clean", "preprocess=standard", "optimizer=sgd",
                               "train.epochs=300", "boundary.lr_start=0.5", "boundary.growth_factor=4",
                               f"tracking.uri={store}"))
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert last == json.loads(json.dumps(summary))
    for key in ("lr_max_stable", "lr_min_unstable", "rel_precision", "lr_theory", "evaluations"):
        assert key in last
    client = MlflowClient(tracking_uri=store)
    exp = client.get_experiment_by_name("boundaries")
    runs = client.search_runs([exp.experiment_id])
    parent = [r for r in runs if r.info.run_id == last["parent_run_id"]]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == last["parent_run_id"]]
    assert len(parent) == 1 and len(children) == last["evaluations"]
    assert parent[0].data.metrics["lr_max_stable"] == pytest.approx(last["lr_max_stable"])
    assert {r.data.params["optimizer.lr"] for r in children} == {str(h["lr"]) for h in last["history"]}
    assert all(r.data.tags["engine"] == "fused" for r in children)


def test_no_boundary_in_range_is_reported_not_invented(store):
    # Adam moves each weight by about lr per step whatever the gradient: on standardized data it
    # stays within 10x its starting loss at every learning rate up to 1e-2
    spec, bs = prepare(_compose("dataset=doc000_clean", "preprocess=standard", "optimizer=adam",
                                "train.epochs=100", "boundary.lr_high=0.01", "boundary.lr_start=0.01"))
    s = find_boundary(spec, bs).summary()
    assert s["status"] == "stable_everywhere" and s["lr_min_unstable"] is None
    assert s["note"].startswith("stable up to lr = 0.01")
    assert s["lr_theory"] is None and "adaptive" in s["theory_reason"]
    assert math.isfinite(s["lr_max_stable"])
