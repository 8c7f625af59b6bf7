"""nanbench.result: what a run reports, as JSON numbers only when finite."""

from __future__ import annotations

import json

import numpy as np

from conftest import compose_config
from nanbench.forensics import StepSeries, Verdict
from nanbench.result import RunResult, finite_or_none
from nanbench.spec import from_config


def result(engine: str, steps: int = 10, **timings) -> RunResult:
    spec = from_config(compose_config(["dataset=clean", f"train.engine={engine}"]))
    loss = np.linspace(1.0, 0.1, steps)
    series = StepSeries(loss=loss, grad_norm=np.ones(steps), weight_norm=np.ones(steps),
                        flags=np.zeros(steps, np.int64), epoch_loss=loss[::5], steps_per_epoch=5,
                        initial_loss=1.0, final_loss=float("inf"))
    verdict = Verdict("inf", 10, "loss", 10, None, 1.0, None, 0.1)
    return RunResult(spec=spec, outcome="inf", verdict=verdict, series=series, n_samples=160, **timings)


def test_the_json_line_has_no_non_finite_number_and_names_the_failure():
    r = result("fused", train_s=2.0)
    line = json.loads(r.to_json())
    assert line["outcome"] == "inf" and line["first_nonfinite_source"] == "loss"
    assert line["final_loss"] is None and line["initial_loss"] == 1.0
    assert finite_or_none(float("nan")) is None and finite_or_none(3.0) == 3.0


def test_steady_speed_leaves_out_fits_first_step_and_scales_by_the_mean_batch():
    fused, fit = result("fused", train_s=2.0), result("fit", train_s=2.0)
    assert fused.steps_per_s == 5.0 and fit.steps_per_s == 4.5  # fit times its first step apart
    assert fused.samples_per_s == 5.0 * 160 / 5
    assert result("fused", data_s=1, build_s=2, first_step_s=3, train_s=4).wall_s == 10


def test_time_to_target_is_steps_at_the_steady_rate_and_null_when_never_reached():
    import dataclasses
    r = result("fused", train_s=2.0)  # 5 steps/s
    line = json.loads(r.to_json())
    assert (line["trained"], line["steps_to_target"], line["seconds_to_target"]) == (False, None, None)
    reached = dataclasses.replace(r, outcome="converged", verdict=dataclasses.replace(r.verdict, steps_to_target=5))
    line = json.loads(reached.to_json())
    assert (line["trained"], line["steps_to_target"], line["seconds_to_target"]) == (True, 5, 1.0)
