"""Shared fixtures: compose the real configs with Hydra's compose API, shrunk for speed."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import pytest

from nanbench.config import CONF_DIR as CONF, ROOT, SWEEPS_DIR as SWEEPS, compose


os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def compose_config(overrides: list[str] | None = None, config_name: str = "config"):
    """The composed DictConfig for `overrides`, exactly as `python -m nanbench` would see it."""
    return compose(list(overrides or []), config_name=config_name)


@functools.cache
def default_spec():
    """The default config's RunSpec, composed once per test session when a test first needs it
    (never at import: collecting the tests composes nothing)."""
    from nanbench.spec import from_config
    return from_config(compose_config())


@pytest.fixture
def store(tmp_path) -> str:
    """A fresh SQLite MLflow store in a temporary directory."""
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


@pytest.fixture
def small():
    """Compose the real config with overrides, shrunk to a few epochs of a small dataset."""
    def make(*overrides: str, epochs: int = 3):
        return compose_config([f"train.epochs={epochs}", *overrides])
    return make
