"""Studies built on run + tracking: the documents' examples and their claims, and the stability
boundary. None is imported by the core (spec → ... → summary); each imports only downward:

- :mod:`~nanbench.studies.verdicts` (counts → a verdict) and :mod:`~nanbench.studies.documents`
  (the documents' code blocks and the data they fit) import no other study;
- :mod:`~nanbench.studies.claims` (the prose claims, judged on sweeps) builds on those two;
- :mod:`~nanbench.studies.examples` (the code examples, judged over seeds) on all three;
- :mod:`~nanbench.studies.boundary` (the largest stable learning rate) on none of them.

Inside each package a module imports only its siblings below it, never its package's
``__init__`` (which re-exports the public names).
"""
