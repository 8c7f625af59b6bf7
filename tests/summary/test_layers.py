"""nanbench.summary.sections.layers: the non-finite runs counted by their first non-finite layer,
on a planted run table (the layer forensics' tags present, absent, or all none)."""

from __future__ import annotations

import pandas as pd

from nanbench.summary import analysis as A
from nanbench.summary.report import Report
from nanbench.summary.sections import layers


def _runs(layer, part):
    runs = pd.DataFrame({"outcome": ["nan", "inf", "nan", "converged", "nan"],
                         "first_nonfinite_source": ["loss", "loss", "input", "none", "loss"],
                         "first_inf_step": float("nan"), "first_nan_step": float("nan")})
    if layer is not None:
        runs["first_nonfinite_layer"] = layer
        runs["first_nonfinite_part"] = part
    return runs, A.outcome_flags(runs)


def test_the_non_finite_runs_are_counted_by_layer_and_part():
    runs, flags = _runs(["hidden0", "hidden0", "input", "none", "loss"],
                        ["output", "output", "output", None, "gradient"])
    rep = Report()
    layers(rep, runs, flags)
    text = rep.markdown()
    assert "over the 4 non-finite runs:" in text
    assert "| hidden0 | output | 2 |" in text and "| loss | gradient | 1 |" in text and "| input | output | 1 |" in text


def test_nothing_is_said_without_the_layer_tags_or_with_none_named():
    for layer, part in ((None, None), (["none"] * 5, [None] * 5)):
        rep = Report()
        layers(rep, *_runs(layer, part))
        assert rep.markdown().strip() == ""
