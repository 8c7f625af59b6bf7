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


def test_sqrt_probe_gives_nan_gradients_at_an_exact_fit_and_mse_does_not():
    from nanbench.studies.claims.probes import sqrt_probe

    rows = {(r["loss"], r["residual per row"]): r for r in sqrt_probe()}
    for residual in ("0", "1e-20"):  # 1e-20 rounds away at targets 1..4: an exact fit as well
        assert rows[("rmse", residual)]["loss_finite"] and not rows[("rmse", residual)]["gradients_finite"]
        assert rows[("mse", residual)]["gradients_finite"]
    assert rows[("rmse", "0.001")]["gradients_finite"]
