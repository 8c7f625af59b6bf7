"""Tracking: every MLflow call nanbench makes, and nothing else does.

- :mod:`~nanbench.tracking.uri`: which stores are accepted (checked before anything is recorded)
  and the MLflow UI's addresses.
- :mod:`~nanbench.tracking.record`: what MLflow keeps of a finished run (tags, params, metrics,
  steps.csv).
- :mod:`~nanbench.tracking.tracker`: the :class:`Tracker`, which writes runs and parent runs.
- :mod:`~nanbench.tracking.sqlite`: the SQLite fast path (template stores, WAL, bulk inserts).
- :mod:`~nanbench.tracking.store`, :mod:`~nanbench.tracking.server`: a sweep's recording process
  and the socket its workers send runs to; :mod:`~nanbench.tracking.lock`: one sweep per experiment.
- :mod:`~nanbench.tracking.reader`: a sweep's runs read back as a :class:`RunTable`, the one type
  the summary reads.
"""

from nanbench.tracking.record import git_commit, run_name, versions
from nanbench.tracking.sqlite import empty_store_template, seed_sqlite_store, time_ordered_id
from nanbench.tracking.tracker import Tracker, all_runs
from nanbench.tracking.uri import check_uri, experiments, sqlite_path, ui_runs_url

__all__ = ["Tracker", "all_runs", "check_uri", "empty_store_template", "experiments", "git_commit",
           "run_name", "seed_sqlite_store", "sqlite_path", "time_ordered_id", "ui_runs_url", "versions"]
