"""Sweeps: Hydra multiruns where one Hydra job carries many training runs.

Hydra's sweeper expands the grid of *structural* factors (``hydra.sweeper.params`` of a file in
``sweeps/``) into jobs, and Hydra's launcher runs them (basic: in-process; joblib: local workers;
submitit/ray: clusters). Inside a job, ``sweep.inner`` (and the jobs hydra/sweeper=nanbench
folds, :mod:`~nanbench.sweep.fold`) are looped over in-process, so that every run of a job
reuses one traced graph of the fused engine and Hydra's per-job cost is paid once per structure.

The modules, in the order a sweep meets them:

- :mod:`~nanbench.sweep.grid`: the runs of a job; every check made before anything is recorded.
- :mod:`~nanbench.sweep.callback`: :class:`SweepCallback`, the Hydra callback of the launching
  process (store, lock, parent run, the end, faults), sharing :mod:`~nanbench.sweep.session`.
- :mod:`~nanbench.sweep.bookkeeping`: the store's side (parent run, resume, nothing to do).
- :mod:`~nanbench.sweep.workers`: joblib's workers, warmed early and watched.
- :mod:`~nanbench.sweep.jobs`: :func:`run_job`, one Hydra job's runs, trained and recorded.
- :mod:`~nanbench.sweep.progress`: the live bar.
- :mod:`~nanbench.sweep.interrupts`: Ctrl-C, SIGTERM and SIGHUP, turned into the sweep's end.
"""

from nanbench.sweep.callback import SweepCallback, abort, before_relaunch, interrupted, jobs_returned
from nanbench.sweep.grid import expand, experiment_name, inner_grid
from nanbench.sweep.jobs import run_job
from nanbench.sweep.session import session

__all__ = ["SweepCallback", "abort", "before_relaunch", "expand", "interrupted", "experiment_name", "inner_grid",
           "jobs_returned", "run_job", "session"]
