"""nanbench.summary.plots: each chart is a real PNG of the table it is given, or None when there
is nothing to draw (never an empty figure)."""

from __future__ import annotations

import pandas as pd

from nanbench.summary import analysis as A
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
    speed = A.speed_table(runs, varying[:2], flags)
    drawn = plots.speed_chart(speed, tmp_path / "speed.png")
    assert drawn is None or drawn.read_bytes().startswith(PNG_MAGIC)


def test_nothing_to_draw_is_no_file(tmp_path):
    empty = pd.DataFrame({"factor": [], "level": [], "rate": [], "low": [], "high": []})
    assert plots.main_effects_chart(empty, ["optimizer.name"], tmp_path / "e.png") is None
    assert plots.speed_chart(pd.DataFrame({"factor": ["all"], "level": ["all"], "steps_per_s": [None],
                                           "first_step_s": [None]}), tmp_path / "s.png") is None
    assert not list(tmp_path.iterdir())
