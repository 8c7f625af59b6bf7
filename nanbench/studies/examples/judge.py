"""Each example's verdict and one sentence of evidence, from its runs alone.

A claimed NaN is supported when every seed goes non-finite (under conditions when some do); a
claimed stable run when every seed *trains* (nanbench.forensics.trained: finite, and the
whole-data loss fell by at least outcome.improve_fraction), under conditions when some do; a
remedy is compared with its partner run (the same run without the remedy) seed for seed, by
nanbench.studies.verdicts' difference in the fraction of non-finite seeds, and a remedy that keeps
every seed finite but trains none is ``avoids NaN, does not train``, never supported. Finite
dead networks are no healthy control.
"""

from __future__ import annotations

import math

import numpy as np

from nanbench.result import RunResult
from nanbench.studies.claims.probes import PROBES
from nanbench.studies.examples.records import Row
from nanbench.studies.verdicts import (HOLDS, NO_EFFECT, NO_TRAIN, VERDICTS as _VERDICTS, difference,
                                       direction, is_dead, rate_of, untestable_reason)
from nanbench.vocab import NONFINITE_OUTCOMES

VERDICTS = (*_VERDICTS, "control")   # nanbench.studies.verdicts' words, and a partner run without a claim


def nonfinite(result: RunResult) -> bool:
    return result.outcome in NONFINITE_OUTCOMES


def _loss(value: float | None) -> str:
    return "n/a" if value is None else (f"{value:.4g}" if math.isfinite(value) else str(value))


def _dead_clause(fraction: float | None) -> str:
    if fraction is None or fraction == 0:
        return ""
    if is_dead(fraction):
        return "; every ReLU unit dead at the end (0 on every row: a constant prediction)"
    return f"; {fraction:.0%} of the ReLU units dead at the end"


def describe_run(row: Row) -> str:
    """One clause: what the seed-0 run did, with numbers."""
    from nanbench.forensics import INF_BIT, NAN_BIT

    r, v = row.result, row.result.verdict
    if r.outcome == "error":
        return f"error ({r.error})"
    if nonfinite(r):
        parts = [f"{r.outcome} from step {v.first_nonfinite_step} (epoch {row.first_nonfinite_epoch}, "
                 f"first in the {v.first_nonfinite_source})"]
        if v.first_inf_step is not None and v.first_nan_step is not None and v.first_inf_step < v.first_nan_step:
            parts.append(f"inf at step {v.first_inf_step}, NaN at step {v.first_nan_step}")
        weights = np.flatnonzero(np.asarray(r.series.flags) & (INF_BIT["weights"] | NAN_BIT["weights"]))
        if weights.size:
            parts.append(f"weights non-finite from step {int(weights[0])}")
        if r.outcome == "inf":
            parts.append(f"no NaN in the {r.steps_run} steps run")
        if r.dead_fraction_at_nonfinite:
            parts.append(f"{r.dead_fraction_at_nonfinite:.0%} of the ReLU units dead at the first non-finite step")
        return "; ".join(parts)
    return (f"{r.outcome}: whole-data loss {_loss(v.initial_loss)} at the initial weights -> "
            f"{_loss(v.final_loss)} after {r.steps_run} steps" + _dead_clause(r.dead_fraction))


def seeds_clause(row: Row) -> str:
    """What the seeds did, in a few words: 'non-finite in 2 of 5 seeds (1, 3)', dead networks."""
    runs = row.all_seeds
    bad = [s.seed for s in runs if s.nonfinite]
    dead = [s.seed for s in runs if s.dead]
    text = f"non-finite in {len(bad)} of {len(runs)} seeds" + (f" ({', '.join(map(str, bad))})" if 0 < len(bad) < len(runs) else "")
    text += f", trained in {sum(s.trained for s in runs)}"
    if dead:
        text += f"; a dead network (every ReLU unit 0 on every row) in {len(dead)} ({', '.join(map(str, dead))})"
    return text


def probe_sentence(name: str) -> str:
    """What a nanbench.studies.claims probe measured, as one sentence for an example's evidence."""
    if name == "clipping":
        rows = {r["clipping"]: r for r in PROBES[name]()}
        clipped = rows["clipnorm=1.0"]
        return (f" On the norm itself: Keras 3's clipnorm=1.0 caps each variable's gradient at norm 1 "
                f"separately (measured on this model, 4 variables: {clipped['per-variable gradient norms']}), so "
                f"the joint norm is {clipped['joint gradient norm']}, not 1.0; global_clipnorm=1.0 gives "
                f"{rows['global_clipnorm=1.0']['joint gradient norm']}.")
    return ""


def judge(row: Row, rows: dict[str, Row]) -> tuple[str, str]:
    """Verdict and one sentence of evidence, from the runs alone (plus the example's probe)."""
    verdict, evidence = _judge(row, rows)
    if row.example.probe:
        evidence += probe_sentence(row.example.probe)
    return verdict, evidence


def _judge(row: Row, rows: dict[str, Row]) -> tuple[str, str]:
    ex, r = row.example, row.result
    said = describe_run(row)
    seeds = seeds_clause(row)
    if ex.judge == "control":
        return "control", f"Partner run without the remedy: {said}. Over the seeds: {seeds}."
    if r.outcome == "error":
        return "not testable", f"The run failed: {r.error}."
    runs = row.all_seeds
    if ex.judge == "nan":
        bad = [s for s in runs if s.nonfinite]
        if len(bad) == len(runs):
            kind = "Non-finite, as inf rather than NaN" if r.outcome == "inf" else "Observed"
            return "supported", f"{kind}: {said}. Over the seeds: {seeds}."
        if not bad:
            return "refuted", f"No inf or NaN in any step at any seed: {said}. Over the seeds: {seeds}."
        return "supported under conditions", f"Only at some seeds: {seeds}. Seed {r.spec.train.seed}: {said}."
    if ex.judge == "stable":
        finite = [s for s in runs if not s.nonfinite and s.outcome != "diverged"]
        good = [s for s in finite if s.trained]
        note = ""
        if ex.key == "doc000-ex3":
            note = (" (learning_rate=0.001 is Adam's default, the same rate examples 1 and 2 use, "
                    "so it is not lower than theirs)")
        if len(good) == len(runs):
            return "supported", f"Trains at every seed{note}: {said}. Over the seeds: {seeds}."
        if len(finite) == len(runs) and not good:
            return NO_TRAIN, (f"Finite and not diverged at every seed, but it trains at none (its whole-data loss "
                              f"falls by less than a tenth){note}: {said}. Over the seeds: {seeds}.")
        if not good:
            return "refuted", f"Observed {said}. Over the seeds: {seeds}."
        return "supported under conditions", f"Trains at {len(good)} of {len(runs)} seeds{note}: {seeds}. Seed 0: {said}."
    partner = rows.get(ex.partner)
    if partner is None or partner.result.outcome == "error":
        return "not testable", f"Its partner run {ex.partner} is missing or failed."
    theirs = f"{ex.partner}: {describe_run(partner)}"
    control = rate_of((s.nonfinite, s.dead_fraction, s.trained) for s in partner.all_seeds)
    treatment = rate_of((s.nonfinite, s.dead_fraction, s.trained) for s in runs)
    counts = (f"Over {len(runs)} seeds, non-finite with the remedy {treatment} and without it {control}")
    reason = untestable_reason(control, treatment)
    if reason and control.runs == 0 and control.dead:
        return "not testable", (f"Its control is a dead network at every seed ({ex.partner}: {seeds_clause(partner)}): "
                                f"every ReLU unit outputs 0 on every row, so it predicts a constant and is finite only "
                                f"because it stopped learning; it is no healthy baseline. With the remedy: {said}; "
                                f"without ({theirs}).")
    if reason and treatment.runs == 0:
        return "not testable", f"The remedy's runs are dead networks at every seed ({seeds}); with it: {said}."
    if reason:
        return "not testable", (f"Without the remedy the run is finite too at every seed ({theirs}), so there is "
                                f"no NaN to prevent; with it: {said}.")
    diff = difference(treatment, control)
    status = direction("lowers", diff)
    dead_note = (f" Set aside as dead networks (finite, every ReLU unit 0 on every row): {control.dead} without the "
                 f"remedy, {treatment.dead} with it." if control.dead or treatment.dead else "")
    evidence = (f"With the remedy: {said}; without it, {theirs}. {counts}: difference {diff} "
                f"(95% Newcombe interval); trained with the remedy in {treatment.trained} of {treatment.runs} "
                f"seeds.{dead_note}")
    if status == HOLDS:
        return ("supported", evidence) if treatment.trained != 0 else (NO_TRAIN, evidence)
    if status == NO_EFFECT:
        return "no effect", evidence
    return "refuted", evidence
