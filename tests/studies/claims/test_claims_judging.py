"""nanbench.studies.claims.judging: run records judged into verdicts, on planted records whose
cells' outcomes are known."""

from __future__ import annotations

import pytest

from nanbench.studies.claims.definitions import BUDGETS, STEPS, Claim
from nanbench.studies.claims.judging import judge
from nanbench.studies.claims.sweeps import RunRecord, Sweep

SWEEP = Sweep(name="synthetic", jobs=())


def records(factor: str, table: dict, *, seeds: int = 3, steps: int | None = STEPS, dead: dict | None = None,
            condition: str = "optimizer") -> list[RunRecord]:
    """{(condition value, factor level): outcome or [outcome per seed]} -> run records, one per seed."""
    out = []
    for (cond, level), outcomes in table.items():
        outcomes = outcomes if isinstance(outcomes, list) else [outcomes] * seeds
        for seed, o in enumerate(outcomes):
            out.append(RunRecord(point={condition: cond, factor: level, "train.seed": str(seed)}, outcome=o,
                                 source="loss" if o in ("nan", "inf") else None, run_id=None, steps=steps,
                                 first_nonfinite_step=3 if o in ("nan", "inf") else None,
                                 dead_fraction=(dead or {}).get((cond, level))))
    return out


RAISES = Claim("x", "q", "s", "synthetic", "dataset", ("clean",), ("outliers",), "raises")
LOWERS = Claim("y", "q", "s", "synthetic", "clipping", ("none",), ("clipnorm",), "lowers", beside=("clipvalue",))


def test_raises_supported_under_conditions_names_them():
    recs = records("dataset", {("sgd", "clean"): "stalled", ("sgd", "outliers"): "nan",
                               ("adam", "clean"): "stalled", ("adam", "outliers"): "stalled"})
    j = judge(RAISES, SWEEP, recs)
    assert j.verdict == "supported under conditions"
    assert "optimizer: holds for sgd; not testable for adam" in j.conditions
    assert str(j.totals(("outliers",))) == "3/6"
    assert j.answer is None  # one budget, and a cause, not a remedy


@pytest.mark.parametrize("claim", [RAISES, LOWERS], ids=["raises", "lowers"])
def test_zero_vs_zero_cells_are_untestable_both_ways(claim):
    levels = (claim.control[0], claim.treatment[0])
    recs = records(claim.factor, {("sgd", levels[0]): "converged", ("sgd", levels[1]): "converged",
                                  ("adam", levels[0]): "stalled", ("adam", levels[1]): "improving"})
    assert judge(claim, SWEEP, recs).verdict == "not testable"


def test_lowers_ties_are_no_effect_and_reversals_refuted():
    tie = records("clipping", {("sgd", "none"): "nan", ("sgd", "clipnorm"): "nan"})
    assert judge(LOWERS, SWEEP, tie).verdict == "no effect"
    worse = records("clipping", {("sgd", "none"): "stalled", ("sgd", "clipnorm"): "nan"})
    j = judge(LOWERS, SWEEP, worse)
    assert j.verdict == "refuted" and j.final.decision.pooled.low > 0


def test_levels_beside_are_judged_apart_not_pooled():
    recs = records("clipping", {("sgd", "none"): "nan", ("sgd", "clipnorm"): "converged", ("sgd", "clipvalue"): "nan",
                                ("adam", "none"): "nan", ("adam", "clipnorm"): "improving", ("adam", "clipvalue"): "nan"})
    j = judge(LOWERS, SWEEP, recs)
    assert j.verdict == "supported"                                 # clipnorm alone
    assert j.final.decision.treatment.runs == 6                     # clipvalue's runs are not in it
    assert j.final.beside["clipvalue"].verdict == "no effect"


def test_a_remedy_that_keeps_runs_finite_but_untrained_is_no_fix():
    """Planted: the remedy's runs all stay finite but stall (a learning rate of 1e-9, say). The
    difference in non-finite runs holds, yet nothing trained: the verdict is 'avoids NaN, does not
    train', never 'supported', and the text counts the trained runs on both sides."""
    recs = records("clipping", {("sgd", "none"): "nan", ("sgd", "clipnorm"): "stalled",
                                ("adam", "none"): "nan", ("adam", "clipnorm"): "stalled"})
    j = judge(LOWERS, SWEEP, recs)
    assert j.final.decision.pooled.high < 0                          # it does avoid the NaN
    assert j.verdict == "avoids NaN, does not train"
    assert "trained with the remedy 0/6, without it 0/6" in j.conditions
    one_trains = records("clipping", {("sgd", "none"): "nan", ("sgd", "clipnorm"): ["stalled", "converged", "stalled"],
                                      ("adam", "none"): "nan", ("adam", "clipnorm"): "stalled"})
    j = judge(LOWERS, SWEEP, one_trains)
    assert j.verdict == "supported" and "trained with the remedy 1/6" in j.conditions


def test_two_budgets_tell_prevents_from_postpones():
    """At 1x the remedy keeps every run finite; at 4x only under SGD: it postpones under Adam."""
    short = records("clipping", {("sgd", "none"): "nan", ("sgd", "clipnorm"): "improving",
                                 ("adam", "none"): "nan", ("adam", "clipnorm"): "improving"}, steps=BUDGETS[0])
    long = records("clipping", {("sgd", "none"): "nan", ("sgd", "clipnorm"): "converged",
                                ("adam", "none"): "nan", ("adam", "clipnorm"): "nan"}, steps=BUDGETS[1])
    j = judge(LOWERS, SWEEP, short + long)
    assert [b.steps for b in j.budgets] == list(BUDGETS)
    assert j.budgets[0].verdict == "supported"
    assert j.budgets[1].verdict == "supported under conditions"     # the headline: the long budget
    assert j.verdict == "supported under conditions"
    assert j.remedy == {"prevents": 3, "postpones": 3}
    assert j.answer == "prevents in 3, postpones in 3"


def test_a_dead_control_is_set_aside_and_said():
    """Finite controls whose every ReLU unit is dead do not count as healthy finite controls."""
    relu = Claim("z", "q", "s", "synthetic", "model.activation", ("relu",), ("tanh",), "raises")
    recs = records("model.activation", {("sgd", "relu"): "stalled", ("sgd", "tanh"): "nan",
                                        ("adam", "relu"): "stalled", ("adam", "tanh"): "nan"},
                   dead={("sgd", "relu"): 1.0, ("adam", "relu"): 0.25})
    j = judge(relu, SWEEP, recs)
    assert j.dead == {"control": 3, "treatment": 0, "beside": 0}
    cells = j.final.cells
    assert str(cells[(("optimizer", "sgd"),)]["relu"]) == "0/0 (+3 dead)"
    assert "no usable control run (3 dead networks)" in j.conditions
    assert j.verdict == "supported under conditions"   # only the adam cell (a partly dead network) is testable


def test_first_nonfinite_layers_and_skipped_updates_are_tallied_and_reported():
    """Planted records carrying the layer forensics (and loss-scaler skips): the tally counts the
    non-finite runs by layer and part, claims.csv and the claims table show them."""
    from nanbench.studies.examples.report import claim_records, markdown

    recs = records("dataset", {("sgd", "clean"): "stalled", ("sgd", "outliers"): "nan"})
    for r in recs:
        if r.outcome == "nan":
            r.layer, r.part, r.skipped_steps = "hidden0", "output", 5
    j = judge(RAISES, SWEEP, recs)
    t = j.totals(("outliers",))
    assert t.layers == {"hidden0 (output)": 3} and t.skipped == 15
    row = next(r for r in claim_records([j]) if r["level"] == "dataset=outliers")
    assert row["first_nonfinite_layers"] == "hidden0(output):3" and row["skipped_steps"] == 15
    text = markdown([], [j])
    assert "| treatment: hidden0 (output) 3 |" in text and "layers: hidden0 (output) 3" in text
    assert "skipped updates: 15 (control 0)" in text
