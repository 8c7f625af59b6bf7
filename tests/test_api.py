"""nanbench's public API: its names resolve, and importing nanbench loads neither TensorFlow nor
MLflow (a sweep's store process is forked before either is imported)."""

from __future__ import annotations

import subprocess
import sys

import pytest

import nanbench


def test_import_loads_neither_tensorflow_nor_mlflow():
    code = "import sys, nanbench; print('tensorflow' in sys.modules, 'mlflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["False", "False"], out.stderr


def test_every_public_name_resolves_and_others_do_not():
    for name in nanbench.__all__:
        assert getattr(nanbench, name) is not None
    with pytest.raises(AttributeError):
        nanbench.not_a_name  # noqa: B018


def test_a_run_through_the_public_api():
    spec = nanbench.from_config(nanbench.compose(["dataset=doc000_clean", "train.epochs=3", "train.engine=fit"]))
    result = nanbench.execute(spec)
    assert isinstance(result, nanbench.RunResult) and result.steps_run == 3
    with pytest.raises(nanbench.ConfigError, match="^optimizer.lr must be > 0"):
        nanbench.from_config(nanbench.compose(["optimizer.lr=-1"]))
