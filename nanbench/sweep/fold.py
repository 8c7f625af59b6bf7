"""Folding a multirun: Hydra jobs that differ only in runtime numbers become one job's inner loop.

A user who types ``-m optimizer=sgd,adam optimizer.lr=1e-4,1e-3,1e-2 train.seed=0,1,2`` asks
Hydra for 18 jobs. The fused engine traces one graph per structure and takes the learning rate,
the clip threshold, the seed and the other keys of RUNTIME_KEYS at run time, so those 18 jobs are
2 structures of 9 runs each. Folding groups the jobs by everything else: each group becomes one
Hydra job (its shared overrides plus ``sweep.fold=<index>``), and the runtime values of its
members go into a table in the sweep folder (FOLDS_FILE) that the job loops over, inside
``sweep.inner`` (nanbench.sweep.expand). Hydra's per-job cost and the trace are then paid per
structure, whatever the user typed. Every run keeps its own configuration, hash and record: the
runs of a folded job are exactly the jobs it replaced.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any, Sequence

FOLDS_FILE = "nanbench_folds.json"
FOLD_KEY = "sweep.fold"
# Keys the fused engine takes at run time (nanbench.engines.fused: numbers fed to the traced
# function, or data it is given), and the outcome thresholds, which only classify. A job that
# differs from another only in these can share its traced graph.
RUNTIME_KEYS = frozenset({
    "optimizer.lr", "clipping.threshold",
    "train.seed", "train.epochs", "train.steps", "train.batch_size", "train.shuffle",
    "dataset.seed", "dataset.noise", "dataset.n_samples", "dataset.outlier_fraction",
    "dataset.outlier_scale_min", "dataset.outlier_scale_max", "dataset.nan_fraction",
    "dataset.scale_min", "dataset.scale_max", "dataset.target_offset",
    "outcome.diverge_factor", "outcome.converge_ratio", "outcome.converge_abs",
    "outcome.improve_fraction",
    "clipping.kind",  # taken per run when runs train side by side (nanbench.engines.batched)
})
# Config groups whose every option file only sets runtime keys: choosing one (``clipping=clipnorm``)
# is the same as setting its keys, so jobs that differ only in it fold too.
RUNTIME_GROUPS = frozenset({"clipping"})


def _split(override: str) -> tuple[str, str]:
    key, _, value = override.partition("=")
    return key, value


def _value(override: str) -> Any:
    """The typed value of a ``key=value`` override, as Hydra's own parser reads it."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    return OverridesParser.create().parse_override(override).value()


def foldable(override: str) -> bool:
    """A plain ``key=value`` override of a runtime key (no ``+``/``~``), or the choice of an
    option of a runtime group whose file in conf/ sets only runtime keys."""
    key, value = _split(override)
    if key in RUNTIME_GROUPS:
        return group_values(key, value) is not None
    return key in RUNTIME_KEYS and value != ""


@functools.lru_cache(maxsize=None)  # an option file per (group, option), read once per process
def _group_values(group: str, option: str) -> tuple | None:
    """group_values as (key, value) pairs: hashable, so each option file is read once."""
    from omegaconf import OmegaConf
    from nanbench.config import CONF_DIR
    path = Path(CONF_DIR) / group / f"{option}.yaml"
    if not option or not path.is_file():
        return None
    values = OmegaConf.to_container(OmegaConf.load(path))
    if not isinstance(values, dict) or any(f"{group}.{k}" not in RUNTIME_KEYS for k in values):
        return None
    return tuple((f"{group}.{k}", v) for k, v in values.items())


def group_values(group: str, option: str) -> dict[str, Any] | None:
    """The dotted keys and values the option file conf/<group>/<option>.yaml sets, when they are
    all runtime keys (else None: the choice stays a Hydra override)."""
    values = _group_values(group, option)
    return dict(values) if values is not None else None


def _values(job: Sequence[str]) -> dict[str, Any]:
    """A job's runtime values: its groups' option values first, then its keys (Hydra, too,
    applies key overrides on top of the chosen options)."""
    groups, keys = {}, {}
    for o in job:
        if foldable(o):
            key, value = _split(o)
            if key in RUNTIME_GROUPS:
                groups.update(group_values(key, value))
            else:
                keys[key] = _value(o)
    return {**groups, **keys}


def fold(jobs: Sequence[Sequence[str]]) -> tuple[list[list[str]], list[list[dict[str, Any]]]]:
    """Group `jobs` (lists of override strings) by their overrides outside RUNTIME_KEYS.

    Returns the folded jobs (shared overrides plus ``sweep.fold=i``, in the order their first
    member came) and the fold table: for job i, the runtime values of each member it replaced.
    A group of one job is folded too (its table has one row), so every job reads its runs the
    same way; jobs with no runtime override at all are left as they are."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for job in jobs:
        fixed = tuple(o for o in job if not foldable(o))
        values = _values(job)
        groups.setdefault(fixed, []).append(values)
    folded, table = [], []
    for fixed, rows in groups.items():
        if rows == [{}]:
            folded.append(list(fixed))
            continue
        folded.append([*fixed, f"{FOLD_KEY}={len(table)}"])
        table.append(rows)
    return folded, table


def write_table(sweep_dir: Path, table: list[list[dict[str, Any]]]) -> None:
    (sweep_dir / FOLDS_FILE).write_text(json.dumps(table))


def rows(sweep_dir: Path, index: int | None) -> list[dict[str, Any]]:
    """The runtime values of fold `index` ([{}] for a job that was not folded)."""
    if index is None:
        return [{}]
    return json.loads((sweep_dir / FOLDS_FILE).read_text())[index]
