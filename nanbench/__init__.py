"""nanbench: measure which training factors make a TensorFlow/Keras loss turn NaN.

Data flows one way: config (spec) -> data -> model -> engine -> result -> tracking -> summary.
The public API, for scripts and notebooks::

    from nanbench import compose, from_config, execute, summarize
    spec = from_config(compose(["dataset=outliers", "optimizer=sgd", "optimizer.lr=0.1"]))
    result = execute(spec)          # a RunResult: outcome, forensics, timings
    result.outcome, result.verdict.first_nonfinite_source

Names are imported on first use, so ``import nanbench`` loads neither TensorFlow nor MLflow.
"""

import os as _os

# TensorFlow reads these at import: keep its C++ start-up chatter off the terminal.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
_os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # oneDNN reorders float sums: not bit-reproducible

__version__ = "0.1.0"

_API = {"RunSpec": "nanbench.spec", "from_config": "nanbench.spec", "ConfigError": "nanbench.validate",
        "compose": "nanbench.config", "execute": "nanbench.run", "RunResult": "nanbench.result",
        "Tracker": "nanbench.tracking", "summarize": "nanbench.summary"}
__all__ = sorted(_API)


def __getattr__(name: str):
    if name in _API:
        import importlib
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'nanbench' has no attribute {name!r}")
