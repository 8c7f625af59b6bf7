"""Checking configuration values: the one-line ConfigError naming the key and what is allowed,
and the checks nanbench.spec builds its specs with (numbers and their bounds, fields checked from
their dataclass metadata, class paths of Keras's public modules checked without importing Keras).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
import sys
from pathlib import Path
from typing import Any, Mapping

class ConfigError(ValueError):
    """A configuration value is not allowed. The message is one line naming the key."""

    def __init__(self, key: str, allowed: str, got: Any):
        self.key = key
        super().__init__(f"{key} must be {allowed} (got {got!r})")

    def __reduce__(self):  # picklable, message and all (a sweep's store set-up may run in a child)
        return _config_error, (self.key, str(self))


def config_error(key: str, message: str) -> ConfigError:
    """A ConfigError about `key` whose one line is `message` as written (where "KEY must be
    ALLOWED" does not say it: a limit exceeded, a name that is not one)."""
    return _config_error(key, message)


def _config_error(key: str, message: str) -> ConfigError:
    exc = ConfigError.__new__(ConfigError)
    ValueError.__init__(exc, message)
    exc.key = key
    return exc


def one_of(key: str, value: Any, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ConfigError(key, "one of " + ", ".join(allowed), value)
    return value


def check_number(key: str, value: Any, *, low: float | None = None, high: float | None = None,
            low_open: bool = False, high_open: bool = False, integer: bool = False) -> Any:
    """Check that `value` is a finite number within the given bounds; return it."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (
            integer and not isinstance(value, int)):
        raise ConfigError(key, "an integer" if integer else "a number", value)
    if not math.isfinite(value):
        raise ConfigError(key, "a finite number", value)
    if low is not None and (value < low or (low_open and value == low)):
        raise ConfigError(key, f"{'>' if low_open else '>='} {low:g}", value)
    if high is not None and (value > high or (high_open and value == high)):
        raise ConfigError(key, f"{'<' if high_open else '<='} {high:g}", value)
    return value


def check_fraction(key: str, value: Any) -> float:
    return float(check_number(key, value, low=0.0, high=1.0))


NOT_A_FACTOR = {"factor": False}  # field metadata: how a run is built, not what it is (not logged, not hashed)
# field metadata: a factor added after runs were recorded, logged and hashed only when it differs from
# its default (which is what every earlier run did), so adding it changes no earlier configuration's hash
OMITTED_AT_DEFAULT = {"omit_default": True}


def is_factor(f: dataclasses.Field) -> bool:
    return f.metadata.get("factor", True)


def at_omitted_default(f: dataclasses.Field, value: Any) -> bool:
    """Whether `value` of field `f` is its default and the field says to leave it out then."""
    return bool(f.metadata.get("omit_default")) and value == f.default


def check_fields(key: str, cls, values: Mapping[str, Any]) -> dict[str, Any]:
    """Check `values` against the bounds in `cls`'s field metadata (``low``, ``high``, ``low_open``,
    ``integer``, ``fraction``); fields left out take their defaults. Returns the checked values."""
    out = dict(values)
    for f in dataclasses.fields(cls):
        if f.name not in out or "low" not in f.metadata and not f.metadata.get("fraction"):
            continue
        m = f.metadata
        if m.get("fraction"):
            out[f.name] = check_fraction(f"{key}.{f.name}", out[f.name])
        else:
            check_number(f"{key}.{f.name}", out[f.name], low=m.get("low"), low_open=m.get("low_open", False),
                         integer=m.get("integer", False))
    return out


def keras_class(key: str, value: Any, module: str) -> str:
    """A class named by dotted path, e.g. ``keras.optimizers.Nadam``. Names under Keras's public
    `module` are checked against the names it exports without importing Keras (which would load
    TensorFlow before a sweep forks its store process); other paths are the user's own classes,
    resolved when the run is built (nanbench.model.resolve_class)."""
    if not isinstance(value, str) or "." not in value or not all(p.isidentifier() for p in value.split(".")):
        raise ConfigError(key, f"a dotted class path such as {module}.NAME", value)
    owner, name = value.rsplit(".", 1)
    if owner == module:
        exported = _exports(module)
        if exported is not None and name not in exported:
            near = sorted(n for n in exported if n[:1].isupper())
            raise ConfigError(key, f"a class of {module}: " + ", ".join(near), value)
    return value


def same_option(group: str, name: str, cls: str, key: str = "class") -> None:
    """A name that is one of conf/<group>/'s options must come with that option's class (for
    datasets: its ``generator``): setting ``loss.name=huber`` alone would otherwise record Huber
    and train the group's MSE, and ``dataset=clean dataset.name=outliers`` record clean data as
    outliers."""
    given = option_class(group, name, key)
    if given is not None and given != cls:
        raise ConfigError(f"{group}.name", f"the name of the option whose {key} is {cls} (choose "
                          f"{group}={name} to get {given})", name)


@functools.lru_cache(maxsize=None)
def option_class(group: str, name: str, key: str = "class") -> str | None:
    """The ``class`` (or other `key`) conf/<group>/<name>.yaml names, if there is such an option
    file and it sets that key itself."""
    from nanbench.config import CONF_DIR
    if not check_name_ok(name):
        return None
    path = CONF_DIR / group / f"{name}.yaml"
    if not path.is_file():
        return None
    from omegaconf import OmegaConf
    return OmegaConf.load(path).get(key)


NAME_ALLOWED = ("a name of letters, digits, '_', '-' and '.', not starting with '.' or '-' (it names a "
                "folder or file under the one its command writes to)")


def check_name_ok(value: Any) -> bool:
    return isinstance(value, str) and bool(re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", value))


def check_name(key: str, value: Any) -> str:
    """A name nanbench also uses as a path (sweep.name: results/<name>/; dataset.name: diagnose's
    report folder): one component, so that it cannot leave the folder it is written under
    (``../escape``, ``/abs/dir``)."""
    if not check_name_ok(value):
        raise ConfigError(key, NAME_ALLOWED, value)
    return value


@functools.lru_cache(maxsize=None)
def _exports(module: str) -> frozenset[str] | None:
    """The names a public Keras module exports, read from its __init__.py (None if not found)."""
    import ast
    import importlib.util
    top = importlib.util.find_spec(module.split(".")[0])
    if top is None or not top.submodule_search_locations:
        return None
    path = Path(next(iter(top.submodule_search_locations)), *module.split(".")[1:], "__init__.py")
    if not path.is_file():
        return None
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {a.asname or a.name for a in node.names}
    return frozenset(names)


def check_device(requested: str) -> None:
    """``train.device=gpu`` on a machine with no GPU device file fails now, in well under a second,
    before TensorFlow is imported or any store exists. Where a GPU device is there, TensorFlow
    decides later (nanbench.run.resolve_device), still before anything is recorded."""
    if requested != "gpu" or sys.platform == "darwin":  # macOS: Metal, no device file to look for
        return
    if "tensorflow" in sys.modules:  # already loaded: ask it
        import tensorflow as tf
        if tf.config.list_physical_devices("GPU"):
            return
    elif any(Path("/dev").glob("nvidia[0-9]*")) or Path("/dev/dxg").exists() or Path("/dev/kfd").exists():
        return
    raise ConfigError("train.device", "auto or cpu on this machine (no GPU is visible)", "gpu")


def build(cls, key: str, values: Mapping[str, Any]):
    """The dataclass `cls` of group `key` from `values`; a key it has no field for is the
    one-line ConfigError listing the keys it has."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"{key}.{unknown[0]}", "one of the keys " + ", ".join(sorted(names)),
                          values[unknown[0]])
    return cls(**values)
