"""A claim's sweep file, expanded as `make sweep` expands it, and trained in this process.

Its grid is a sweep file ``sweeps/<sweep>.yaml`` in Hydra's sweeper format
(``hydra.sweeper.params``: comma-separated values per key, product over keys; ``sweep.inner``:
looped inside each job), composed with nanbench.config's one Hydra compose. Each run becomes a
:class:`RunRecord`: its swept values and what it did, all that judging needs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

from nanbench.config import SWEEPS_DIR, compose, sweep_jobs
from nanbench.spec import TrackingSpec
from nanbench.studies.verdicts import Judged


@dataclass(frozen=True)
class Sweep:
    """A sweep file's grid: Hydra jobs (``hydra.sweeper.params``) x inner runs (``sweep.inner``)."""

    name: str
    jobs: tuple[tuple[str, ...], ...]   # each job's overrides, "key=value", in the basic sweeper's order
    sweeps_dir: Path = SWEEPS_DIR

    def compose(self, job: tuple[str, ...]):
        """The job's config, composed as `python -m nanbench -m --config-dir sweeps` composes it."""
        return compose(list(job), config_name=self.name, config_dir=self.sweeps_dir)

    def points(self) -> list[dict[str, str]]:
        """The swept values of every run, in run order, composing only the first job (for the inner
        grid, which sweep files set once for all jobs)."""
        from nanbench.sweep import inner_grid

        combos = inner_grid(self.compose(self.jobs[0])) if self.jobs else []
        return [{**dict(o.split("=", 1) for o in job), **{k: str(v) for k, v in combo.items()}}
                for job in self.jobs for combo in combos]

    def runs(self) -> list[tuple[dict[str, str], dict]]:
        """Every run: its swept values as strings ({key: value}), and its plain config dict."""
        from nanbench.sweep import expand, inner_grid

        out = []
        for job in self.jobs:
            cfg = self.compose(job)
            point = dict(o.split("=", 1) for o in job)
            for combo, run in zip(inner_grid(cfg), expand(cfg)):
                out.append(({**point, **{k: str(v) for k, v in combo.items()}}, run))
        return out


def load_sweep(name: str, sweeps_dir: Path = SWEEPS_DIR) -> Sweep:
    """The jobs of sweeps/<name>.yaml, expanded by Hydra's override grammar in the basic sweeper's
    order (the product of ``hydra.sweeper.params``, first key outermost)."""
    return Sweep(name=name, jobs=tuple(sweep_jobs(Path(sweeps_dir) / f"{name}.yaml")), sweeps_dir=sweeps_dir)


@dataclass
class RunRecord(Judged):
    point: dict[str, str]       # the swept values of this run, as strings
    outcome: str
    source: str | None          # first_nonfinite_source
    run_id: str | None
    steps: int | None = None    # the run's budget (train.steps; None when it trained by epochs)
    first_nonfinite_step: int | None = None
    dead_fraction: float | None = None   # ReLU units dead at the end (None: no ReLU, or non-finite)
    layer: str | None = None    # first_nonfinite_layer: a Keras layer's name, input or loss (None: finite)
    part: str | None = None     # first_nonfinite_part: output, gradient or weights
    skipped_steps: int = 0      # updates the loss scaler skipped (mixed_float16)



def capped_spec(spec, epochs_cap: int | None):
    """The spec with at most `epochs_cap` epochs (shortened runs, for tests): a run set by
    ``train.steps`` is capped by epochs as well, its steps cleared."""
    if epochs_cap is None:
        return spec
    epochs = spec.train.epochs_for(spec.dataset.n_samples or 1)
    if epochs <= epochs_cap:
        return spec
    return spec.replace(train={"epochs": epochs_cap, "steps": None})


def run_sweep(sweep: Sweep, *, tracker=None, tracking_uri: str | None = None, epochs_cap: int | None = None,
              claim_ids: tuple[str, ...] = ()) -> list[RunRecord]:
    """Train every run of the sweep in this process (nanbench.run.execute) and log each to MLflow
    in the experiment named after the sweep."""
    from nanbench.run import execute
    from nanbench.spec import from_config

    records = []
    for point, run in sweep.runs():
        nominal = from_config(run)
        spec = capped_spec(nominal, epochs_cap)
        spec = replace(spec, tracking=TrackingSpec(uri=tracking_uri or spec.tracking.uri, experiment=sweep.name))
        start = time.time()
        result = execute(spec)
        if tracker is not None:
            tags = {"sweep": sweep.name, "claims": ",".join(claim_ids),
                    "overrides": " ".join(f"{k}={v}" for k, v in point.items())}
            result.run_id = tracker.log(result, experiment=sweep.name, tags=tags, start_time=start)
        v = result.verdict
        records.append(RunRecord(point=point, outcome=result.outcome,
                                 source=v.first_nonfinite_source if v else None, run_id=result.run_id,
                                 steps=nominal.train.steps, first_nonfinite_step=v.first_nonfinite_step if v else None,
                                 dead_fraction=result.dead_fraction,
                                 layer=result.first_nonfinite_layer, part=result.first_nonfinite_part,
                                 skipped_steps=result.skipped_steps))
    return records
