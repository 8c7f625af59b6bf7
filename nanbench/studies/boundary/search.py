"""The stability boundary of one configuration, searched and predicted: pure functions, no I/O.

A search brackets the boundary on a log scale (steps of ``growth_factor`` from the starting
learning rate) and then bisects in log space until ``lr_min_unstable / lr_max_stable <= 1 +
rel_precision``. Each evaluation is a callback (in nanbench.studies.boundary.run, a real training
run of the same spec with another learning rate).

"Stable" means the run's outcome is ``converged``, ``improving`` or ``stalled``: finite throughout,
and its final loss over the whole training set not above ``outcome.diverge_factor`` times the
initial one (nanbench.forensics.classify). Outcomes ``nan``, ``inf``, ``diverged`` and ``error``
are unstable. The search assumes stability is monotone in the learning rate (stable below some
lr, unstable above); it reports what it measured and, where no change of outcome lies inside
[lr_low, lr_high], says so instead of inventing a boundary.

Stable is not trained: a run at a learning rate just under the boundary can stay finite while its
loss rises, and one at a tiny learning rate stays finite and learns nothing. :func:`search_trains`
therefore also finds ``lr_max_trains``, the largest learning rate at which the run *trains*
(nanbench.forensics.trained: finite and L <= (1 - improve_fraction) L0). Training is not
monotone in the learning rate (too small: stalled; too large: unstable); the search assumes the
learning rates that train form one interval, lying at or below lr_max_stable.

Theory oracle (:func:`theory`): for Dense(1) with bias, Keras's mean-reduced MSE and full-batch
gradient descent, the loss is quadratic with Hessian H = (2/n) X~^T X~, X~ = [X, 1]. GD is stable
iff lr < 2 / lambda_max(H); with heavy-ball momentum beta (Keras SGD(momentum=beta)) iff
lr < 2 (1 + beta) / lambda_max(H) (Cohen et al. 2021, "Gradient descent on neural networks
typically occurs at the edge of stability", footnote 3; Goh 2017, "Why Momentum Really Works").
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from nanbench.forensics import trained
from nanbench.spec import RunSpec
from nanbench.studies.boundary.spec import BoundarySpec
from nanbench.vocab import STABLE_OUTCOMES


def is_stable(outcome: str) -> bool:
    """Stable iff the run stayed finite and its loss did not grow past diverge_factor x its start."""
    return outcome in STABLE_OUTCOMES


# --------------------------------------------------------------------------- the search

@dataclass(frozen=True)
class Probe:
    """One evaluation of the search."""

    lr: float
    stable: bool
    phase: str  # "bracket" or "bisect"


@dataclass(frozen=True)
class Search:
    """What a search established: the tightest bracket it saw, and how."""

    lr_max_stable: float | None    # largest learning rate found stable (None: none was)
    lr_min_unstable: float | None  # smallest learning rate found unstable (None: none was)
    status: str                    # bracketed | stable_everywhere | unstable_everywhere | max_evaluations
    probes: tuple[Probe, ...] = ()

    @property
    def found(self) -> bool:
        """A boundary lies inside the searched range (both sides measured)."""
        return self.lr_max_stable is not None and self.lr_min_unstable is not None


def search(stable: Callable[[float, str], bool], bs: BoundarySpec, lr_start: float) -> Search:
    """Bracket on a log scale from `lr_start`, then bisect in log space.

    `stable(lr, phase)` trains one run and answers whether it stayed stable. Assumes stability
    is monotone in lr; every point evaluated is kept in `probes`.
    """
    probes: list[Probe] = []
    lo: float | None = None  # largest stable lr seen
    hi: float | None = None  # smallest unstable lr seen

    def probe(lr: float, phase: str) -> bool:
        nonlocal lo, hi
        ok = bool(stable(lr, phase))
        probes.append(Probe(lr=lr, stable=ok, phase=phase))
        if ok:
            lo = lr if lo is None else max(lo, lr)
        else:
            hi = lr if hi is None else min(hi, lr)
        return ok

    def budget_left() -> bool:
        return len(probes) < bs.max_evaluations

    lr = min(max(lr_start, bs.lr_low), bs.lr_high)
    if probe(lr, "bracket"):
        while hi is None and lo < bs.lr_high and budget_left():  # walk up until unstable
            probe(min(lo * bs.growth_factor, bs.lr_high), "bracket")
    else:
        while lo is None and hi > bs.lr_low and budget_left():  # walk down until stable
            probe(max(hi / bs.growth_factor, bs.lr_low), "bracket")
    while lo is not None and hi is not None and hi / lo > 1 + bs.rel_precision and budget_left():
        probe(math.sqrt(lo * hi), "bisect")

    if lo is not None and hi is not None:
        status = "bracketed" if hi / lo <= 1 + bs.rel_precision else "max_evaluations"
    elif hi is None:
        status = "stable_everywhere" if lo >= bs.lr_high else "max_evaluations"
    else:
        status = "unstable_everywhere" if hi <= bs.lr_low else "max_evaluations"
    return Search(lr_max_stable=lo, lr_min_unstable=hi, status=status, probes=tuple(probes))


def describe(result: Search, bs: BoundarySpec) -> str:
    """One plain sentence on what the search found, for tables and logs."""
    if result.status == "bracketed":
        return (f"boundary between {result.lr_max_stable:.3g} (stable) "
                f"and {result.lr_min_unstable:.3g} (unstable)")
    if result.status == "stable_everywhere":
        return f"stable up to lr = {bs.lr_high:g}: no boundary in [{bs.lr_low:g}, {bs.lr_high:g}]"
    if result.status == "unstable_everywhere":
        return f"unstable down to lr = {bs.lr_low:g}: no stable lr in [{bs.lr_low:g}, {bs.lr_high:g}]"
    return (f"stopped after {len(result.probes)} evaluations (boundary.max_evaluations) "
            "before reaching the precision")


@dataclass(frozen=True)
class TrainsSearch:
    """The largest learning rate at which the run trains, and how it was established."""

    lr_max_trains: float | None  # largest learning rate found to train (None: none did)
    lr_min_above: float | None   # smallest learning rate above it found not to train (None: none)
    status: str                  # bracketed | trains_up_to_high | trains_nowhere | max_evaluations | skipped
    probes: tuple[Probe, ...] = ()
    reason: str | None = None    # why it was skipped


def trains(outcome: str) -> bool:
    """The run trained (nanbench.forensics.trained), the predicate of search_trains."""
    return trained(outcome)


def search_trains(trains_at: Callable[[float, str], bool], bs: BoundarySpec, stable: Search) -> TrainsSearch:
    """The largest learning rate that trains, below the stability search's answer `stable`.

    Starts at lr_max_stable (an unstable lr does not train, so lr_min_unstable bounds it from
    above); where that lr does not train, walks down by ``growth_factor`` until one does (or
    lr_low), then bisects in log space to ``rel_precision``. `trains_at(lr, phase)` trains the
    run(s) at lr and answers whether they all trained; at most ``max_evaluations`` calls."""
    if stable.lr_max_stable is None:
        return TrainsSearch(None, stable.lr_min_unstable, "trains_nowhere")
    probes: list[Probe] = []
    lo: float | None = None                   # largest lr that trained
    hi: float | None = stable.lr_min_unstable  # smallest lr above lo that did not

    def probe(lr: float, phase: str) -> bool:
        nonlocal lo, hi
        ok = bool(trains_at(lr, phase))
        probes.append(Probe(lr=lr, stable=ok, phase=phase))
        if ok:
            lo = lr if lo is None else max(lo, lr)
        else:  # above an lr that trained: the interval's end; below every one so far: keep walking
            hi = lr if hi is None or lr < hi else hi
        return ok

    def budget_left() -> bool:
        return len(probes) < bs.max_evaluations

    lr = stable.lr_max_stable
    probe(lr, "trains")
    while lo is None and lr > bs.lr_low and budget_left():
        lr = max(lr / bs.growth_factor, bs.lr_low)
        probe(lr, "trains")
    while lo is not None and hi is not None and hi / lo > 1 + bs.rel_precision and budget_left():
        probe(math.sqrt(lo * hi), "trains")
    if lo is None:
        status = "trains_nowhere" if lr <= bs.lr_low else "max_evaluations"
    elif hi is None:
        status = "trains_up_to_high"
    else:
        status = "bracketed" if hi / lo <= 1 + bs.rel_precision else "max_evaluations"
    return TrainsSearch(lr_max_trains=lo, lr_min_above=hi, status=status, probes=tuple(probes))


def describe_trains(result: TrainsSearch, bs: BoundarySpec) -> str:
    """One plain sentence on the largest learning rate that trains."""
    if result.status == "skipped":
        return f"not searched: {result.reason}"
    if result.status == "bracketed":
        return (f"trains up to lr {result.lr_max_trains:.3g} (does not at {result.lr_min_above:.3g})")
    if result.status == "trains_up_to_high":
        return f"trains up to lr = {bs.lr_high:g}, the top of the range"
    if result.status == "trains_nowhere":
        return f"trains at no learning rate tried in [{bs.lr_low:g}, {bs.lr_high:g}]"
    return (f"stopped after {len(result.probes)} evaluations (boundary.max_evaluations)"
            + (f"; trains at {result.lr_max_trains:.3g}" if result.lr_max_trains is not None else ""))


# --------------------------------------------------------------------------- theory

@dataclass(frozen=True)
class Theory:
    """The full-batch GD bound, when it applies; else why not."""

    lr: float | None          # 2 (1 + momentum) / lambda_max, or None
    lambda_max: float | None  # largest eigenvalue of the MSE Hessian (2/n) X~^T X~
    reason: str | None        # why the bound does not apply (None when it does)


def lambda_max_mse(X: np.ndarray) -> float:
    """Largest eigenvalue of the Hessian of Keras's mean-reduced MSE for Dense(1) with bias.

    loss(w, b) = (1/n) ||X w + b - y||^2, so H = (2/n) X~^T X~ with X~ = [X, 1]; computed in float64
    from the float32 arrays the run trains on.
    """
    X = np.asarray(X, dtype=np.float64)
    Xt = np.hstack([X, np.ones((X.shape[0], 1))])
    return float(np.linalg.eigvalsh(2.0 / X.shape[0] * Xt.T @ Xt)[-1])


def theory(spec: RunSpec, X: np.ndarray) -> Theory:
    """lr_theory = 2 (1 + beta) / lambda_max(H) where the quadratic full-batch GD model holds."""
    reasons = []
    if spec.model.name != "linear":
        reasons.append(f"model {spec.model.name} is not linear (no closed form)")
    if spec.loss.keras_class() != "keras.losses.MeanSquaredError":
        reasons.append(f"loss {spec.loss.name} is not quadratic (no closed form)")
    if spec.optimizer.keras_class() != "keras.optimizers.SGD":  # plain or heavy-ball momentum
        reasons.append(f"optimizer {spec.optimizer.name} is adaptive (no closed form)")
    if spec.clipping.kind != "none":
        reasons.append(f"clipping {spec.clipping.kind} makes the update nonlinear")
    if spec.model.weight_decay > 0:
        reasons.append("weight decay changes the Hessian")
    if spec.train.precision != "float32":
        reasons.append(f"precision {spec.train.precision} is not float32")
    n = X.shape[0]
    if n == 0:
        reasons.append("no rows to train on")
    elif spec.train.batch_size < n:
        reasons.append(f"mini-batch (batch_size {spec.train.batch_size} < {n} rows): "
                       "the full-batch bound does not apply")
    if n and not np.isfinite(X).all():
        reasons.append("inputs hold NaN or inf")
    if reasons:
        return Theory(lr=None, lambda_max=None, reason="; ".join(reasons))
    lam = lambda_max_mse(X)
    if not lam > 0:
        return Theory(lr=None, lambda_max=lam, reason="the Hessian is zero")
    return Theory(lr=2.0 * (1.0 + spec.optimizer.momentum) / lam, lambda_max=lam, reason=None)
