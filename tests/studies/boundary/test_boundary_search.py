"""nanbench.studies.boundary.search: the search against a planted oracle, and the theory oracle."""

from __future__ import annotations

import numpy as np
import pytest

from nanbench.config import compose
from nanbench.data import load
from nanbench.studies.boundary.search import is_stable, lambda_max_mse, search, search_trains, theory
from nanbench.studies.boundary.spec import BoundarySpec, prepare


def _compose(*overrides: str):
    """conf/boundary.yaml composed with `overrides`, as `python -m nanbench.studies.boundary` would."""
    return compose(list(overrides), config_name="boundary")


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


@pytest.mark.parametrize("low, high", [(1e-4, 0.002), (1e-6, 0.0123), (0.01, 0.0123)])
def test_lr_max_trains_is_the_top_of_the_interval_that_trains_and_never_above_lr_max_stable(low, high):
    """Planted: stable below 0.0123, trains on [low, high] only (too small a step stalls)."""
    bs = BoundarySpec()
    stable = search(lambda lr, phase: lr < 0.0123, bs, 1e-3)
    seen = []
    out = search_trains(lambda lr, phase: seen.append(lr) or low <= lr < high, bs, stable)
    assert out.status == "bracketed" and out.lr_max_trains <= stable.lr_max_stable
    assert out.lr_max_trains < high <= out.lr_min_above <= out.lr_max_trains * (1 + bs.rel_precision)
    assert seen[0] == stable.lr_max_stable and len(seen) <= 8


def test_lr_max_trains_says_when_nothing_trains():
    bs = BoundarySpec(lr_low=1e-4, lr_high=1.0)
    stable = search(lambda lr, phase: lr < 0.5, bs, 0.01)
    out = search_trains(lambda lr, phase: False, bs, stable)
    assert out.status == "trains_nowhere" and out.lr_max_trains is None
    unstable = search(lambda lr, phase: False, bs, 0.01)
    assert search_trains(lambda lr, phase: True, bs, unstable).status == "trains_nowhere"  # nothing stable: 0 runs


def test_stable_outcomes():
    assert is_stable("converged") and is_stable("improving") and is_stable("stalled")
    assert not any(is_stable(o) for o in ("nan", "inf", "diverged", "error"))


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
