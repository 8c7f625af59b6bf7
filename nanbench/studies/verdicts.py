"""The rule that turns counts of non-finite runs into a verdict on a claim, with its effect size.

Pure Python on counts: nothing here trains, reads MLflow or formats tables. nanbench.studies.claims (the
prose claims, judged on sweeps) and nanbench.studies.examples (the documents' examples, judged over
seeds) both use it, so that one word means one thing in every table.

A claim says that a *treatment* (a cause, or a remedy) ``raises`` or ``lowers`` the fraction of
runs that end inf or NaN, compared with a *control*. A **comparison** is one treatment level
against one control level under one set of conditions (a cell: the other swept keys' values),
each side a :class:`Rate` over its seeds. Its **difference** is rate(treatment) - rate(control)
with Newcombe's 95% interval (nanbench.summary.analysis.difference_interval). Its status:

- ``holds``: the interval lies entirely on the claimed side of 0 (above for raises, below for
  lowers);
- ``reversed``: it lies entirely on the other side (the effect goes the other way, significantly);
- ``no effect``: the interval contains 0 (a tie within the interval), including cells where both
  sides are non-finite in every run (something to prevent or to explain, and no difference);
- ``untestable``: nothing to compare. Either no run is non-finite on either side (0 vs 0: the
  cell lies where nothing goes wrong, so neither a cause nor a remedy can show; the same for
  raises and lowers claims), or a side has no usable run (see dead networks below).

**Dead networks.** A finite run whose every ReLU unit outputs 0 on every training row
(``dead_fraction`` >= :data:`DEAD`) predicts a constant: it is finite only because it stopped
learning. It is no healthy finite control (nor a successful remedy), so it is set aside from
both sides of every comparison and counted apart (:attr:`Rate.dead`); a side left with no run is
untestable.

**Verdict** over the comparisons of a claim (:func:`decide`). The testable comparisons are
pooled (their runs summed per side; every cell has the same seeds, so the pooled difference is
the mean cell difference, and the interval, which ignores the pairing by cell, is conservative).
Then each condition key is split by its values, each value's comparisons pooled the same way: a
key *matters* when its values do not all get the same status (for the learning-rate axis, values
with no testable comparison are left out: the grid spans the stable -> unstable transition on
purpose, so its ends are 0-vs-0 by design).

- ``not testable``: no testable comparison;
- ``supported``: the pooled difference holds and no key matters;
- ``supported under conditions``: the pooled difference holds but some key matters, or the pooled
  difference does not hold but the claim holds under some value of some key (the conditions say
  where it holds, where not, and where nothing could be tested);
- ``refuted``: the effect reverses significantly (pooled, or under some value of a key) and holds
  under none;
- ``no effect``: neither holds nor reverses anywhere: ties within the interval;
- ``avoids NaN, does not train`` (:data:`NO_TRAIN`): a remedy (``lowers``) whose difference holds,
  but none of whose usable runs *trained* (nanbench.forensics.trained: finite and the whole-data
  loss fell by at least ``outcome.improve_fraction``). A change that keeps a run finite by leaving
  it untrained (a learning rate of 1e-9, say) is no fix, and is never called supported. Every
  Rate counts its trained runs beside its non-finite ones, so the text says how many trained.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from nanbench.forensics import trained as _trained
from nanbench.summary.analysis import difference_interval
from nanbench.vocab import NONFINITE_OUTCOMES

NO_TRAIN = "avoids NaN, does not train"
VERDICTS = ("supported", "supported under conditions", "no effect", "refuted", "not testable", NO_TRAIN)
HOLDS, NO_EFFECT, REVERSED, UNTESTABLE = "holds", "no effect", "reversed", "untestable"
EFFECTS = ("raises", "lowers")
DEAD = 1.0       # dead_fraction from which a finite network counts as dead (every ReLU unit)
LR_AXIS = "optimizer.lr"


@dataclass(frozen=True)
class Rate:
    """Non-finite runs out of the usable runs of one side; ``dead``: finite dead networks set aside;
    ``trained``: usable runs that trained (nanbench.forensics.trained; None: not counted)."""

    nonfinite: int = 0
    runs: int = 0
    dead: int = 0
    trained: int | None = None

    def __add__(self, other: Rate) -> Rate:
        trained = (None if self.trained is None and other.trained is None
                   else (self.trained or 0) + (other.trained or 0))
        return Rate(self.nonfinite + other.nonfinite, self.runs + other.runs, self.dead + other.dead, trained)

    @property
    def value(self) -> float:
        return self.nonfinite / self.runs if self.runs else math.nan

    def __str__(self) -> str:
        return f"{self.nonfinite}/{self.runs}" + (f" (+{self.dead} dead)" if self.dead else "")


def rate_of(runs) -> Rate:
    """The Rate of runs given as (nonfinite: bool, dead_fraction: float | None[, trained: bool])."""
    nonfinite = runs_ = dead = trained = 0
    counted = False
    for bad, dead_fraction, *rest in runs:
        if not bad and is_dead(dead_fraction):
            dead += 1
            continue
        runs_ += 1
        nonfinite += bool(bad)
        counted = counted or bool(rest)
        trained += bool(rest and rest[0])
    return Rate(nonfinite, runs_, dead, trained if counted else None)


def is_dead(dead_fraction: float | None) -> bool:
    return dead_fraction is not None and dead_fraction >= DEAD


class Judged:
    """What the verdict rules read of one run: mixed into the studies' run records, which carry
    ``outcome`` and ``dead_fraction``."""

    outcome: str
    dead_fraction: float | None

    @property
    def nonfinite(self) -> bool:
        return self.outcome in NONFINITE_OUTCOMES

    @property
    def dead(self) -> bool:
        """A finite network whose every ReLU unit outputs 0 on every row (DEAD)."""
        return not self.nonfinite and is_dead(self.dead_fraction)

    @property
    def trained(self) -> bool:
        """Finite and the whole-data loss fell by improve_fraction (nanbench.forensics.trained)."""
        return _trained(self.outcome)


@dataclass(frozen=True)
class Difference:
    """rate(treatment) - rate(control) and its 95% Newcombe interval."""

    d: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.d:+.2f} [{self.low:+.2f}, {self.high:+.2f}]"


def difference(treatment: Rate, control: Rate) -> Difference | None:
    """Newcombe's hybrid score interval (R. G. Newcombe 1998, Statistics in Medicine 17: 873-890,
    method 10, from the two Wilson intervals) for the difference; None when a side has no run."""
    if treatment.runs == 0 or control.runs == 0:
        return None
    return Difference(*difference_interval(treatment.nonfinite, treatment.runs, control.nonfinite, control.runs))


def direction(effect: str, diff: Difference) -> str:
    """holds / reversed / no effect of a difference for a claim that raises or lowers the rate."""
    if effect not in EFFECTS:
        raise ValueError(f"effect must be one of {EFFECTS}, not {effect!r}")
    up, down = diff.low > 0, diff.high < 0
    if effect == "raises":
        return HOLDS if up else REVERSED if down else NO_EFFECT
    return HOLDS if down else REVERSED if up else NO_EFFECT


def untestable_reason(control: Rate, treatment: Rate) -> str | None:
    """Why a comparison cannot be tested, or None when it can."""
    if control.runs == 0 or treatment.runs == 0:
        side = "control" if control.runs == 0 else "treatment"
        dead = (control if control.runs == 0 else treatment).dead
        return f"no usable {side} run" + (f" ({dead} dead networks)" if dead else "")
    if control.nonfinite == 0 and treatment.nonfinite == 0:
        return "no inf/NaN at either level"
    return None


def status(effect: str, control: Rate, treatment: Rate) -> str:
    """The status of one comparison (see the module docstring)."""
    if untestable_reason(control, treatment):
        return UNTESTABLE
    return direction(effect, difference(treatment, control))


@dataclass
class Comparison:
    conditions: tuple[tuple[str, str], ...]   # (key, value): the cell, plus the levels when several
    control: Rate
    treatment: Rate
    effect: str
    status: str = ""
    difference: Difference | None = None
    reason: str | None = None                 # why untestable

    def __post_init__(self):
        self.reason = untestable_reason(self.control, self.treatment)
        self.difference = difference(self.treatment, self.control)
        self.status = UNTESTABLE if self.reason else direction(self.effect, self.difference)


@dataclass
class Group:
    """The comparisons under one value of one condition key, pooled."""

    key: str
    value: str
    comparisons: int
    testable: int
    control: Rate
    treatment: Rate
    status: str
    difference: Difference | None


@dataclass
class Decision:
    verdict: str
    effect: str
    comparisons: list[Comparison]
    control: Rate = field(default_factory=Rate)      # pooled over the testable comparisons
    treatment: Rate = field(default_factory=Rate)
    pooled: Difference | None = None
    pooled_status: str = UNTESTABLE
    groups: dict[str, list[Group]] = field(default_factory=dict)
    matters: list[str] = field(default_factory=list)  # keys whose values do not all get one status

    @property
    def testable(self) -> list[Comparison]:
        return [c for c in self.comparisons if c.status != UNTESTABLE]

    @property
    def counts(self) -> dict[str, int]:
        out = {s: 0 for s in (HOLDS, NO_EFFECT, REVERSED, UNTESTABLE)}
        for c in self.comparisons:
            out[c.status] += 1
        return out

    @property
    def all_control(self) -> Rate:
        """The control side summed over every comparison, testable or not."""
        return sum((c.control for c in self.comparisons), Rate())

    @property
    def all_treatment(self) -> Rate:
        return sum((c.treatment for c in self.comparisons), Rate())

    def text(self, with_difference: bool = True) -> str:
        """Plain words: the pooled difference, the counts, and where it holds and where not."""
        return describe(self, with_difference=with_difference)


def pool(effect: str, comparisons: list[Comparison]) -> tuple[Rate, Rate, Difference | None, str]:
    testable = [c for c in comparisons if c.status != UNTESTABLE]
    control = sum((c.control for c in testable), Rate())
    treatment = sum((c.treatment for c in testable), Rate())
    if not testable:
        return control, treatment, None, UNTESTABLE
    diff = difference(treatment, control)
    return control, treatment, diff, direction(effect, diff)


def groups_of(effect: str, comparisons: list[Comparison]) -> dict[str, list[Group]]:
    keys = list(dict.fromkeys(k for c in comparisons for k, _ in c.conditions))
    out = {}
    for key in keys:
        values = list(dict.fromkeys(dict(c.conditions)[key] for c in comparisons))
        if len(values) < 2:
            continue
        out[key] = []
        for value in values:
            part = [c for c in comparisons if dict(c.conditions)[key] == value]
            control, treatment, diff, st = pool(effect, part)
            out[key].append(Group(key, value, len(part), sum(c.status != UNTESTABLE for c in part),
                                  control, treatment, st, diff))
    return out


def decide(effect: str, comparisons: list[Comparison], axis: str = LR_AXIS) -> Decision:
    """The verdict of a claim from its comparisons (see the module docstring)."""
    control, treatment, pooled, pooled_status = pool(effect, comparisons)
    groups = groups_of(effect, comparisons)
    matters = []
    for key, gs in groups.items():
        statuses = {g.status for g in gs if not (key == axis and g.status == UNTESTABLE)}
        if len(statuses) > 1:
            matters.append(key)
    anywhere = {g.status for gs in groups.values() for g in gs}
    if pooled is None:
        verdict = "not testable"
    elif pooled_status == HOLDS:
        verdict = "supported under conditions" if matters else "supported"
    elif HOLDS in anywhere:
        verdict = "supported under conditions"
    elif pooled_status == REVERSED or REVERSED in anywhere:
        verdict = "refuted"
    else:
        verdict = "no effect"
    if effect == "lowers" and verdict.startswith("supported") and treatment.runs and treatment.trained == 0:
        verdict = NO_TRAIN
    return Decision(verdict=verdict, effect=effect, comparisons=comparisons, control=control,
                    treatment=treatment, pooled=pooled, pooled_status=pooled_status, groups=groups,
                    matters=matters)


def _values(values: list[str]) -> str:
    """The values joined, numbers in numeric order."""
    try:
        return ", ".join(sorted(values, key=float))
    except ValueError:
        return ", ".join(values)


def describe(decision: Decision, with_difference: bool = True) -> str:
    """One paragraph: the pooled difference (unless a table shows it beside) and the counts of
    comparisons; per key that matters, where the claim holds and where not."""
    counts = decision.counts
    untestable = [c for c in decision.comparisons if c.status == UNTESTABLE]
    if decision.pooled is None:
        reasons = sorted({c.reason for c in untestable})
        return f"no testable comparison ({len(untestable)}: {'; '.join(reasons)})"
    head = (f"difference {decision.pooled} over {len(decision.testable)} testable comparisons "
            f"({decision.control} -> {decision.treatment} non-finite); " if with_difference else "")
    head += f"holds in {counts[HOLDS]}, no effect in {counts[NO_EFFECT]}, reversed in {counts[REVERSED]}"
    if decision.effect == "lowers" and decision.treatment.trained is not None:
        t, c = decision.treatment, decision.control
        head += f"; trained with the remedy {t.trained}/{t.runs}, without it {c.trained}/{c.runs}"
    if untestable:
        by_reason: dict[str, int] = {}
        for c in untestable:
            by_reason[c.reason] = by_reason.get(c.reason, 0) + 1
        head += "; untestable in " + ", ".join(f"{n} ({r})" for r, n in by_reason.items())
    parts = []
    for key in decision.matters:
        by_status: dict[str, list[str]] = {}
        for g in decision.groups[key]:
            by_status.setdefault(g.status, []).append(g.value)
        said = []
        for st in (HOLDS, NO_EFFECT, REVERSED, UNTESTABLE):
            if st in by_status:
                word = {HOLDS: "holds", NO_EFFECT: "no effect", REVERSED: "reversed",
                        UNTESTABLE: "not testable"}[st]
                said.append(f"{word} for {_values(by_status[st])}")
        parts.append(f"{key}: " + "; ".join(said))
    return head + (". By condition: " + " | ".join(parts) if parts else "")


# --- two budgets: does a remedy prevent the non-finite run, or only postpone it? ----------------

PREVENTS, POSTPONES, FAILS = "prevents", "postpones", "does not prevent"


def budget_outcome(nonfinite_short: bool, nonfinite_long: bool) -> str:
    """One remedy run trained at both budgets: finite at the long one (prevents), finite at the
    short one only (postpones), or non-finite already at the short one (does not prevent)."""
    if nonfinite_short:
        return FAILS
    return POSTPONES if nonfinite_long else PREVENTS


def budget_answer(counts: dict[str, int]) -> str:
    """The remedy's answer from counts of budget_outcome over the runs that had something to
    prevent: ``prevents`` when every run it kept finite stayed finite at the long budget,
    ``postpones`` when none did, ``prevents in i, postpones in j`` when both happened, ``does not
    prevent`` when every such run was non-finite already at the short budget."""
    prevents, postpones = counts.get(PREVENTS, 0), counts.get(POSTPONES, 0)
    if prevents and postpones:
        return f"prevents in {prevents}, postpones in {postpones}"
    if prevents:
        return PREVENTS
    if postpones:
        return POSTPONES
    return FAILS if counts.get(FAILS, 0) else "nothing to prevent"
