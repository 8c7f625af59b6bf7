"""nanbench.studies.boundary.spec: the search's settings, composed from the real configs and validated."""

from __future__ import annotations

import pytest

from nanbench.config import compose
from nanbench.spec import ConfigError
from nanbench.studies.boundary.spec import BoundarySpec, boundary_spec, prepare


def _compose(*overrides: str):
    """conf/boundary.yaml composed with `overrides`, as `python -m nanbench.studies.boundary` would."""
    return compose(list(overrides), config_name="boundary")


def test_boundary_config_composes_from_the_real_configs():
    spec, bs = prepare(_compose("dataset=doc000_outlier", "optimizer=sgd"))
    assert spec.train.engine == "fused" and spec.tracking.experiment == "boundaries"
    assert bs == BoundarySpec() == boundary_spec(None)  # conf/boundary.yaml and the dataclass agree


@pytest.mark.parametrize("override, key", [
    ("boundary.lr_low=0", "boundary.lr_low"),
    ("boundary.lr_high=1e-9", "boundary.lr_high"),
    ("boundary.growth_factor=1", "boundary.growth_factor"),
    ("boundary.lr_start=100", "boundary.lr_start"),
    ("+boundary.typo=1", "boundary.typo"),
])
def test_bad_boundary_values_name_the_key(override, key):
    with pytest.raises(ConfigError) as info:
        prepare(_compose(override))
    assert info.value.key == key
