"""nanbench.studies.diagnose.rank: planted tries whose order is known (no training)."""

from __future__ import annotations

from conftest import default_spec
from nanbench.forensics import Verdict
from nanbench.result import RunResult
from nanbench.studies.diagnose.catalogue import Change
from nanbench.studies.diagnose.rank import fixes, pairs, ranked
from nanbench.studies.diagnose.tries import Try


def run(outcome: str, final: float | None = None, initial: float = 10.0) -> RunResult:
    verdict = Verdict(outcome=outcome, first_nonfinite_step=None, first_nonfinite_source=None, first_inf_step=None,
                      first_nan_step=None, initial_loss=initial, final_loss=final, min_loss=final)
    return RunResult(spec=default_spec(), outcome=outcome, verdict=verdict)


def planted(name: str, key: str, outcomes: list[tuple[str, float | None]], distance: float = 1.0,
            initial: float = 10.0) -> Try:
    return Try(change=Change(name, settings=((key, 1),)), spec=default_spec(), distance=distance,
               results=[run(o, f, initial) for o, f in outcomes])


def test_stable_in_more_seeds_first_then_lower_relative_loss_then_the_smaller_change():
    every_seed_high = planted("all seeds, L/L0 0.5", "a", [("improving", 5.0)] * 3)
    every_seed_low_units = planted("all seeds, L/L0 0.1 in other units", "b",
                                   [("converged", 0.1)] * 3, initial=1.0)  # L is tiny only in its units
    every_seed_low_far = planted("all seeds, L/L0 0.1, farther", "c", [("converged", 1.0)] * 3, distance=3.0)
    two_seeds = planted("two seeds", "d", [("converged", 0.01), ("converged", 0.01), ("nan", None)])
    never = planted("never", "e", [("nan", None)] * 3)
    order = ranked([never, two_seeds, every_seed_high, every_seed_low_far, every_seed_low_units])
    assert [t.name for t in order] == ["all seeds, L/L0 0.1 in other units", "all seeds, L/L0 0.1, farther",
                                       "all seeds, L/L0 0.5", "two seeds"]
    assert [t.name for t in fixes(order, 3)] == [t.name for t in order[:3]]
    assert order[0].final_loss == 0.1 and order[0].relative_loss == 0.1


def test_pairs_come_from_the_best_singles_and_never_touch_one_key_twice():
    lr3 = planted("lr/3", "optimizer.lr", [("nan", None)] * 2 + [("improving", 5.0)])
    lr10 = planted("lr/10", "optimizer.lr", [("nan", None), ("improving", 5.0), ("improving", 5.0)])
    clip = planted("clip", "clipping.kind", [("nan", None), ("diverged", None), ("improving", 8.0)])
    worst = planted("huber", "loss.name", [("nan", None)] * 3)
    got = [c.name for c in pairs([lr3, lr10, clip, worst], candidates=3)]
    # best first: lr/10 (2 seeds), lr/3 (1 seed, L/L0 0.5), clip (1 seed, 0.8); huber is not among the 3
    assert got == ["lr/10 + clip", "lr/3 + clip"]
