"""nanbench.studies.claims: the claims' sweep files, judging run records into verdicts, the op-level probes.

Judging is checked on planted run records (a cell's outcomes are known); the sweep files are
composed with Hydra as `make examples` composes them.
"""

from __future__ import annotations

import pytest

from nanbench.studies import claims
from nanbench.studies.claims import BUDGETS, CLAIMS, MIN_SEEDS, STEPS, Claim, RunRecord, load_sweep

SWEEP = claims.Sweep(name="synthetic", jobs=())


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
    j = claims.judge(RAISES, SWEEP, recs)
    assert j.verdict == "supported under conditions"
    assert "optimizer: holds for sgd; not testable for adam" in j.conditions
    assert str(j.totals(("outliers",))) == "3/6"
    assert j.answer is None  # one budget, and a cause, not a remedy


@pytest.mark.parametrize("claim", [RAISES, LOWERS], ids=["raises", "lowers"])
def test_zero_vs_zero_cells_are_untestable_both_ways(claim):
    levels = (claim.control[0], claim.treatment[0])
    recs = records(claim.factor, {("sgd", levels[0]): "converged", ("sgd", levels[1]): "converged",
                                  ("adam", levels[0]): "stalled", ("adam", levels[1]): "improving"})
    assert claims.judge(claim, SWEEP, recs).verdict == "not testable"


def test_lowers_ties_are_no_effect_and_reversals_refuted():
    tie = records("clipping", {("sgd", "none"): "nan", ("sgd", "clipnorm"): "nan"})
    assert claims.judge(LOWERS, SWEEP, tie).verdict == "no effect"
    worse = records("clipping", {("sgd", "none"): "stalled", ("sgd", "clipnorm"): "nan"})
    j = claims.judge(LOWERS, SWEEP, worse)
    assert j.verdict == "refuted" and j.final.decision.pooled.low > 0


def test_levels_beside_are_judged_apart_not_pooled():
    recs = records("clipping", {("sgd", "none"): "nan", ("sgd", "clipnorm"): "stalled", ("sgd", "clipvalue"): "nan",
                                ("adam", "none"): "nan", ("adam", "clipnorm"): "stalled", ("adam", "clipvalue"): "nan"})
    j = claims.judge(LOWERS, SWEEP, recs)
    assert j.verdict == "supported"                                 # clipnorm alone
    assert j.final.decision.treatment.runs == 6                     # clipvalue's runs are not in it
    assert j.final.beside["clipvalue"].verdict == "no effect"


def test_two_budgets_tell_prevents_from_postpones():
    """At 1x the remedy keeps every run finite; at 4x only under SGD: it postpones under Adam."""
    short = records("clipping", {("sgd", "none"): "nan", ("sgd", "clipnorm"): "stalled",
                                 ("adam", "none"): "nan", ("adam", "clipnorm"): "stalled"}, steps=BUDGETS[0])
    long = records("clipping", {("sgd", "none"): "nan", ("sgd", "clipnorm"): "converged",
                                ("adam", "none"): "nan", ("adam", "clipnorm"): "nan"}, steps=BUDGETS[1])
    j = claims.judge(LOWERS, SWEEP, short + long)
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
    j = claims.judge(relu, SWEEP, recs)
    assert j.dead == {"control": 3, "treatment": 0, "beside": 0}
    cells = j.final.cells
    assert str(cells[(("optimizer", "sgd"),)]["relu"]) == "0/0 (+3 dead)"
    assert "no usable control run (3 dead networks)" in j.conditions
    assert j.verdict == "supported under conditions"   # only the adam cell (a partly dead network) is testable


# --- the sweep files ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted({c.sweep for c in CLAIMS}))
def test_every_claim_sweep_holds_its_levels_seeds_and_budgets(name):
    """Each claim's sweep file composes; it varies the claim's factor over its control, treatment
    and beside levels (as the strings the judging compares), repeats every configuration over at
    least 3 seeds, trains every run by train.steps, and a remedy at both budgets."""
    sweep = load_sweep(name)
    runs = sweep.runs()
    assert runs
    for claim in (c for c in CLAIMS if c.sweep == name):
        levels = {p[claim.factor] for p, _ in runs}
        assert set(claim.control) | set(claim.treatment) | set(claim.beside) <= levels, (claim.id, levels)
        assert not set(claim.treatment) & set(claim.beside)
        steps = {run["train"]["steps"] for _, run in runs}
        assert steps == (set(BUDGETS) if claim.effect == "lowers" else {STEPS}), (claim.id, steps)
    seeds = {}
    for point, _ in runs:
        key = tuple((k, v) for k, v in point.items() if k != "train.seed")
        seeds.setdefault(key, set()).add(point["train.seed"])
    assert min(len(s) for s in seeds.values()) >= MIN_SEEDS


def test_claim_cells_hold_only_the_conditions_the_claim_is_about():
    clipping = {p["dataset"] for p, _ in load_sweep("claim_clipping").runs()}
    assert "nan_inputs" not in clipping  # clipping cannot act on NaN inputs, and is not claimed to
    assert {p["dataset"] for p, _ in load_sweep("claim_loss").runs()} == {"outliers"}
    scaling = next(c for c in CLAIMS if c.id == "scaling")
    assert scaling.treatment == ("standard", "minmax") and scaling.beside == ("robust",)


@pytest.mark.parametrize("name", ["claim_outliers", "claim_scaling", "claim_clipping", "claim_optimizer",
                                  "claim_loss", "claim_regularization", "claim_relu", "claim_sigmoid"])
def test_learning_rate_grids_reach_down_to_where_sgd_is_stable(name):
    """SGD on the unscaled data is stable only below 1e-7, on outliers below 1e-5 (the old grids
    started at 1e-4 or 1e-3 and held non-finite cells only): the grid spans 1e-8 to 1."""
    lrs = {float(p["optimizer.lr"]) for p, _ in load_sweep(name).runs()}
    assert min(lrs) <= 1e-8 and max(lrs) >= 1.0


# --- the op-level probes -----------------------------------------------------------------------------

def test_probes_measure_keras():
    relu = claims.activation_probe("relu")[0]
    assert relu["values_finite"] and relu["gradients_finite"]
    probe = {r["function"]: r for r in claims.activation_probe("sigmoid_softmax")}
    assert probe["keras.activations.sigmoid"]["values_finite"] and probe["keras.activations.softmax"]["values_finite"]
    assert not probe["exp(x) / sum(exp(x)) (hand-written)"]["values_finite"]
    clip = {r["clipping"]: r for r in claims.clipping_probe()}
    assert float(clip["global_clipnorm=1.0"]["joint gradient norm"]) == pytest.approx(1.0, rel=1e-3)
    assert float(clip["clipnorm=1.0"]["joint gradient norm"]) > 1.0  # per variable, not joint
