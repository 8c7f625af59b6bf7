"""nanbench.studies.verdicts: the rule from counts to a verdict, on planted counts whose answer is known."""

from __future__ import annotations

import pytest

from nanbench.studies import verdicts
from nanbench.studies.verdicts import (HOLDS, NO_EFFECT, REVERSED, UNTESTABLE, Comparison, Rate, decide, difference,
                               rate_of, status)


def cmp(conditions: dict, control: tuple[int, int], treatment: tuple[int, int], effect: str) -> Comparison:
    return Comparison(tuple(conditions.items()), Rate(*control), Rate(*treatment), effect)


def test_difference_interval_on_a_known_case():
    """Newcombe (1998), Table II, example (a): 56/70 - 48/80 = 0.2, hybrid score interval
    0.0524 to 0.3339 (method 10)."""
    d = difference(Rate(56, 70), Rate(48, 80))
    assert d.d == pytest.approx(0.2)
    assert d.low == pytest.approx(0.0524, abs=5e-4) and d.high == pytest.approx(0.3339, abs=5e-4)
    # at the ends, where a Wald interval would collapse to a point: 0/3 vs 3/3 excludes 0
    d = difference(Rate(3, 3), Rate(0, 3))
    assert d.d == 1.0 and 0 < d.low < 1 and d.high == pytest.approx(1.0)


@pytest.mark.parametrize("effect", ["raises", "lowers"])
def test_zero_vs_zero_is_untestable_for_raises_and_lowers(effect):
    """Nothing non-finite on either side: neither a cause nor a remedy can show, either way."""
    assert status(effect, Rate(0, 3), Rate(0, 3)) == UNTESTABLE
    d = decide(effect, [cmp({"optimizer.lr": "0.01"}, (0, 3), (0, 3), effect),
                        cmp({"optimizer.lr": "0.1"}, (0, 3), (0, 3), effect)])
    assert d.verdict == "not testable" and d.pooled is None
    assert "no inf/NaN at either level" in d.text()


@pytest.mark.parametrize("effect", ["raises", "lowers"])
def test_ties_are_no_effect_not_refuted(effect):
    """Both sides non-finite at every seed, or the same partial rate: a tie within the interval."""
    assert status(effect, Rate(3, 3), Rate(3, 3)) == NO_EFFECT
    assert status(effect, Rate(1, 3), Rate(2, 3)) == NO_EFFECT
    comps = [cmp({"optimizer.lr": lr}, (3, 3), (3, 3), effect) for lr in ("0.1", "1.0")]
    comps.append(cmp({"optimizer.lr": "0.001"}, (0, 3), (0, 3), effect))  # untestable: left out
    d = decide(effect, comps)
    assert d.verdict == "no effect"
    assert d.pooled.d == 0 and d.pooled.low < 0 < d.pooled.high
    assert d.counts == {HOLDS: 0, NO_EFFECT: 2, REVERSED: 0, UNTESTABLE: 1}


def test_a_significant_reversal_is_refuted():
    # a remedy under which every seed goes NaN, where without it none did
    d = decide("lowers", [cmp({"optimizer.lr": lr}, (0, 3), (3, 3), "lowers") for lr in ("0.01", "0.1")])
    assert d.verdict == "refuted" and d.pooled_status == REVERSED and d.pooled.low > 0
    # a cause that makes runs finite
    d = decide("raises", [cmp({"optimizer.lr": "0.1"}, (3, 3), (0, 3), "raises")])
    assert d.verdict == "refuted"


def test_supported_everywhere_tested():
    comps = [cmp({"optimizer": o, "optimizer.lr": lr}, (0, 3), (3, 3), "raises")
             for o in ("sgd", "momentum") for lr in ("0.1", "1.0")]
    comps.append(cmp({"optimizer": "sgd", "optimizer.lr": "1e-08"}, (0, 3), (0, 3), "raises"))
    d = decide("raises", comps)
    # the lr axis's untestable end does not make lr a condition: the grid spans the transition on purpose
    assert d.verdict == "supported" and d.matters == []
    assert d.pooled.d == 1.0 and d.pooled.low > 0


def test_supported_under_conditions_says_which():
    """Outliers raise NaN under SGD; under Adam nothing goes NaN with or without them."""
    comps = [cmp({"optimizer": "sgd", "optimizer.lr": lr}, (0, 3), (3, 3), "raises") for lr in ("0.01", "0.1")]
    comps += [cmp({"optimizer": "adam", "optimizer.lr": lr}, (0, 3), (0, 3), "raises") for lr in ("0.01", "0.1")]
    d = decide("raises", comps)
    assert d.verdict == "supported under conditions" and d.matters == ["optimizer"]
    text = d.text()
    assert "optimizer: holds for sgd; not testable for adam" in text
    # a remedy that holds at small learning rates and ties where both sides always blow up
    comps = [cmp({"optimizer.lr": "0.01"}, (3, 3), (0, 3), "lowers"),
             cmp({"optimizer.lr": "0.1"}, (3, 3), (0, 3), "lowers"),
             cmp({"optimizer.lr": "1.0"}, (3, 3), (3, 3), "lowers")]
    d = decide("lowers", comps)
    assert d.verdict == "supported under conditions" and d.matters == ["optimizer.lr"]
    assert "optimizer.lr: holds for 0.01, 0.1; no effect for 1.0" in d.text()
    # no pooled effect, but it holds under one condition: still "under conditions", not "no effect"
    comps = [cmp({"dataset": "outliers", "optimizer.lr": lr}, (0, 3), (3, 3), "raises") for lr in ("0.1",)]
    comps += [cmp({"dataset": "unscaled", "optimizer.lr": lr}, (3, 3), (3, 3), "raises") for lr in ("0.1", "1.0", "10")]
    d = decide("raises", comps)
    assert d.pooled_status == NO_EFFECT and d.verdict == "supported under conditions"


def test_dead_networks_are_set_aside_from_both_sides():
    """A finite run whose every ReLU unit is dead is neither a healthy finite control nor a remedy."""
    control = rate_of([(False, 1.0), (False, 1.0), (False, 1.0)])   # finite, all dead
    treatment = rate_of([(True, None), (True, None), (True, None)])
    assert control == Rate(0, 0, dead=3) and treatment == Rate(3, 3)
    assert status("lowers", control, treatment) == UNTESTABLE
    assert "no usable control run (3 dead networks)" in verdicts.untestable_reason(control, treatment)
    # a partly dead network is still a network
    assert rate_of([(False, 0.5), (True, None)]) == Rate(1, 2)


def test_prevents_versus_postpones():
    assert verdicts.budget_outcome(nonfinite_short=False, nonfinite_long=False) == verdicts.PREVENTS
    assert verdicts.budget_outcome(nonfinite_short=False, nonfinite_long=True) == verdicts.POSTPONES
    assert verdicts.budget_outcome(nonfinite_short=True, nonfinite_long=True) == verdicts.FAILS
    assert verdicts.budget_answer({verdicts.PREVENTS: 6}) == "prevents"
    assert verdicts.budget_answer({verdicts.POSTPONES: 6, verdicts.FAILS: 2}) == "postpones"
    assert verdicts.budget_answer({verdicts.PREVENTS: 4, verdicts.POSTPONES: 2}) == "prevents in 4, postpones in 2"
    assert verdicts.budget_answer({verdicts.FAILS: 3}) == "does not prevent"
    assert verdicts.budget_answer({}) == "nothing to prevent"


def test_unknown_effect_is_an_error():
    with pytest.raises(ValueError, match="effect must be one of"):
        status("doubles", Rate(1, 3), Rate(2, 3))
