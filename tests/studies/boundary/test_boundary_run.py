"""nanbench.studies.boundary.run: real searches, measured against theory and tracked in MLflow."""

from __future__ import annotations

import json
import math

import pytest

from nanbench.config import compose
from nanbench.studies.boundary.run import find_boundary
from nanbench.studies.boundary.spec import prepare


def _compose(*overrides: str):
    """conf/boundary.yaml composed with `overrides`, as `python -m nanbench.studies.boundary` would."""
    return compose(list(overrides), config_name="boundary")


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
def test_lr_max_trains_stops_where_the_run_stops_training_below_lr_max_stable():
    """Planted: standardized doc000_clean, full-batch GD (H = 2I, theory lr 1), 50 epochs, and
    outcome.diverge_factor=1e30 so that a growing but finite loss still counts as stable: above
    lr 1 the loss grows (stable, not trained) until it overflows near lr 1.5. lr_max_trains is the
    theory's bound from below; lr_max_stable lies far above it."""
    spec, bs = prepare(_compose("dataset=doc000_clean", "preprocess=standard", "optimizer=sgd",
                                "train.batch_size=1024", "train.epochs=50", "outcome.diverge_factor=1e30"))
    s = find_boundary(spec, bs).summary()
    assert s["trains_status"] == "bracketed" and s["lr_max_trains"] <= s["lr_max_stable"] / 1.3
    assert s["lr_max_trains"] < s["lr_theory"] <= s["lr_max_trains"] * (1 + bs.rel_precision)
    assert s["trains_note"].startswith("trains up to lr")
    assert s["evaluations"] == len(s["history"]) + sum(1 for h in s["trains_history"]
                                                      if h["lr"] not in {p["lr"] for p in s["history"]})


@pytest.mark.slow
def test_search_is_tracked_as_parent_and_children(store, capsys):
    from mlflow.tracking import MlflowClient
    from nanbench.studies.boundary.app import run_one

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
    assert {r.data.params["optimizer.lr"] for r in children} == {str(h["lr"]) for h in
                                                                  last["history"] + last["trains_history"]}
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


def test_a_search_that_raises_ends_its_parent_failed_with_the_reason(store, monkeypatch):
    from mlflow.tracking import MlflowClient

    from nanbench.studies.boundary import run as run_module
    from nanbench.tracking import Tracker

    def broken(stable, bs, start):
        stable(start, "bracket")  # one evaluation recorded, then a bug
        raise RuntimeError("planted\nbug")

    monkeypatch.setattr(run_module, "search", broken)
    spec, bs = prepare(_compose("dataset=doc000_clean", "train.epochs=2", f"tracking.uri={store}"))
    with pytest.raises(RuntimeError, match="planted"):
        find_boundary(spec, bs, tracker=Tracker(spec.tracking))
    client = MlflowClient(tracking_uri=store)
    exp = client.get_experiment_by_name(spec.tracking.experiment)
    parents = [r for r in client.search_runs([exp.experiment_id]) if r.data.tags.get("nanbench.role") == "search"]
    assert len(parents) == 1 and parents[0].info.status == "FAILED"
    assert parents[0].data.tags["error"] == "RuntimeError: planted bug"
