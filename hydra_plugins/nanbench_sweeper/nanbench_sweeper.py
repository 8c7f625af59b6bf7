"""`hydra/sweeper=nanbench`: Hydra's basic sweeper without composing every job twice.

The basic sweeper composes each job's config once to validate the batch and the launcher
composes it again to run it, which costs more than a fast training run. This sweeper validates the first job of each batch (a composition error in a grid
shows up there) and leaves the rest to the launcher, which composes each job exactly once. It
also records the number of jobs in the sweep directory, for nanbench's progress display.
Everything else, grid syntax included, is the basic sweeper's.

It folds the grid (nanbench.sweep.fold): jobs that differ only in numbers the fused engine takes at run
time (learning rate, clip threshold, seed, ...) or in their data (the dataset and preprocess
groups' choices) become one job that loops over them, so an ad-hoc grid typed on the command line
costs one Hydra job per structure, as a sweep file's ``sweep.inner`` does.

With a parallel launcher (joblib, ``n_jobs`` > 1) it also keeps jobs that share traced graphs
on one worker. The fused engine traces one graph per structure (model, optimizer, loss,
clipping, precision, feature count) per process. Hydra's job order and joblib's dispatch of one
job at a time would make every worker trace nearly every structure. So the jobs are ordered by
those factors, and (when the launcher's ``batch_size`` is left at ``auto``) joblib is given them
in batches of whole groups: jobs equal in every factor above but the dataset, so a batch traces
each of its graphs once and a worker that finishes early takes the next batch.
"""


import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.types import Override

from nanbench.sweep.workers import JOBS_FILE, worker_count

# The config groups that decide a job's traced graphs, most expensive to retrace first (dataset:
# its feature count). Jobs are ordered by these when they run on several workers.
STRUCTURE_KEYS = ("model", "optimizer", "loss", "clipping", "train.precision", "dataset")
MIN_BATCHES_PER_WORKER = 2  # groups are halved until there are this many, for load balance


@dataclass
class NanbenchSweeperConf:
    _target_: str = "hydra_plugins.nanbench_sweeper.nanbench_sweeper.NanbenchSweeper"
    max_batch_size: Optional[int] = None  # jobs handed to the launcher at once (None: all)
    params: Optional[Dict[str, str]] = None  # the grid: config key -> comma-separated options
    fold: bool = True  # false: one Hydra job per combination of the grid, as Hydra's basic sweeper launches it


ConfigStore.instance().store(group="hydra/sweeper", name="nanbench", node=NanbenchSweeperConf,
                             provider="nanbench")


class NanbenchSweeper(BasicSweeper):
    def __init__(self, max_batch_size: Optional[int], params: Optional[Dict[str, str]] = None, fold: bool = True):
        super().__init__(max_batch_size=max_batch_size, params=params)
        self.fold = fold

    def split_arguments(self, overrides: List[Override], max_batch_size: Optional[int]) -> List[List[List[str]]]:
        from nanbench.sweep.fold import data_nodes, fold, write_table
        jobs = [job for batch in BasicSweeper.split_arguments(overrides, None) for job in batch]
        table = []
        if self.fold:
            jobs, table = fold(jobs, data_nodes(jobs, self._compose, self.hydra_context.config_loader.repository))
        size = max_batch_size or len(jobs) or 1
        batches = [jobs[i:i + size] for i in range(0, len(jobs), size)] or [[]]
        workers = parallel_workers(self.launcher)
        if workers > 1:
            batches = [sorted(batch, key=structure_key) for batch in batches]
            self.launcher.joblib["batch_size"] = dispatch_batch_size(batches[0], workers)
            if str(self.launcher.joblib.get("pre_dispatch", "2*n_jobs")) == "2*n_jobs":
                # joblib splits its first, pre-dispatched slice into smaller batches, which would
                # shift every later batch off the group boundaries
                self.launcher.joblib["pre_dispatch"] = "all"
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        write_table(sweep_dir, table)
        (sweep_dir / JOBS_FILE).write_text(json.dumps({"jobs": sum(len(b) for b in batches)}))
        return batches

    def _compose(self, override: str, job: Sequence[str]):
        """A job's composed config for the fold's data-group nodes: one the sweep's checks
        composed with `override` (nanbench.sweep.grid.composed_with), else `job` composed now."""
        from nanbench.sweep.grid import composed_with
        return composed_with(self.config, override) or self.hydra_context.config_loader.load_sweep_config(
            self.config, list(job))

    def sweep(self, arguments: List[str]):
        launch = self.launcher.launch

        def launch_again(batch, initial_job_idx):
            """A batch whose executor lost a worker is launched once more on fresh workers
            (its runs already recorded are skipped), so that the sweep finishes what it can."""
            try:
                return launch(batch, initial_job_idx=initial_job_idx)
            except Exception as exc:  # noqa: BLE001
                from nanbench.sweep import before_relaunch
                if not before_relaunch(exc):
                    raise
            return launch(batch, initial_job_idx=initial_job_idx)

        self.launcher.launch = launch_again
        try:
            returns = super().sweep(arguments)
            from nanbench.sweep import jobs_returned  # whether every run of every job is FINISHED
            jobs_returned(returns)
            return returns
        except Exception as exc:  # noqa: BLE001 - a lost worker or store process, a job that raised
            from nanbench.sweep import abort  # the parent run FAILED with the reason, one line, exit 1
            abort(self.config, exc)

    def validate_batch_is_legal(self, batch: Sequence[Sequence[str]]) -> None:
        super().validate_batch_is_legal(batch[:1])


def parallel_workers(launcher) -> int:
    """Workers of a joblib launcher whose dispatch batch size is left to nanbench (else 1)."""
    cfg = getattr(launcher, "joblib", None)
    if cfg is None or str(cfg.get("batch_size", "auto")) != "auto":
        return 1
    return worker_count(cfg.get("n_jobs", 1))


def structure_key(job: Sequence[str]) -> tuple:
    """A job's overrides of STRUCTURE_KEYS (and their sub-keys), in that order of priority."""
    values = {}
    for override in job:
        key, _, value = override.partition("=")
        for i, group in enumerate(STRUCTURE_KEYS):
            if key == group or key.startswith(group + "."):
                values.setdefault(i, []).append(f"{key}={value}")
    return tuple(tuple(sorted(values.get(i, []))) for i in range(len(STRUCTURE_KEYS)))


def dispatch_batch_size(jobs: Sequence[Sequence[str]], workers: int) -> int:
    """Jobs per joblib batch: a whole group (jobs equal in every structure key but the dataset),
    halved until every worker gets at least MIN_BATCHES_PER_WORKER batches."""
    sizes: dict[tuple, int] = {}
    for job in jobs:
        group = structure_key(job)[:-1]
        sizes[group] = sizes.get(group, 0) + 1
    size = math.gcd(*sizes.values()) if sizes else 1
    while size > 1 and len(jobs) / size < workers * MIN_BATCHES_PER_WORKER:
        size = -(-size // 2)
    return size
