"""A user's own data: a CSV file (one target column, or one column per class of one-hot labels;
the others features) or an NPZ file (arrays ``X`` and ``y``, y one value per row or one-hot
labels, one column per class), read into the same raw float64 arrays the generators make, so that they flow
through the same preprocessing, engines and records as the built-in datasets.

What a file holds is part of a run's identity: its SHA-256 (``dataset.digest``, a factor of the
run and so of its config hash), so two different files at one path are two configurations and a
resumed sweep does not take one's runs for the other's. The task, unless ``dataset.task`` sets
it, is read from the target (:func:`infer_task`). Everything wrong with a file is a one-line
ConfigError naming ``dataset.path`` (or ``dataset.target``, ``dataset.task``), raised while the
config is validated, before anything is recorded. No Keras here: a sweep validates its config
before it forks its store process.
"""

from __future__ import annotations

import functools
import hashlib
import os
from typing import Any

import numpy as np

from nanbench.validate import ConfigError

KINDS = ("csv", "npz")
MAX_CLASSES = 20  # integer targets with more distinct values than this are read as regression


def absolute(key: str, path: Any, suffixes: tuple[str, ...], what: str) -> str:
    """`path` as an absolute path to an existing, readable file (`what`, e.g. "a CSV file"),
    named with one of `suffixes` when given; else the ConfigError naming `key`."""
    if not isinstance(path, str) or not path:
        raise ConfigError(key, f"the path of {what} (set {key}=FILE)", path)
    full = os.path.abspath(os.path.expanduser(path))
    if os.path.isdir(full):
        raise ConfigError(key, f"{what}, not a folder", path)
    if not os.path.isfile(full):
        raise ConfigError(key, f"{what} that exists (no such file)", path)
    if not os.access(full, os.R_OK):
        raise ConfigError(key, f"{what} that can be read (permission denied)", path)
    if suffixes and not full.lower().endswith(suffixes):
        raise ConfigError(key, f"{what} named *{' or *'.join(suffixes)}", path)
    return full


def _stat_key(path: str) -> tuple:
    st = os.stat(path)
    return path, st.st_size, st.st_mtime_ns


def digest(path: str) -> str:
    """The SHA-256 of a file's bytes (first 16 hex digits), read once per file version (its size
    and modification time)."""
    return _digest(_stat_key(path))


@functools.lru_cache(maxsize=64)
def _digest(key: tuple) -> str:
    h = hashlib.sha256()
    with open(key[0], "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def keras_digest(path: str) -> str:
    """The digest of what a .keras file holds, not of its zip bytes: its architecture and compile
    config (config.json, with Keras's ``shared_object_id`` numbers, which are Python object ids,
    renumbered in order of appearance) and every weight array (name, dtype, shape, bytes) in
    model.weights.h5. metadata.json (the save date and Keras version) is left out, so saving the
    same model twice gives the same digest and the same ``config_hash`` (first 16 hex digits).
    A file that is no .keras zip falls back to its bytes' digest (loading it then says why)."""
    return _keras_digest(_stat_key(path))


@functools.lru_cache(maxsize=64)
def _keras_digest(key: tuple) -> str:
    import io
    import json
    import zipfile

    try:
        with zipfile.ZipFile(key[0]) as z:
            config = json.loads(z.read("config.json"))
            weights = z.read("model.weights.h5") if "model.weights.h5" in z.namelist() else b""
    except (zipfile.BadZipFile, KeyError, ValueError, OSError):
        return _digest(key)
    ids: dict = {}

    def canonical(node):
        if isinstance(node, dict):
            return {k: (ids.setdefault(v, len(ids)) if k == "shared_object_id" else canonical(v))
                    for k, v in sorted(node.items())}
        if isinstance(node, list):
            return [canonical(v) for v in node]
        return node

    h = hashlib.sha256(json.dumps(canonical(config), sort_keys=True).encode())
    if weights:
        import h5py

        def add(name, obj):
            if isinstance(obj, h5py.Dataset):
                value = np.asarray(obj[()])
                h.update(f"{name}|{value.dtype.str}|{value.shape}".encode())
                h.update(np.ascontiguousarray(value).tobytes())

        try:
            with h5py.File(io.BytesIO(weights), "r") as f:
                f.visititems(add)
        except OSError:
            h.update(weights)
    return h.hexdigest()[:16]


def read(kind: str, path: str, target: str | tuple[str, ...] | None) -> tuple[np.ndarray, np.ndarray]:
    """The raw arrays of a user's file: X (n, d) and y (n, 1), or (n, k) one-hot labels of k
    classes (:func:`is_one_hot`), float64, read-only (cached per file version and target). Missing
    values stay NaN (what happens to them is a preprocessing choice)."""
    return _read(kind, _stat_key(path), tuple(target) if isinstance(target, (list, tuple)) else target)


def is_one_hot(y: np.ndarray) -> bool:
    """Whether y is one-hot labels: two or more columns of 0 / 1, exactly one 1 per row."""
    y = np.asarray(y)
    return (y.ndim == 2 and y.shape[1] > 1 and bool(np.all((y == 0) | (y == 1)))
            and bool(np.all(y.sum(axis=1) == 1)))


@functools.lru_cache(maxsize=8)
def _read(kind: str, key: tuple, target) -> tuple[np.ndarray, np.ndarray]:
    X, y = (_read_csv if kind == "csv" else _read_npz)(key[0], target)
    if len(X) == 0:
        raise ConfigError("dataset.path", f"a {kind.upper()} file with at least one row", key[0])
    if X.shape[1] == 0:
        raise ConfigError("dataset.path", f"a {kind.upper()} file with at least one feature column", key[0])
    X.setflags(write=False)
    y.setflags(write=False)
    return X, y


def _read_csv(path: str, target) -> tuple[np.ndarray, np.ndarray]:
    import pandas as pd
    targets = list(target) if isinstance(target, tuple) else [target]
    if not targets or not all(isinstance(t, str) and t for t in targets):
        raise ConfigError("dataset.target", "the name of the CSV's target column (set dataset.target=COLUMN; "
                          "one-hot labels: dataset.target=[C0,C1,...])", target)
    try:
        frame = pd.read_csv(path)
    except Exception as exc:  # noqa: BLE001 - pandas' parser errors, decoding errors, an empty file
        raise ConfigError("dataset.path", "a readable CSV file with a header row",
                          f"{path}: {type(exc).__name__}: {' '.join(str(exc).split())[:200]}") from None
    columns = [str(c) for c in frame.columns]
    missing = [t for t in targets if t not in columns]
    if missing:
        shown = ", ".join(columns[:20]) + (", ..." if len(columns) > 20 else "")
        raise ConfigError("dataset.target", f"a column of {os.path.basename(path)} ({shown})",
                          missing[0] if len(targets) > 1 else target)
    frame.columns = columns
    if frame.empty:  # a header alone: pandas reads its columns as text, which is not what is wrong
        raise ConfigError("dataset.path", "a CSV file with at least one row under its header (it has none)", path)
    bad = [c for c in columns if not (pd.api.types.is_numeric_dtype(frame[c]) or pd.api.types.is_bool_dtype(frame[c]))]
    if bad:
        raise ConfigError("dataset.path", "a CSV of numeric columns only (non-numeric: " + ", ".join(bad) +
                          "; encode or drop them)", path)
    y = frame[targets].to_numpy(dtype=np.float64).reshape(len(frame), len(targets))
    X = frame.drop(columns=targets).to_numpy(dtype=np.float64)
    return np.ascontiguousarray(X), np.ascontiguousarray(y)


def input_arrays(names: list[str]) -> list[str]:
    """An NPZ's input arrays: ``X``, or ``X0``, ``X1``, ... (one per input of a model with several,
    in that order, read as their columns side by side: nanbench.user_model splits them again)."""
    if "X" in names:
        return ["X"]
    several = []
    while f"X{len(several)}" in names:
        several.append(f"X{len(several)}")
    return several if len(several) > 1 else []


def _read_npz(path: str, target: str | None) -> tuple[np.ndarray, np.ndarray]:
    if target is not None:
        raise ConfigError("dataset.target", "left out for dataset=npz (its arrays are X and y)", target)
    try:
        with np.load(path, allow_pickle=False) as archive:
            names = list(archive.files)
            inputs = input_arrays(names)
            if not inputs or "y" not in names:
                raise ConfigError("dataset.path", "an .npz file with arrays X (or X0, X1, ... for a model with "
                                  f"several inputs) and y (it has: {', '.join(names) or 'none'})", path)
            parts = [np.asarray(archive[name]) for name in inputs]
            if len(parts) > 1 and all(p.ndim in (1, 2) and len(p) == len(parts[0]) for p in parts):
                parts = [p.reshape(len(p), -1) for p in parts]  # one input per array: their columns side by side
            X, y = (np.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]), archive["y"]
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - not a zip, a pickled object array, a truncated file
        raise ConfigError("dataset.path", "a readable .npz file (numpy.savez) of numeric arrays X and y",
                          f"{path}: {type(exc).__name__}: {' '.join(str(exc).split())[:200]}") from None
    for name, array in (("X", X), ("y", y)):
        if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
            raise ConfigError("dataset.path", f"an .npz file of numeric arrays (its {name} is {array.dtype})", path)
    if X.ndim == 1:
        X = X.reshape(-1, 1)
    if X.ndim != 2:
        raise ConfigError("dataset.path", f"an .npz file whose X is 2-D (rows, features) (its X has shape {X.shape})",
                          path)
    if y.ndim > 2 or len(y) != len(X) or (y.ndim == 2 and y.shape[1] == 0):
        raise ConfigError("dataset.path", f"an .npz file whose y has one row per row of X: one value, one column "
                          f"per target (regression) or one-hot labels (X {X.shape}, y {y.shape})", path)
    y = np.ascontiguousarray(y, dtype=np.float64)
    return np.ascontiguousarray(X, dtype=np.float64), (y if y.ndim == 2 and y.shape[1] > 1 else y.reshape(-1, 1))


def infer_task(y: np.ndarray) -> str:
    """The task a target makes: ``regression`` when some value is not an integer (or not finite);
    ``binary`` for exactly two distinct integer values; ``multiclass`` for 3 to MAX_CLASSES
    distinct integer values; ``regression`` otherwise (one value, or more than MAX_CLASSES). One-hot
    labels: ``binary`` for two columns, else ``multiclass``."""
    if is_one_hot(y):
        return "binary" if np.shape(y)[1] == 2 else "multiclass"
    if np.ndim(y) == 2 and np.shape(y)[1] > 1:  # several target columns, not one-hot: a multi-output regression
        return "regression"
    values = np.asarray(y, dtype=np.float64).ravel()
    if not np.all(np.isfinite(values)) or np.any(values != np.round(values)):
        return "regression"
    distinct = len(np.unique(values))
    return "binary" if distinct == 2 else "multiclass" if 2 < distinct <= MAX_CLASSES else "regression"


def check_task(task: str, y: np.ndarray) -> int | None:
    """The class count of a classification target (None for regression); a target that cannot be
    the `task` asked for is the ConfigError on ``dataset.task``. One-hot labels have one class per
    column (seen or not), and are labels: regression is an error."""
    if is_one_hot(y):
        if task == "regression":
            raise ConfigError("dataset.task", f"binary or multiclass for one-hot labels ({np.shape(y)[1]} columns)",
                              task)
        if task == "binary" and np.shape(y)[1] != 2:
            raise ConfigError("dataset.task", f"multiclass for one-hot labels of {np.shape(y)[1]} classes", task)
        return int(np.shape(y)[1])
    if task == "regression":
        return None
    if np.ndim(y) == 2 and np.shape(y)[1] > 1:
        raise ConfigError("dataset.task", f"regression for {np.shape(y)[1]} target columns that are not one-hot "
                          "labels (0 or 1, one 1 per row)", task)
    values = np.asarray(y, dtype=np.float64).ravel()
    if not np.all(np.isfinite(values)):
        raise ConfigError("dataset.task", f"regression for a target with missing or non-finite values "
                          f"({int((~np.isfinite(values)).sum())} rows)", task)
    distinct = len(np.unique(values))
    if task == "binary" and distinct != 2:
        raise ConfigError("dataset.task", f"{'multiclass' if distinct > 2 else 'regression'} for a target "
                          f"with {distinct} distinct value(s) (binary takes exactly 2)", task)
    if task == "multiclass" and distinct < 2:
        raise ConfigError("dataset.task", "regression for a target with one distinct value", task)
    return distinct


def labels(y: np.ndarray) -> np.ndarray:
    """A classification target as labels 0 .. classes - 1: each value's rank among the distinct
    values (labels already 0 .. k - 1 stay as they are); one-hot labels: the column of each row's 1."""
    if is_one_hot(y):
        return np.argmax(np.asarray(y), axis=1).astype(np.float64).reshape(-1, 1)
    _, index = np.unique(np.asarray(y).ravel(), return_inverse=True)
    return index.astype(np.float64).reshape(-1, 1)
