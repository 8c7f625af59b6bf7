"""nanbench.studies.claims.probes: what Keras's activations and clipping arguments do, measured."""

from __future__ import annotations

import pytest

from nanbench.studies.claims.probes import activation_probe, clipping_probe


def test_probes_measure_keras():
    relu = activation_probe("relu")[0]
    assert relu["values_finite"] and relu["gradients_finite"]
    probe = {r["function"]: r for r in activation_probe("sigmoid_softmax")}
    assert probe["keras.activations.sigmoid"]["values_finite"] and probe["keras.activations.softmax"]["values_finite"]
    assert not probe["exp(x) / sum(exp(x)) (hand-written)"]["values_finite"]
    clip = {r["clipping"]: r for r in clipping_probe()}
    assert float(clip["global_clipnorm=1.0"]["joint gradient norm"]) == pytest.approx(1.0, rel=1e-3)
    assert float(clip["clipnorm=1.0"]["joint gradient norm"]) > 1.0  # per variable, not joint
