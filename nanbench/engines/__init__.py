"""Training engines. Each takes a RunSpec and its Data and returns a StepSeries with timings.

- ``fit``: Keras ``Model.fit`` with a forensic ``train_step`` and a recording callback (the reference).
- ``fused``: the whole run in one ``tf.function``, traced once per structure and reused.
"""

from __future__ import annotations

from nanbench.engines.base import EngineOutput

__all__ = ["EngineOutput", "train"]


def train(spec, data, device: str) -> EngineOutput:
    """Train one run with the engine the spec names, on `device` ('/CPU:0' or '/GPU:0')."""
    if spec.train.engine == "fit":
        from nanbench.engines.fit import train as fit_train
        return fit_train(spec, data, device)
    from nanbench.engines.fused import train as fused_train
    return fused_train(spec, data, device)
