"""The documents' six code examples as a benchmark table, each claim judged by measurement.

For each example (doc000 examples 1-3, doc003 examples 1-3) two things are run:

1. **As written** (:mod:`~nanbench.studies.examples.as_written`): the code block itself,
   verbatim, executed in a fresh namespace in a separate Python process; what it did is recorded
   (``ran``, or the exact exception, plus every warning).
2. **Inside nanbench** (:mod:`~nanbench.studies.examples.in_nanbench`): the same arrays, the same
   ``Dense`` layers, optimizer and loss arguments and epochs through ``Model.fit`` on nanbench's
   ``ForensicSequential``, classified with :func:`nanbench.forensics.classify` and logged to
   MLflow (experiment ``examples``) with nanbench's tag and metric conventions.

Where a claim does not hold as written, *variants* (not in the documents) change one thing at a
time to show what it takes for the claimed effect to appear, with a *control* run beside each
remedy so that "prevents" is a comparison, not an impression. The prose claims are judged by
factor-isolating sweeps in :mod:`nanbench.studies.claims`.

The modules, in the order a run flows through them: nanbench.studies.documents (the blocks and
their data), :mod:`~.definitions` (the examples and variants), :mod:`~.records` (what a run
leaves), :mod:`~.in_nanbench` and :mod:`~.as_written` (the two ways to run), :mod:`~.judge` (the
verdicts), :mod:`~.run` (all of it, logged), :mod:`~.report` (the tables) and :mod:`~.cli`
(``python -m nanbench.studies.examples``: results/examples.md, examples.csv and claims.csv).
"""

from nanbench.studies.examples.cli import main
from nanbench.studies.examples.definitions import ALL, BY_KEY, EXAMPLES, VARIANTS, Example
from nanbench.studies.examples.run import run_examples

__all__ = ["ALL", "BY_KEY", "EXAMPLES", "Example", "VARIANTS", "main", "run_examples"]
