"""nanbench.summary.groups.unique_attributes on a planted run table: a level's knob names it, a
knob the level does not have (n/a) does not."""

from __future__ import annotations

import pandas as pd

from nanbench.summary.groups import unique_attributes


def test_a_knob_the_levels_lack_is_no_attribute():
    runs = pd.DataFrame({"dataset.name": ["sequences", "sequences", "digits", "constant_feature"],
                         "dataset.seq_len": [20, 20, "n/a", "n/a"],
                         "dataset.constant_column": ["n/a", "n/a", "n/a", 0],
                         "dataset.margin": ["n/a", "n/a", 1.0, 1.0]})  # only sequences lacks it
    roles = {"dataset.name": ["dataset.seq_len", "dataset.constant_column", "dataset.margin"]}
    assert unique_attributes(runs, "dataset.name", ("sequences",), roles) == ["`dataset.seq_len` = 20"]
    assert unique_attributes(runs, "dataset.name", ("digits",), roles) == []
    assert unique_attributes(runs, "dataset.name", ("constant_feature",), roles) == ["`dataset.constant_column` = 0"]
