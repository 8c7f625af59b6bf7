"""Ranking tried changes, and the pairs tried when no single change suffices: pure functions.

A change ranks above another when it is stable in more seeds, then when its final loss relative
to its initial loss (L / L0, both over the whole training set) is lower, then when it moves less
from the original (catalogue.distance). L / L0 rather than L itself: scaling y or swapping the
loss changes the loss's units, so raw final losses of two changes are not comparable, while the
fraction of the initial loss left is (the same ratio nanbench's outcomes are judged by).
"""

from __future__ import annotations

import math

from nanbench.studies.diagnose.catalogue import Change
from nanbench.studies.diagnose.tries import Try


def order_key(t: Try) -> tuple:
    rel = t.relative_loss
    return (-t.stable_seeds, rel if rel is not None and math.isfinite(rel) else math.inf, t.distance, t.name)


def ranked(tries: list[Try]) -> list[Try]:
    """The tries that ran and were stable in at least one seed, best first."""
    return sorted((t for t in tries if t.results and t.stable_seeds > 0), key=order_key)


def fixes(tries: list[Try], n_seeds: int) -> list[Try]:
    """The ranked tries stable in every seed."""
    return [t for t in ranked(tries) if t.stable_seeds == n_seeds]


def candidate_key(t: Try) -> tuple:
    """Singles for pairs, best first: as order_key, but among those stable in no seed the ones
    that got further first (more seeds finite, then more steps before the first non-finite
    value): a change that removed one cause (the NaN rows) while another remains (a learning rate
    too large) is what a second change completes."""
    stable, rel, dist, name = order_key(t)
    return (stable, rel, -t.finite_seeds, -t.progress, dist, name)


def pairs(singles: list[Try], candidates: int) -> list[Change]:
    """Pairs of the `candidates` best singles that ran (candidate_key), leaving out two changes
    that touch one key or group (lr / 3 with lr / 10; X scaling with X-and-y scaling)."""
    best = sorted((t for t in singles if t.results and t.change is not None), key=candidate_key)[:candidates]
    out = []
    for i, a in enumerate(best):
        for b in best[i + 1:]:
            if not a.change.touches & b.change.touches:
                out.append(a.change + b.change)
    return out
