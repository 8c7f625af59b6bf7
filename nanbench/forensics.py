"""Forensics: from the per-step series of a run to where NaN started and what the outcome was.

Pure NumPy on the series both engines return; nothing here trains.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from nanbench.spec import OutcomeSpec
from nanbench.vocab import SOURCES


# Bits of a step's `flags` (see step_flags): one inf/NaN pair per place a non-finite value can
# first appear, in data-flow order.
INF_BIT = {s: 1 << (2 * i) for i, s in enumerate(SOURCES)}
NAN_BIT = {s: 1 << (2 * i + 1) for i, s in enumerate(SOURCES)}
# Under mixed_float16, scaled gradients that overflow are the loss scaler's business: it skips
# the update and halves the scale. Such steps set this bit instead of the gradient bits.
SKIPPED_BIT = 1 << 8
# steps.csv's per-layer gradient norm columns: this prefix and the layer's name
LAYER_COLUMN = "grad_norm:"
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
    initial_loss: float      # the loss over the whole training set at the initial weights
    final_loss: float        # the same at the weights the run ended with
    # the same at each epoch's end (inference mode, as initial_loss): the series steps_to_target
    # reads; one entry per epoch run, NaN where not evaluated (TARGET_GATE: none after the target
    # is reached, none while the epoch's losses are far above it); empty: not measured (e.g. a
    # recorded run rebuilt from a steps.csv that predates it)
    epoch_full_loss: np.ndarray = field(default_factory=lambda: np.zeros(0))
    # per layer with weights (Keras's layer name), each step's gradient norm before clipping
    layer_grad_norm: dict[str, np.ndarray] = field(default_factory=dict)

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
    steps_to_target: int | None = None  # see steps_to_target; None: never reached


# A run that *trains*: finite and its whole-data loss fell by at least outcome.improve_fraction
# (L <= (1 - improve_fraction) * L0), i.e. these outcomes. A change that keeps a run finite but
# leaves it stalled avoids NaN; it does not fix the model.
TRAINED_OUTCOMES = ("converged", "improving")


def trained(outcome: str | None) -> bool:
    """Whether a run with this outcome trained (see TRAINED_OUTCOMES)."""
    return outcome in TRAINED_OUTCOMES


def steps_to_target(series: StepSeries, target_ratio: float) -> int | None:
    """The first step count after which the loss over the whole training set is at most
    ``target_ratio`` * L0 (L0: at the initial weights); None if it never is (or L0 is not finite).

    Resolution: epochs. The whole-data loss is measured where the engines measure it: before the
    first step (L0), at each epoch's end (``epoch_full_loss``, one forward pass over the data in
    inference mode, as L0 and L are) and after the run (L). An epoch-end value reached after
    epoch e counts (e + 1) * steps_per_epoch steps (capped at the steps run: a run cut at its
    first NaN step ends mid-epoch). With the whole data in one batch this is every step. A run
    whose loss dips below the target and rises again still reached it: this is time to target,
    not the outcome (classify judges where the run ended)."""
    initial = float(series.initial_loss)
    if not np.isfinite(initial):
        return None
    target = target_ratio * initial
    if initial <= target:  # L0 = 0: already there
        return 0
    per_epoch = max(1, int(series.steps_per_epoch))
    with np.errstate(invalid="ignore"):
        hits = np.flatnonzero(np.asarray(series.epoch_full_loss, dtype=np.float64) <= target)
    if hits.size:
        return min((int(hits[0]) + 1) * per_epoch, series.steps)
    final = float(series.final_loss)
    return series.steps if np.isfinite(final) and final <= target else None


# Time to target's evaluations are gated: an epoch's end is evaluated only until the target is
# reached, and only once the epoch's own losses (Keras's running mean and its last batch loss,
# both free) are within TARGET_GATE times the target. A pass over the whole data costs about a
# third of an epoch's arithmetic; gated, a run pays it in the few epochs before its crossing (a
# run that never nears its target pays none). The measure stays the whole data's loss; the gate
# only chooses where to look (a crossing whose epoch's losses were all above TARGET_GATE x target,
# a loss falling that much within one epoch, is found an epoch late).
TARGET_GATE = 2.0


def target_gate_open(epoch_mean, last_loss, target) -> bool:
    """Whether an epoch's end is evaluated (see TARGET_GATE); the engines apply the same rule."""
    return bool(min(epoch_mean, last_loss) <= TARGET_GATE * target)


def epoch_ends_from_steps(loss: np.ndarray, final_loss: float) -> np.ndarray:
    """The whole data's loss at each epoch's end of a run with the whole data in one batch (one
    step an epoch) and a model that computes the same in training and inference mode
    (nanbench.model.same_in_training): step e + 1's batch loss is the loss at the weights epoch e
    left, and the run's final loss is the last epoch's (up to the order a shuffled batch sums its
    rows in). The engines take these instead of a forward pass of their own: it would cost a
    third of every step."""
    return np.append(np.asarray(loss, dtype=np.float64)[1:], float(final_loss))


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

    nan: a NaN appeared anywhere (input, loss, gradients, weights); inf: an inf appeared and no
    NaN. Otherwise, with L0 and L the loss over the whole training set at the initial and at the
    final weights: diverged if L > diverge_factor * L0, or if the last epoch's mean loss is (a run
    bouncing at the edge of stability, whose final step happens to land low); converged if
    L <= converge_ratio * L0 or L <= converge_abs; improving if L <= (1 - improve_fraction) * L0;
    stalled otherwise (no real progress). A run whose initial whole-data loss L0 is not finite
    is nan (or inf) at step 0 with source ``loss`` (``input`` if its first batch held the NaN):
    its first forward pass, before any update, is non-finite, and no learning rate changes
    that; it is never stalled, even when every training step (in training mode) stays finite.
    Where the data hold a non-finite value (a batch flagged ``input``), that value explains the
    initial loss: the run is non-finite at the first batch holding it, source ``input``.
    The baseline is the whole data's loss, not a batch's:
    the first batch of a set with a few outliers may hold none of them, and a run whose loss falls
    every epoch would look as if it diverged.

    A run whose every step stayed finite but whose final weights give a non-finite loss over the
    whole data is inf (or nan) with source ``loss`` at step ``steps``: the evaluation after the
    last step. ``min_loss`` is the smallest finite epoch loss (Keras's running mean); losses that
    are not finite are None.
    """
    flags = np.asarray(series.flags, dtype=np.int64)
    first_inf = _first((flags & ANY_INF) != 0)
    first_nan = _first((flags & ANY_NAN) != 0)
    first_bad = _first((flags & (ANY_INF | ANY_NAN)) != 0)
    source = first_source(int(flags[first_bad])) if first_bad is not None else None
    initial, final = float(series.initial_loss), float(series.final_loss)
    epochs = np.asarray(series.epoch_loss, dtype=np.float64)
    finite = epochs[np.isfinite(epochs)]
    min_loss = float(finite.min()) if finite.size else None
    input_bad = bool(np.any(flags & (INF_BIT["input"] | NAN_BIT["input"])))
    if not np.isfinite(initial) and not input_bad:  # the initial forward pass, before step 0's update
        first_bad, source = 0, "loss"
        if np.isnan(initial):
            first_nan = 0
        else:
            first_inf = 0
    elif first_bad is None and not np.isfinite(final):
        first_bad, source = series.steps, "loss"
        first_nan, first_inf = (first_bad, None) if np.isnan(final) else (None, first_bad)
    if first_nan is not None:
        outcome = "nan"
    elif first_inf is not None:
        outcome = "inf"
    elif not (np.isfinite(initial) and np.isfinite(final)):
        outcome = "stalled"  # nothing to compare (an empty run)
    elif final > spec.diverge_factor * initial or (epochs.size and epochs[-1] > spec.diverge_factor * initial):
        outcome = "diverged"
    elif final <= spec.converge_ratio * initial or final <= spec.converge_abs:
        outcome = "converged"
    elif final <= (1 - spec.improve_fraction) * initial:
        outcome = "improving"
    else:
        outcome = "stalled"
    return Verdict(outcome=outcome, first_nonfinite_step=first_bad, first_nonfinite_source=source,
                   first_inf_step=first_inf, first_nan_step=first_nan,
                   initial_loss=initial if np.isfinite(initial) else None,
                   final_loss=final if np.isfinite(final) else None, min_loss=min_loss,
                   steps_to_target=steps_to_target(series, spec.target_ratio))


def csv_float(text: str) -> float:
    """A float as steps.csv writes it: a plain number, 'nan', 'inf', or a NumPy 2 repr such as
    'np.float32(1.5)' (older artifacts); an empty cell is NaN."""
    text = text.strip()
    if text.startswith("np.float") and text.endswith(")"):
        text = text[text.index("(") + 1:-1]
    return float(text) if text else float("nan")


def series_from_steps_csv(text: str, initial_loss: float | None, final_loss: float | None) -> StepSeries:
    """A recorded run's StepSeries, rebuilt from its steps.csv artifact and its initial_loss and
    final_loss metrics (None: not recorded, i.e. not finite), so that ``classify`` re-derives
    its outcome from what MLflow holds. The epoch losses (Keras's, and the whole data's where the
    artifact has the full_loss column) are read from each epoch's last row."""
    import csv
    import io

    rows = list(csv.DictReader(io.StringIO(text)))
    if rows and "epoch_loss" not in rows[0]:
        raise ValueError("this steps.csv predates the epoch_loss column: its outcome cannot be re-derived")
    epochs = np.array([int(r["epoch"]) for r in rows], dtype=np.int64)
    epoch_loss = [csv_float(r["epoch_loss"]) for r in rows if r["epoch_loss"].strip()]
    epoch_full = [csv_float(r["full_loss"]) for r in rows if (r.get("full_loss") or "").strip()]
    return StepSeries(
        loss=np.array([csv_float(r["loss"]) for r in rows]),
        grad_norm=np.array([csv_float(r["grad_norm"]) for r in rows]),
        weight_norm=np.array([csv_float(r["weight_norm"]) for r in rows]),
        flags=np.array([int(r["flags"]) for r in rows], dtype=np.int64),
        epoch_loss=np.array(epoch_loss, dtype=np.float64),
        steps_per_epoch=max(1, int(np.sum(epochs == 0))),
        initial_loss=float("nan") if initial_loss is None else float(initial_loss),
        final_loss=float("nan") if final_loss is None else float(final_loss),
        epoch_full_loss=np.array(epoch_full, dtype=np.float64),
        layer_grad_norm={key[len(LAYER_COLUMN):]: np.array([csv_float(r[key]) for r in rows])
                         for key in (rows[0] if rows else {}) if key.startswith(LAYER_COLUMN)})


_ACTIVATIONS = {"linear": lambda z: z, "tanh": np.tanh, "sigmoid": lambda z: 1 / (1 + np.exp(-z)),
                "relu": lambda z: np.maximum(z, 0.0)}


def dead_fraction(X: np.ndarray, layers) -> float | None:
    """The fraction of ReLU units that output zero on every (finite) row of X: units that pass no
    gradient any more. A network whose every unit is dead predicts a constant and cannot recover
    by training, so it is no healthy control even when its loss stays finite.

    ``layers`` are the model's Dense layers in order, as (kernel, bias, activation) with the
    activation's name ("relu", "linear", "tanh", "sigmoid"), and its BatchNormalization layers in
    inference form as (scale, offset, "batchnorm"): each unit times its scale plus its offset
    (nanbench.model.dense_layers); the forward pass is float64 NumPy.
    None when no layer is ReLU, no row is finite, or the weights are not finite (a NaN network
    has no dead units, it has NaN)."""
    X = np.asarray(X, dtype=np.float64)
    h = X[np.all(np.isfinite(X), axis=1)]
    if not len(h):
        return None
    dead = units = 0
    for kernel, bias, activation in layers:
        kernel, bias = np.asarray(kernel, dtype=np.float64), np.asarray(bias, dtype=np.float64)
        if not (np.all(np.isfinite(kernel)) and np.all(np.isfinite(bias))):
            return None
        with np.errstate(all="ignore"):
            h = h * kernel + bias if activation == "batchnorm" else _ACTIVATIONS[activation](h @ kernel + bias)
        if activation == "relu":
            dead += int(np.sum(np.all(h == 0.0, axis=0)))
            units += h.shape[1]
    return dead / units if units else None
