"""A claim judged on its sweep's run records: cells, tallies, comparisons, the verdict per budget.

Runs are grouped into *cells*: runs that agree on every swept key except the factor, the seed
and the budget. In each cell every treatment level is compared with every control level, as the
fraction of runs that ended inf or NaN over the seeds; the comparison's difference, its 95%
interval, its status and the claim's verdict are nanbench.studies.verdicts' (supported, supported
under conditions, no effect, refuted, not testable), once per budget. Finite runs whose every
ReLU unit is dead are set aside and counted (a constant-output network is no healthy control).
A remedy trained at two budgets is told apart as one that *prevents* the non-finite run (still
finite at 4x) or one that only *postpones* it (finite at 1x, non-finite at 4x).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import nanbench.studies.verdicts as verdicts
from nanbench.studies.claims.definitions import REPEATS, SEED, Claim
from nanbench.studies.claims.sweeps import RunRecord, Sweep
from nanbench.vocab import NONFINITE_OUTCOMES


@dataclass
class Tally:
    runs: int = 0
    outcomes: Counter = field(default_factory=Counter)
    sources: Counter = field(default_factory=Counter)
    layers: Counter = field(default_factory=Counter)   # first non-finite layer (and part) of the non-finite runs
    skipped: int = 0            # updates the loss scaler skipped, summed over the runs
    dead: int = 0               # finite runs with every ReLU unit dead (set aside from the rate)
    trained: int = 0            # usable runs that trained (nanbench.forensics.trained)

    @property
    def nonfinite(self) -> int:
        return sum(self.outcomes[o] for o in NONFINITE_OUTCOMES)

    @property
    def rate(self) -> verdicts.Rate:
        """Non-finite runs out of the usable ones: the dead networks set aside."""
        return verdicts.Rate(self.nonfinite, self.runs - self.dead, self.dead, self.trained)

    def add(self, record: RunRecord) -> None:
        self.runs += 1
        self.outcomes[record.outcome] += 1
        self.dead += record.dead
        self.trained += record.trained and not record.dead
        self.skipped += record.skipped_steps
        if record.source and record.outcome in NONFINITE_OUTCOMES:
            self.sources[record.source] += 1
        if record.layer and record.outcome in NONFINITE_OUTCOMES:
            self.layers[record.layer + (f" ({record.part})" if record.part else "")] += 1

    def __str__(self) -> str:
        return str(self.rate)


@dataclass
class Budget:
    """A claim judged on the runs of one budget."""

    steps: int | None
    cells: dict[tuple, dict[str, Tally]]   # cell -> level -> tally
    decision: verdicts.Decision             # the named treatment levels against the controls
    beside: dict[str, verdicts.Decision]    # each other level against the controls, apart

    @property
    def verdict(self) -> str:
        return self.decision.verdict

    @property
    def label(self) -> str:
        return f"{self.steps} steps" if self.steps is not None else "as configured"


@dataclass
class Judged:
    claim: Claim
    sweep: Sweep
    records: list[RunRecord]
    budgets: list[Budget]                  # in order of steps: 1x first
    remedy: dict[str, int] | None = None   # lowers at two budgets: prevents / postpones / does not prevent
    probe: list[dict] | None = None

    @property
    def final(self) -> Budget:
        """The longest budget: a remedy's headline verdict is whether it still holds at 4x."""
        return self.budgets[-1]

    @property
    def verdict(self) -> str:
        return self.final.verdict

    @property
    def conditions(self) -> str:
        return self.final.decision.text()

    @property
    def answer(self) -> str | None:
        """prevents / postpones (a remedy judged at two budgets), else None."""
        return verdicts.budget_answer(self.remedy) if self.remedy is not None else None

    def totals(self, levels: tuple[str, ...], steps: int | None = ...) -> Tally:
        steps = self.final.steps if steps is ... else steps
        out = Tally()
        for r in self.records:
            if r.point[self.claim.factor] in levels and r.steps == steps:
                out.add(r)
        return out

    @property
    def dead(self) -> dict[str, int]:
        """Finite dead networks set aside, per role."""
        out = {"control": 0, "treatment": 0, "beside": 0}
        for r in self.records:
            role = level_role(self.claim, r.point[self.claim.factor])
            if role in out:
                out[role] += r.dead
        return out


def level_role(claim: Claim, level: str) -> str:
    if level in claim.control:
        return "control"
    if level in claim.treatment:
        return "treatment"
    return "beside" if level in claim.beside else "other"


def cell_keys(claim: Claim, records: list[RunRecord]) -> list[str]:
    """The conditions: every other swept key that takes more than one value (seeds are repeats,
    the budget is judged apart)."""
    return [k for k in (records[0].point if records else {}) if k not in (claim.factor, *REPEATS)
            and len({r.point[k] for r in records}) > 1]


def _comparisons(claim: Claim, cells, levels: tuple[str, ...]) -> list[verdicts.Comparison]:
    out = []
    for cell, tallies in cells.items():
        for t in levels:
            for c in claim.control:
                if t in tallies and c in tallies:
                    conditions = cell + ((("treatment", t),) if len(levels) > 1 else ()) \
                        + ((("control", c),) if len(claim.control) > 1 else ())
                    out.append(verdicts.Comparison(conditions, tallies[c].rate, tallies[t].rate, claim.effect))
    return out


def remedy_outcomes(claim: Claim, records: list[RunRecord], keys: list[str]) -> dict[str, int] | None:
    """For a remedy trained at two budgets: each treatment run (cell, level, seed) in a cell where
    a control run went non-finite at the long budget, classified by verdicts.budget_outcome."""
    steps = sorted({r.steps for r in records if r.steps is not None})
    if claim.effect != "lowers" or len(steps) < 2:
        return None
    short, long = steps[0], steps[-1]
    runs = {}
    for r in records:
        runs[(tuple(r.point[k] for k in keys), r.point[claim.factor], r.point.get(SEED), r.steps)] = r
    to_prevent = {cell for (cell, level, _, s), r in runs.items()
                  if s == long and level in claim.control and r.nonfinite}
    counts: Counter = Counter()
    for (cell, level, seed, s), r in runs.items():
        if s != long or level not in claim.treatment or cell not in to_prevent:
            continue
        first = runs.get((cell, level, seed, short))
        if first is None or r.dead or first.dead:
            counts["set aside (a dead network)"] += 1
            continue
        counts[verdicts.budget_outcome(first.nonfinite, r.nonfinite)] += 1
    return dict(counts)


def judge(claim: Claim, sweep: Sweep, records: list[RunRecord]) -> Judged:
    """Compare, in every cell and at every budget, each treatment level (and apart, each level
    beside) with each control level; then the verdict per budget (nanbench.studies.verdicts)."""
    keys = cell_keys(claim, records)
    budgets = []
    for steps in sorted({r.steps for r in records}, key=lambda s: (s is None, s)):
        cells: dict[tuple, dict[str, Tally]] = {}
        for r in records:
            if r.steps == steps:
                cell = tuple((k, r.point[k]) for k in keys)
                cells.setdefault(cell, {}).setdefault(r.point[claim.factor], Tally()).add(r)
        decision = verdicts.decide(claim.effect, _comparisons(claim, cells, claim.treatment))
        beside = {b: verdicts.decide(claim.effect, _comparisons(claim, cells, (b,))) for b in claim.beside
                  if any(b in t for t in cells.values())}
        budgets.append(Budget(steps=steps, cells=cells, decision=decision, beside=beside))
    if not budgets:
        budgets = [Budget(None, {}, verdicts.decide(claim.effect, []), {})]
    return Judged(claim=claim, sweep=sweep, records=records, budgets=budgets,
                  remedy=remedy_outcomes(claim, records, keys))
