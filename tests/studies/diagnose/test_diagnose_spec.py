"""nanbench.studies.diagnose.spec: the diagnose: section validated, the composed config prepared."""

from __future__ import annotations

import pytest

from nanbench.config import compose
from nanbench.spec import ConfigError
from nanbench.studies.diagnose.spec import DiagnoseSpec, diagnose_spec, prepare


def test_conf_diagnose_composes_into_its_defaults_and_a_fused_run_spec():
    spec, config, settings = prepare(compose(["dataset=unscaled"], config_name="diagnose"))
    assert settings == DiagnoseSpec()
    assert spec.train.engine == "fused" and spec.tracking.experiment == "diagnose"
    assert config["dataset"]["name"] == "unscaled" and "diagnose" not in config and "hydra" not in config


@pytest.mark.parametrize("values, key", [({"seeds": 2}, "diagnose.seeds"), ({"seeds": 3.5}, "diagnose.seeds"),
                                         ({"name": "a/b"}, "diagnose.name"), ({"pairs": "yes"}, "diagnose.pairs"),
                                         ({"pair_candidates": 1}, "diagnose.pair_candidates"),
                                         ({"boundary_precision": 0}, "diagnose.boundary_precision"),
                                         ({"bogus": 1}, "diagnose.bogus")])
def test_bad_settings_name_the_key(values, key):
    with pytest.raises(ConfigError) as info:
        diagnose_spec(values)
    assert info.value.key == key and "\n" not in str(info.value)
