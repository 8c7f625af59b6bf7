"""Ranking tried changes, and the pairs tried when no single change suffices: pure functions.

A change is judged by whether the model *trains* with it (nanbench.forensics.trained: finite and
L <= (1 - improve_fraction) L0), not by whether it merely stayed finite. A change ranks above
another when it trained in more seeds (every seed first), then when its median final loss
relative to its initial loss (L / L0, both over the whole training set) is lower, then when it
reached the target (outcome.target_ratio x L0) in fewer steps, then when it moves less from the
original (catalogue.distance). L / L0 rather than L itself: scaling y or swapping the loss changes
the loss's units, so raw final losses of two changes are not comparable, while the fraction of the
initial loss left is (the same ratio nanbench's outcomes are judged by).

For a regression with MSE or RMSE, among changes that trained in as many seeds, those whose runs
end no better than the best constant prediction (y's mean) by improve_fraction come after the
others (tries.only_constant, counted in Try.constant_seeds): on a target far from 0, L0 is mostly
the mean, and a model whose hidden units saturate learns the mean alone, cutting L / L0 a
thousandfold while it predicts a constant.

A change whose runs stayed finite (stable) but trained in no seed "avoids NaN, does not train": it
is listed apart (:func:`avoids_nan_only`), never among the remedies, so it never ranks above one that
trains; one whose loss grew (L / L0 > 1) is never a fix.
"""

from __future__ import annotations

import math

from nanbench.studies.diagnose.catalogue import Change
from nanbench.studies.diagnose.tries import Try


def _finite_or_inf(value: float | None) -> float:
    return value if value is not None and math.isfinite(value) else math.inf


def order_key(t: Try) -> tuple:
    return (-t.trained_seeds, t.constant_seeds, _finite_or_inf(t.relative_loss), _finite_or_inf(t.steps_to_target),
            t.distance, t.name)


def ranked(tries: list[Try]) -> list[Try]:
    """The remedies: tries that ran and trained in at least one seed, best first."""
    return sorted((t for t in tries if t.results and t.trained_seeds > 0), key=order_key)


def fixes(tries: list[Try], n_seeds: int) -> list[Try]:
    """The ranked tries that trained in every seed."""
    return [t for t in ranked(tries) if t.trained_seeds == n_seeds]


def avoids_nan_only(tries: list[Try]) -> list[Try]:
    """Tries that kept at least one seed finite and not diverged (stable) yet trained in none:
    they avoid NaN, they do not fix the model. Most seeds stable first, then lower L / L0."""
    return sorted((t for t in tries if t.results and t.trained_seeds == 0 and t.stable_seeds > 0),
                  key=lambda t: (-t.stable_seeds, _finite_or_inf(t.relative_loss), t.distance, t.name))


def candidate_key(t: Try) -> tuple:
    """Singles for pairs, best first: as order_key, but then those stable in more seeds, then the
    ones that got further (more seeds finite, then more steps before the first non-finite value):
    a change that removed one cause (the NaN rows) while another remains (a learning rate too
    large) is what a second change completes."""
    trained_, constant, rel, ttt, dist, name = order_key(t)
    return (trained_, constant, -t.stable_seeds, rel, -t.finite_seeds, -t.progress, dist, name)


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
