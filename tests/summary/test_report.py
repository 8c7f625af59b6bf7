"""nanbench.summary.report: one list of blocks, rendered as Markdown and as self-contained HTML."""

from __future__ import annotations

import base64

import pandas as pd

from nanbench.summary.report import Report

PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")


def test_markdown_and_html_carry_the_same_blocks(tmp_path):
    img = tmp_path / "fig.png"
    img.write_bytes(PNG)
    rep = Report()
    rep.heading(2, "Findings", anchor="findings")
    rep.numbered(["`sgd` turns **NaN** ([table](#rates))"])
    rep.table(pd.DataFrame({"factor": ["a|b"], "rate": ["1/2"]}))
    rep.image(img, "a figure")
    rep.bullets([])  # empty lists and tables add nothing
    rep.table(pd.DataFrame())
    md = rep.markdown()
    assert md.startswith('<a id="findings"></a>\n\n## Findings')
    assert "1. `sgd` turns **NaN** ([table](#rates))" in md
    assert "| a\\|b | 1/2 |" in md and "![a figure](fig.png)" in md
    html = rep.html("t <1>")
    assert "<title>t &lt;1&gt;</title>" in html and '<h2 id="findings">' in html
    assert '<code>sgd</code> turns <strong>NaN</strong> (<a href="#rates">table</a>)' in html
    assert "data:image/png;base64," in html and "fig.png" not in html  # self-contained
    assert md.count("\n\n") >= 3 and html.count("<table>") == 1
