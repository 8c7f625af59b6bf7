"""What running an example leaves: one seed's run (:class:`SeedRun`), what executing the code
block as written did (:class:`AsWritten`), and the table's line (:class:`Row`) that joins them.

Plain records with the few derived facts the verdicts and the tables read (non-finite, dead,
the final loss's range over seeds); nothing here trains or writes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from nanbench.result import RunResult
from nanbench.studies.examples.definitions import Example
from nanbench.studies.verdicts import Judged, rate_of


@dataclass
class SeedRun(Judged):
    """One seed of an example in nanbench: what the verdict and the final-loss range need."""

    seed: int
    outcome: str
    initial_loss: float | None = None
    final_loss: float | None = None
    first_nonfinite_step: int | None = None
    dead_fraction: float | None = None


    @classmethod
    def of(cls, seed: int, result: RunResult) -> "SeedRun":
        v = result.verdict
        return cls(seed=seed, outcome=result.outcome, initial_loss=v.initial_loss if v else None,
                   final_loss=v.final_loss if v else None,
                   first_nonfinite_step=v.first_nonfinite_step if v else None, dead_fraction=result.dead_fraction)


@dataclass
class AsWritten:
    """What executing the document's code block did."""

    status: str                          # "ran" or the exact exception, "Type: message"
    warnings: list[str] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)   # Keras's History of the run, if it fitted
    seconds: float = 0.0
    with_data: str | None = None         # when names were undefined: the status with them given
    with_data_losses: list[float] = field(default_factory=list)

    @property
    def ran(self) -> bool:
        return self.status == "ran"


@dataclass
class Row:
    """One line of the table: the seed-0 run (logged, timed) and what every seed did."""

    example: Example
    result: RunResult
    as_written: AsWritten | None        # None for variants (not in the documents)
    warnings: list[str]
    losses: list[float]                 # Keras's History in the nanbench run
    changes: tuple[str, ...]
    verdict: str = ""
    evidence: str = ""
    seeds: list[SeedRun] = field(default_factory=list)   # every seed, seed 0 (this run) first

    @property
    def all_seeds(self) -> list[SeedRun]:
        return self.seeds or [SeedRun.of(self.result.spec.train.seed, self.result)]

    @property
    def seed_rate(self):
        """Non-finite seeds out of the usable ones (finite dead networks set aside)."""
        return rate_of((s.nonfinite, s.dead_fraction, s.trained) for s in self.all_seeds)

    @property
    def final_loss_range(self) -> tuple[float, float] | None:
        """The smallest and largest finite final loss over the seeds (None when none is finite)."""
        finite = [s.final_loss for s in self.all_seeds if s.final_loss is not None and math.isfinite(s.final_loss)]
        return (min(finite), max(finite)) if finite else None

    @property
    def ran_as(self) -> str:
        if self.example.base is not None:
            return "variant"
        return "as written" if self.as_written is not None and self.as_written.ran else "equivalent"

    @property
    def first_nonfinite_epoch(self) -> int | None:
        v, s = self.result.verdict, self.result.series
        if v is None or v.first_nonfinite_step is None:
            return None
        return v.first_nonfinite_step // s.steps_per_epoch

    @property
    def matches_as_written(self) -> str:
        """Whether Keras's epoch losses here equal those of the as-written process (same seed)."""
        if self.as_written is None:
            return "n/a"
        other = self.as_written.losses if self.as_written.ran else self.as_written.with_data_losses
        if not other or not self.losses:
            return "n/a"
        n = min(len(other), len(self.losses))  # nanbench stops once the weights hold NaN
        same = np.allclose(np.array(other[:n]), np.array(self.losses[:n]), rtol=1e-6, atol=0, equal_nan=True)
        return "yes" if same else "no"


def distinct(items) -> list[str]:
    """The items once each, in first-seen order (Keras repeats a warning at every step)."""
    return list(dict.fromkeys(items))
