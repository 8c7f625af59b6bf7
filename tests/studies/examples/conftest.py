"""A planted table row: a seed-0 run with known step losses, and other seeds with known outcomes."""

from __future__ import annotations

import numpy as np
import pytest

from nanbench.forensics import NAN_BIT, StepSeries, classify
from nanbench.result import RunResult
from nanbench.spec import OutcomeSpec
from nanbench.studies.examples.definitions import BY_KEY
from nanbench.studies.examples.records import Row, SeedRun


def planted_row(key: str, losses, nan_from: int | None = None, *, seeds: list[str] | None = None,
                dead: float | None = None) -> Row:
    """A row whose seed-0 run has these step losses (NaN from `nan_from`), and whose other seeds
    ended with the given outcomes (each with dead_fraction `dead`)."""
    ex = BY_KEY[key]
    loss = np.array(losses, dtype=np.float64)
    flags = np.zeros(len(loss), dtype=np.int64)
    if nan_from is not None:
        loss[nan_from:] = np.nan
        flags[nan_from:] = NAN_BIT["loss"]
    series = StepSeries(loss=loss, grad_norm=np.ones_like(loss), weight_norm=np.ones_like(loss), flags=flags,
                        epoch_loss=loss, steps_per_epoch=1, initial_loss=float(losses[0]), final_loss=float(loss[-1]))
    v = classify(series, OutcomeSpec())
    result = RunResult(spec=ex.spec, outcome=v.outcome, verdict=v, series=series, dead_fraction=dead)
    runs = [SeedRun.of(0, result)]
    runs += [SeedRun(seed=i + 1, outcome=o, final_loss=None if o in ("nan", "inf") else 1.0, dead_fraction=dead)
             for i, o in enumerate(seeds or [])]
    return Row(example=ex, result=result, as_written=None, warnings=[], losses=list(loss), changes=ex.changes,
               seeds=runs)


@pytest.fixture
def make_row():
    """planted_row, as a fixture (tests in several files plant rows)."""
    return planted_row
