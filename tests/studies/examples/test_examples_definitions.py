"""nanbench.studies.examples.definitions: each example's RunSpec says what its Keras arguments do,
and every variant names its base, its partner and its changes. (The definitions against the
documents' own code: tests/studies/test_documents.py.)"""

from __future__ import annotations

import numpy as np
import pytest

from nanbench.studies.documents import make_data
from nanbench.studies.examples.definitions import ALL, BY_KEY, EXAMPLES


@pytest.mark.parametrize("example", ALL, ids=lambda e: e.key)
def test_spec_describes_the_run(example):
    """The MLflow params (the RunSpec) say what the run does: same data through nanbench.data,
    same layers, optimizer, clipping, loss and epochs."""
    from nanbench.data import load
    X, y = make_data(example.data)
    data = load(example.spec.dataset, example.spec.preprocess)
    np.testing.assert_allclose(data.X, np.asarray(X, dtype=np.float32), rtol=1e-6)
    np.testing.assert_allclose(data.y, np.asarray(y, dtype=np.float32).reshape(-1, 1), rtol=1e-6)
    s = example.spec
    hidden = example.layers[:-1]
    assert s.model.name == ("mlp" if hidden else "linear")
    if hidden:
        assert (s.model.width, s.model.depth, s.model.activation) == (hidden[0]["units"], 1, hidden[0]["activation"])
    name, kwargs = (example.optimizer, {}) if isinstance(example.optimizer, str) else example.optimizer
    assert s.optimizer.name == name.lower()
    assert s.optimizer.lr == kwargs.get("learning_rate", {"adam": 1e-3, "sgd": 0.01}[name.lower()])
    assert (s.clipping.kind == "clipnorm") == ("clipnorm" in kwargs)
    assert s.loss.name == {"mse": "mse", "huber": "huber"}[example.loss]
    assert (s.train.epochs, s.train.batch_size, s.train.shuffle, s.train.engine) == (example.epochs, 32, True, "fit")


def test_variants_name_their_base_partner_and_changes():
    keys = {e.key for e in ALL}
    assert len(keys) == len(ALL)  # keys are unique: they index the table and MLflow's example_key tag
    for e in ALL:
        if e.judge == "remedy":
            assert e.partner in keys
        if e.base is not None:
            assert e.base in keys and e.code is None and len(e.changes) > len(BY_KEY[e.base].changes)
    assert {e.key for e in EXAMPLES} == {f"doc00{d}-ex{n}" for d in (0, 3) for n in (1, 2, 3)}
