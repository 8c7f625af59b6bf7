"""Diagnose: why one configuration goes NaN, and the smallest change with which the model trains.

The modules, lowest first: :mod:`~.spec` (the ``diagnose:`` settings, validated),
:mod:`~.catalogue` (the single changes and which apply: pure), :mod:`~.tries` (each change a
real training run at every seed), :mod:`~.rank` (ranking and pairs: pure), :mod:`~.run` (the
diagnosis trained and tracked: an MLflow parent run, each try's runs its children),
:mod:`~.report` (report.md, report.html, diagnosis.json) and :mod:`~.cli`
(``python -m nanbench.diagnose [overrides]``, ``make diagnose ARGS="..."``).
"""

from nanbench.studies.diagnose.catalogue import Change, Evidence, apply, catalogue
from nanbench.studies.diagnose.run import Diagnosis, diagnose
from nanbench.studies.diagnose.spec import DiagnoseSpec, diagnose_spec, prepare

__all__ = ["Change", "DiagnoseSpec", "Diagnosis", "Evidence", "apply", "catalogue", "diagnose", "diagnose_spec",
           "prepare"]
