"""nanbench.validate: each check's one-line error names the key, what is allowed and the value."""

from __future__ import annotations

import pickle

import pytest

from nanbench.validate import ConfigError, check_device, check_number, keras_class


@pytest.mark.parametrize("value,kwargs,message", [
    (0, {"low": 0, "low_open": True}, "x must be > 0 (got 0)"),
    (2, {"high": 1}, "x must be <= 1 (got 2)"),
    (1.5, {"integer": True}, "x must be an integer (got 1.5)"),
    (True, {}, "x must be a number (got True)"),
    (float("nan"), {}, "x must be a finite number (got nan)"),
])
def test_numbers_out_of_bounds_are_named(value, kwargs, message):
    with pytest.raises(ConfigError) as err:
        check_number("x", value, **kwargs)
    assert str(err.value) == message and err.value.key == "x"


def test_a_config_error_survives_pickling_message_and_key():
    err = pickle.loads(pickle.dumps(ConfigError("train.seed", "an integer", "a")))
    assert str(err) == "train.seed must be an integer (got 'a')" and err.key == "train.seed"


def test_keras_class_paths_are_checked_against_kerass_exports_without_importing_it():
    import subprocess
    import sys
    code = ("import sys; from nanbench.validate import keras_class; "
            "keras_class('k', 'keras.optimizers.Nadam', 'keras.optimizers'); print('keras' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr
    assert keras_class("k", "keras.losses.Huber", "keras.losses") == "keras.losses.Huber"
    assert keras_class("k", "mypackage.MyLoss", "keras.losses") == "mypackage.MyLoss"  # the user's own
    for bad in ("Huber", "keras.losses.Hubber", "keras..x", 3):
        with pytest.raises(ConfigError, match="^k must be"):
            keras_class("k", bad, "keras.losses")


def test_a_gpu_where_there_is_none_is_refused_before_tensorflow_loads(monkeypatch):
    from pathlib import Path
    if any(Path("/dev").glob("nvidia[0-9]*")):
        pytest.skip("this machine has a GPU device file")
    with pytest.raises(ConfigError, match="^train.device must be auto or cpu"):
        check_device("gpu")
    check_device("cpu")
    check_device("auto")
