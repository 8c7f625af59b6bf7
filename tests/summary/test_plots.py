"""nanbench.summary.plots: each chart is a real PNG of the table it is given, or None when there
is nothing to draw (never an empty figure)."""

from __future__ import annotations

import pandas as pd

from nanbench.summary import analysis as A

from nanbench.summary import training as T
from nanbench.summary import plots
from tools import synthetic

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def table():
    runs, factors = synthetic.mixed_table()
    varying, _ = A.split_factors(runs, factors)
    return A.add_composites(runs, varying), varying


def test_charts_of_a_mixed_table_are_pngs(tmp_path):
    runs, varying = table()
    flags = A.outcome_flags(runs)
    effects = A.main_effects(runs, varying, flags)
    out = plots.main_effects_chart(effects, varying, tmp_path / "effects.png")
    assert out is not None and out.read_bytes().startswith(PNG_MAGIC)
    speed = T.speed_table(runs, varying[:2], flags)
    drawn = plots.speed_chart(speed, tmp_path / "speed.png")
    assert drawn is None or drawn.read_bytes().startswith(PNG_MAGIC)


def test_nothing_to_draw_is_no_file(tmp_path):
    empty = pd.DataFrame({"factor": [], "level": [], "rate": [], "low": [], "high": []})
    assert plots.main_effects_chart(empty, ["optimizer.name"], tmp_path / "e.png") is None
    assert plots.speed_chart(pd.DataFrame({"factor": ["all"], "level": ["all"], "steps_per_s": [None],
                                           "first_step_s": [None]}), tmp_path / "s.png") is None
    assert not list(tmp_path.iterdir())


def _png_height(path) -> int:
    return int.from_bytes(path.read_bytes()[20:24], "big")


def test_a_sparse_dataset_by_preprocessing_grid_draws_only_its_panels(tmp_path):
    """Planted: preprocessing varies for one dataset only (as in sweeps/realworld): 4 panels run of
    the 3 x 3 grid, drawn in two rows of up to three, not three rows with five empty panels."""
    def runs_of(pairs):
        rows = [{"dataset.name": d, "preprocess": p, "optimizer.name": o, A.LR: lr,
                 "outcome": "nan" if lr == 1.0 else "converged", "first_inf_step": None, "first_nan_step": None}
                for d, p in pairs for o in ("sgd", "adam") for lr in (0.01, 1.0)]
        runs = pd.DataFrame(rows)
        return runs, A.outcome_flags(runs)

    sparse = [("a", "none"), ("b", "none"), ("c", "standard"), ("c", "manual_standard")]
    dense = [(d, p) for d in "abc" for p in ("none", "standard", "manual_standard")]
    few = plots.nonfinite_heatmaps(*runs_of(sparse), tmp_path / "sparse.png")
    full = plots.nonfinite_heatmaps(*runs_of(dense), tmp_path / "dense.png")
    assert few.read_bytes().startswith(PNG_MAGIC) and full.read_bytes().startswith(PNG_MAGIC)
    assert _png_height(few) < _png_height(full)
