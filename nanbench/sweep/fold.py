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

The choice of a data group (DATA_GROUPS: dataset, preprocess) folds too: it decides only the
numbers a run trains on, and their shape, which the job's runs are grouped by before they train
(nanbench.run.execute_calls). Its row carries the group's whole node as Hydra composed it for that
option (data_nodes), which replaces the job's node: so ``-m dataset=clean,outliers,unscaled`` is
one job, and the default sweep's 224 jobs are 16.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

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
    "outcome.improve_fraction", "outcome.target_ratio",
    "clipping.kind",  # taken per run when runs train side by side (nanbench.engines.batched)
})
# Config groups whose every option file only sets runtime keys: choosing one (``clipping=clipnorm``)
# is the same as setting its keys, so jobs that differ only in it fold too.
RUNTIME_GROUPS = frozenset({"clipping"})
# Config groups whose choice decides only the data a run trains on: a choice folds as the group's
# composed node (data_nodes), where nothing else on the grid can write into the group.
DATA_GROUPS = ("dataset", "preprocess")


def _split(override: str) -> tuple[str, str]:
    key, _, value = override.partition("=")
    return key, value


def _value(override: str) -> Any:
    """The typed value of a ``key=value`` override, as Hydra's own parser reads it."""
    return copy.deepcopy(_parsed(override))


# plain decimal numbers, read as Hydra's grammar reads them (an int without leading zeros; a float
# with a point or an exponent); anything else goes to Hydra's parser
_INT = re.compile(r"[+-]?(0|[1-9][0-9]*)")
_FLOAT = re.compile(r"[+-]?((0|[1-9][0-9]*)\.[0-9]*|\.[0-9]+|(0|[1-9][0-9]*)(?=[eE]))([eE][+-]?[0-9]+)?")


@functools.lru_cache(maxsize=None)  # a grid repeats each value in many jobs; parsing one costs milliseconds
def _parsed(override: str) -> Any:
    value = override.partition("=")[2]
    if _INT.fullmatch(value):  # a range's values: Hydra's parser took 79 s for 10^5 of them
        return int(value)
    if _FLOAT.fullmatch(value):
        return float(value)
    from hydra.core.override_parser.overrides_parser import OverridesParser
    return OverridesParser.create().parse_override(override).value()


def foldable(override: str, nodes: Mapping[str, dict] | None = None) -> bool:
    """A plain ``key=value`` override of a runtime key (no ``+``/``~``), the choice of an
    option of a runtime group whose file in conf/ sets only runtime keys, or a data group's
    choice whose composed node `nodes` holds."""
    key, value = _split(override)
    if nodes and override in nodes:
        return True
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


def _values(job: Sequence[str], nodes: Mapping[str, dict] | None = None) -> dict[str, Any]:
    """A job's runtime values: its data groups' nodes and its groups' option values first, then
    its keys (Hydra, too, applies key overrides on top of the chosen options)."""
    groups, keys = {}, {}
    for o in job:
        if foldable(o, nodes):
            key, value = _split(o)
            if nodes and o in nodes:
                groups[key] = nodes[o]
            elif key in RUNTIME_GROUPS:
                groups.update(group_values(key, value))
            else:
                keys[key] = _value(o)
    return {**groups, **keys}


def fold(jobs: Sequence[Sequence[str]], nodes: Mapping[str, dict] | None = None,
         ) -> tuple[list[list[str]], list[list[dict[str, Any]]]]:
    """Group `jobs` (lists of override strings) by their overrides outside RUNTIME_KEYS and the
    data groups' choices `nodes` holds (data_nodes).

    Returns the folded jobs (shared overrides plus ``sweep.fold=i``, in the order their first
    member came) and the fold table: for job i, the runtime values of each member it replaced.
    A folded job keeps its first member's data-group choices, so that Hydra composes a config
    one of its runs has (every key a shared override names exists in it). A group of one job is
    folded too (its table has one row), so every job reads its runs the same way; jobs with no
    runtime override at all are left as they are."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    first: dict[tuple[str, ...], list[str]] = {}
    for job in jobs:
        fixed = tuple(o for o in job if not foldable(o, nodes))
        groups.setdefault(fixed, []).append(_values(job, nodes))
        first.setdefault(fixed, [o for o in job if nodes and o in nodes])
    folded, table = [], []
    for fixed, rows in groups.items():
        if rows == [{}]:
            folded.append(list(fixed))
            continue
        folded.append([*fixed, *first[fixed], f"{FOLD_KEY}={len(table)}"])
        table.append(rows)
    return folded, table


def data_nodes(jobs: Sequence[Sequence[str]], compose: Callable[[str, Sequence[str]], Any],
               repository) -> dict[str, dict]:
    """The composed node of each option a swept data group takes on this grid, by override
    (``"dataset=outliers"`` -> the ``dataset`` node of a job that chose it), for fold.

    A choice folds as its node only where that node is the same in every job that makes it:
    every swept group's options on the grid (their files, and the files they inherit from
    their own group) write only into their own group and choose no other group's option (a
    ``# @package _global_`` case file that sets ``dataset`` does not fold), and the node has no
    interpolation (its value could depend on another axis). Then the node is the group's
    option file, merged with what the primary config and the command line set in the group,
    and ``compose(override, job)`` (a Hydra composition of a job that makes the choice: the
    sweep's checks have made one per option already, nanbench.sweep.grid.composed_with) gives
    it exactly."""
    from omegaconf import OmegaConf
    axes: dict[str, set[str]] = {}
    for job in jobs:
        for o in job:
            key, value = _split(o)
            axes.setdefault(key, set()).add(value)
    swept = {key: values for key, values in axes.items() if len(values) > 1}
    groups = {key: values for key, values in swept.items() if repository.group_exists(key)}
    if not any(g in groups for g in DATA_GROUPS):
        return {}
    if not all(_own_package(repository, group, option) for group, values in groups.items()
               if group not in RUNTIME_GROUPS for option in values):
        return {}
    nodes: dict[str, dict] = {}
    for group in (g for g in DATA_GROUPS if g in groups):
        if any(key.lstrip("+~").startswith(f"{group}.") and key not in RUNTIME_KEYS for key in swept):
            continue  # a key of the group swept on its own (dataset.n_features=4,10): in the node
        found = {}
        for option in sorted(groups[group]):
            override = f"{group}={option}"
            job = next(j for j in jobs if override in j)
            node = compose(override, job)[group]
            raw = OmegaConf.to_container(node, resolve=False)
            if raw != OmegaConf.to_container(node, resolve=True):
                break  # an interpolation: the node may differ from job to job
            found[override] = raw
        else:
            nodes.update(found)
    return nodes


def _own_package(repository, group: str, option: str) -> bool:
    """Whether config ``group/option``, and every file it inherits from its own group, writes
    only into the group's package and chooses no option of any group."""
    from hydra.core.default_element import ConfigDefault
    result = repository.load_config(f"{group}/{option}")
    if result is None or (result.header or {}).get("package") not in (None, group):
        return False
    for default in result.defaults_list or []:
        if not isinstance(default, ConfigDefault):
            return False  # a group's option chosen (``override /dataset: digits``)
        if default.path == "_self_":
            continue
        if default.path is None or default.path.startswith("/") or default.package is not None:
            return False
        if not _own_package(repository, group, default.path):
            return False
    return True


def write_table(sweep_dir: Path, table: list[list[dict[str, Any]]]) -> None:
    (sweep_dir / FOLDS_FILE).write_text(json.dumps(table))


def rows(sweep_dir: Path, index: int | None) -> list[dict[str, Any]]:
    """The runtime values of fold `index` ([{}] for a job that was not folded)."""
    if index is None:
        return [{}]
    return json.loads((sweep_dir / FOLDS_FILE).read_text())[index]
