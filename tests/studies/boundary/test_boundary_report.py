"""nanbench.studies.boundary.report: tables and plots from search summaries, without training."""

from __future__ import annotations

import json

from nanbench.studies.boundary.report import table, write_plot, write_table


def test_table_states_missing_boundaries_plainly(summary):
    rows = [summary("bracketed"), summary("stable_everywhere", "adam"),
            summary("unstable_everywhere", "rmsprop")]
    text = table(rows)
    assert "≥ 10 (stable up to lr = 10)" in text
    assert "unstable down to lr = 1e-08" in text
    assert "| 3.9e-06 | 2e-06 | 4.1e-06 | 4e-06 | 0.975 |" in text  # max stable, max that trains, ...
    assert "| ≥ 10 | — |" in text and "| none | 1e-08 |" in text
    assert "nan" not in text.lower().replace("nanbench", "")


def test_write_table_and_plot(tmp_path, summary):
    rows = [summary("bracketed"), summary("stable_everywhere", "adam")]
    write_table(rows, tmp_path / "boundaries.md", command="python -m nanbench.studies.boundary --grid g.yaml")
    write_plot(rows, tmp_path / "boundaries.png")
    md = (tmp_path / "boundaries.md").read_text()
    assert md.startswith("# Stability boundaries") and "--grid g.yaml" in md
    assert "The closed form applies to 1 of 2 configurations" in md
    assert "Searches without a boundary inside the range" in md
    assert (tmp_path / "boundaries.png").read_bytes()[:4] == b"\x89PNG"
    json.dumps(rows, allow_nan=False)  # the summaries themselves are strict JSON
