"""Forensics: from the per-step series of a run to where NaN started and what the outcome was.

Pure NumPy on the series both engines return; nothing here trains.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nanbench.spec import OutcomeSpec

OUTCOMES = ("converged", "stalled", "diverged", "inf", "nan", "error")

# Bits of a step's `flags` (see step_flags): one inf/NaN pair per place a non-finite value can
# first appear, in data-flow order.
SOURCES = ("input", "loss", "gradients", "weights")
INF_BIT = {s: 1 << (2 * i) for i, s in enumerate(SOURCES)}
NAN_BIT = {s: 1 << (2 * i + 1) for i, s in enumerate(SOURCES)}
# Under mixed_float16, scaled gradients that overflow are the loss scaler's business: it skips
# the update and halves the scale. Such steps set this bit instead of the gradient bits.
SKIPPED_BIT = 1 << 8
ANY_INF = sum(INF_BIT.values())
ANY_NAN = sum(NAN_BIT.values())


@dataclass(frozen=True)
class StepSeries:
    """What a run measured, one entry per step actually run (never padded)."""

    loss: np.ndarray         # batch loss (float)
    grad_norm: np.ndarray    # global gradient norm before clipping
    weight_norm: np.ndarray  # global weight norm after the update
    flags: np.ndarray        # int bit set per step, see step_flags
    epoch_loss: np.ndarray   # Keras's epoch loss: batch losses averaged, weighted by batch size
    steps_per_epoch: int

    @property
    def steps(self) -> int:
        return int(len(self.loss))


@dataclass(frozen=True)
class Verdict:
    outcome: str
    first_nonfinite_step: int | None
    first_nonfinite_source: str | None
    first_inf_step: int | None
    first_nan_step: int | None
    initial_loss: float | None
    final_loss: float | None
    min_loss: float | None


def step_flags(input_sq, loss, grad_norm, weight_norm, *, loss_scaled: bool = False) -> np.ndarray:
    """Per-step flags from the four numbers nanbench.step measures (each NaN iff its tensors held a
    NaN, inf iff they held an inf and no NaN). With loss scaling (mixed_float16), non-finite
    gradients are the scaler's business: the step is skipped, which sets SKIPPED_BIT instead."""
    flags = np.zeros(len(loss), dtype=np.int64)
    for source, values in (("input", input_sq), ("loss", loss), ("gradients", grad_norm),
                           ("weights", weight_norm)):
        values = np.asarray(values, dtype=np.float64)
        if source == "gradients" and loss_scaled:
            flags |= np.where(~np.isfinite(values), SKIPPED_BIT, 0)
            continue
        flags |= np.where(np.isinf(values), INF_BIT[source], 0)
        flags |= np.where(np.isnan(values), NAN_BIT[source], 0)
    return flags


def _first(mask: np.ndarray) -> int | None:
    hits = np.flatnonzero(mask)
    return int(hits[0]) if hits.size else None


def first_source(flags: int) -> str | None:
    """The earliest place in data-flow order (input, loss, gradients, weights) holding inf/NaN."""
    for source in SOURCES:
        if flags & (INF_BIT[source] | NAN_BIT[source]):
            return source
    return None




def classify(series: StepSeries, spec: OutcomeSpec) -> Verdict:
    """Outcome of a run that ran (errors are classified by the caller).

    nan: a NaN appeared anywhere; inf: an inf appeared and no NaN; otherwise, with L0 the first
    step's loss and L the last epoch's loss: diverged if L > diverge_factor * L0; converged if
    L <= converge_ratio * L0 or L <= converge_abs; stalled otherwise.
    """
    flags = np.asarray(series.flags, dtype=np.int64)
    first_inf = _first((flags & ANY_INF) != 0)
    first_nan = _first((flags & ANY_NAN) != 0)
    first_bad = _first((flags & (ANY_INF | ANY_NAN)) != 0)
    source = first_source(int(flags[first_bad])) if first_bad is not None else None
    loss = np.asarray(series.loss, dtype=np.float64)
    finite = loss[np.isfinite(loss)]
    initial = float(loss[0]) if loss.size else None
    final = float(series.epoch_loss[-1]) if len(series.epoch_loss) else None
    min_loss = float(finite.min()) if finite.size else None
    if first_nan is not None:
        outcome = "nan"
    elif first_inf is not None:
        outcome = "inf"
    elif final is None or initial is None:
        outcome = "stalled"
    elif final > spec.diverge_factor * initial:
        outcome = "diverged"
    elif final <= spec.converge_ratio * initial or final <= spec.converge_abs:
        outcome = "converged"
    else:
        outcome = "stalled"
    return Verdict(outcome=outcome, first_nonfinite_step=first_bad, first_nonfinite_source=source,
                   first_inf_step=first_inf, first_nan_step=first_nan, initial_loss=initial,
                   final_loss=final, min_loss=min_loss)
