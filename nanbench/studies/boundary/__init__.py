"""Stability boundary: the largest learning rate at which one configuration stays stable
(``lr_max_stable``), and beside it the largest at which it trains (``lr_max_trains``: finite and
the loss fell, nanbench.forensics.trained), since a run can stay finite and learn nothing.

The modules, lowest first: :mod:`~.spec` (the ``boundary:`` settings, validated),
:mod:`~.search` (the search and the full-batch GD theory: pure functions),
:mod:`~.run` (one search trained and tracked in MLflow: a parent run, one child per evaluation),
:mod:`~.app` (the Hydra app and its multirun callback), :mod:`~.grid` (a sweep file's searches in
one process), :mod:`~.report` (tables and plots from the summaries) and :mod:`~.cli`.

Ways to run it:

- ``python -m nanbench.studies.boundary [hydra overrides]``: one search; the last stdout line is JSON.
- ``python -m nanbench.studies.boundary --grid sweeps/boundaries.yaml --out results``: one search per job
  of a Hydra sweep file, each composed with Hydra's compose API, all validated before any trains;
  writes ``boundaries.json``, ``boundaries.md`` and ``boundaries.png``.
- ``python -m nanbench.studies.boundary -m --config-dir sweeps --config-name boundaries``: the same jobs
  as a Hydra multirun; :class:`~.app.BoundaryCallback` writes the table into Hydra's sweep folder.
"""

from nanbench.studies.boundary.app import BoundaryCallback, run_one
from nanbench.studies.boundary.cli import main
from nanbench.studies.boundary.grid import compose_job, load_grid, run_grid
from nanbench.studies.boundary.run import BoundaryResult, config_factors, find_boundary
from nanbench.studies.boundary.search import Search, Theory, is_stable, lambda_max_mse, search, theory
from nanbench.studies.boundary.spec import BoundarySpec, boundary_spec, prepare

__all__ = ["BoundaryCallback", "BoundaryResult", "BoundarySpec", "Search", "Theory", "boundary_spec",
           "compose_job", "config_factors", "find_boundary", "is_stable", "lambda_max_mse", "load_grid",
           "main", "prepare", "run_grid", "run_one", "search", "theory"]
