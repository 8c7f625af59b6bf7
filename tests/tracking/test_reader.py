"""nanbench.tracking.reader: a sweep's runs come back as one RunTable, the same whatever order
they were recorded in and whichever way the store is read."""

from __future__ import annotations

import pandas as pd

from nanbench.tracking.reader import load_runs
from tools import synthetic

PER_RUN = ("run_id", "run_name", "start_time", "end_time", "artifact_uri", "status")


def test_the_same_runs_recorded_in_another_order_give_the_same_table(tmp_path):
    results = [synthetic.synthetic_result(spec) for spec in synthetic.grid_specs(synthetic.PLANTED_GRID)]
    stores = []
    for name, order in (("a", results), ("b", results[::-1])):
        uri = f"sqlite:///{tmp_path / name}.db"
        parent = synthetic.create_parent(uri, "x")
        synthetic.plant(order, uri, "x", parent_run_id=parent, tags={"nanbench.role": "child"})
        stores.append(uri)
    a, b = (load_runs("x", uri) for uri in stores)
    assert a.factors == b.factors and len(a.runs) == len(results)
    columns = [c for c in a.runs.columns if c not in PER_RUN]
    pd.testing.assert_frame_equal(a.runs[columns], b.runs[columns])
    # and the API path reads what the SQL path reads
    slow = load_runs("x", stores[1], fast=False)
    pd.testing.assert_frame_equal(b.runs[columns].reset_index(drop=True), slow.runs[columns].reset_index(drop=True),
                                  check_dtype=False, check_categorical=False)
