"""A sweep's grid: the runs of a job, and everything about the grid checked before anything is
recorded (``sweep.inner``, every value of every axis composed once, the device), so that a bad
sweep is one line and exit 2 with nothing written; and the grid's fingerprint, which says when a
re-run has nothing to do."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any, Iterator

from omegaconf import DictConfig, OmegaConf

from nanbench.sweep.fold import RUNTIME_KEYS


def experiment_name(cfg: DictConfig) -> str:
    return cfg.sweep.name or cfg.tracking.experiment


def tracking_spec(cfg: DictConfig):
    """The store a sweep records into, as the key of its process's Tracker (tracker_for)."""
    from nanbench.spec import TrackingSpec
    return TrackingSpec(**OmegaConf.to_container(cfg.tracking, resolve=True))


def inner_grid(cfg: DictConfig) -> list[dict[str, Any]]:
    """The combinations of ``sweep.inner`` as dicts of dotted key -> value ([{}] when empty)."""
    inner = OmegaConf.to_container(cfg.sweep.inner, resolve=True) if cfg.sweep.inner else {}
    keys = list(inner)
    values = [v if isinstance(v, list) else [v] for v in inner.values()]
    return [dict(zip(keys, combo)) for combo in itertools.product(*values)]


def expand(cfg: DictConfig, folded: list[dict[str, Any]] | None = None) -> list[dict]:
    """A job's runs as plain config dicts: the job's config with each of its folded rows (the
    runtime values and data-group nodes of the Hydra jobs it replaced, nanbench.sweep.fold) and
    each inner combination applied."""
    return list(iter_runs(cfg, folded))


def iter_runs(cfg: DictConfig, folded: list[dict[str, Any]] | None = None) -> Iterator[dict]:
    """expand's runs one at a time (a job checks each and keeps only its spec: a whole config
    per run held at once took ~8 KB a run, 0.8 GB for a grid of 10^5)."""
    base = OmegaConf.to_container(cfg, resolve=True)
    base.pop("hydra", None)
    for combo in ({**row, **inner} for row in folded or [{}] for inner in inner_grid(cfg)):
        run = json.loads(json.dumps(base))
        for dotted, value in combo.items():
            node = run
            *parents, leaf = dotted.split(".")
            for key in parents:
                node = node[key]
            # a data group's node (a dict): each run its own copy
            node[leaf] = json.loads(json.dumps(value)) if isinstance(value, dict) else value
        yield run


def grid_size(cfg: DictConfig) -> int:
    """The sweep's runs: its grid's combinations (the product of its axes' lengths, each axis
    counted once: a key given both in the sweep file and on the command line is the command
    line's, as Hydra's sweeper takes it) times its inner grid's. Counted without listing any
    axis's values, so that a grid of 10^8 runs is counted in microseconds."""
    size = 1
    for values in inner_axes(cfg).values():
        size *= len(values)
    for o in grid_axes(cfg).values():
        size *= axis_length(o)
    return size


def grid_axes(cfg: DictConfig) -> dict:
    """The grid's axes as Hydra's basic sweeper takes them: the sweep file's params, then the
    command line's, by key, a key given twice taking its last value (the command line's)."""
    return {o.get_key_element(): o for o in parser().parse_overrides(grid_overrides(cfg))}


def axis_length(override) -> int:
    """The values of one axis (an Override), computed, not listed (``range(0, 10**8)`` is one
    number): a plain value is 1, a choice its length, a range its count as Hydra steps it."""
    import decimal
    import math

    from hydra.core.override_parser.types import ChoiceSweep, RangeSweep
    if not override.is_sweep_override():
        return 1
    value = override.value()
    if isinstance(value, RangeSweep):
        r = value.range()
        if isinstance(r, range):
            return len(r)
        if not r.step:
            return 0
        return max(0, math.ceil((decimal.Decimal(r.stop) - decimal.Decimal(r.start)) / decimal.Decimal(r.step)))
    if isinstance(value, ChoiceSweep):
        return len(value.list)
    if isinstance(value, list):
        return len(value)
    return len(list(override.sweep_string_iterator()))  # glob(...): the group's options


def inner_axes(cfg: DictConfig) -> dict[str, list]:
    inner = OmegaConf.to_container(cfg.sweep.inner, resolve=True) if cfg.sweep.inner else {}
    return {k: v if isinstance(v, list) else [v] for k, v in inner.items()} if isinstance(inner, dict) else {}


MAX_RUNS_DEFAULT = 1_000_000


def check_size(cfg: DictConfig) -> None:
    """A grid of more runs than ``sweep.max_runs`` is refused, with its count, before anything
    is composed or listed per value (a grid of 10^8 runs took 11.7 GB listing its jobs)."""
    from nanbench.validate import check_number, config_error
    limit = check_number("sweep.max_runs", cfg.sweep.get("max_runs", MAX_RUNS_DEFAULT), low=1, integer=True)
    size = grid_size(cfg)
    if size > limit:
        raise config_error("sweep.max_runs", f"this grid has {size} runs, more than sweep.max_runs={limit}; "
                           "give its axes fewer values, or raise sweep.max_runs (a job holds each of its "
                           "runs' specs, ~4 KB each, before it trains)")


def parser():
    """Hydra's override parser with this process's config loader, which a ``glob(*)`` axis needs
    (it lists the group's options)."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser
    hydra = GlobalHydra.instance()
    return OverridesParser.create(config_loader=hydra.config_loader() if hydra.is_initialized() else None)


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in d.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def one_line(exc: BaseException) -> str:
    """An exception's message on one line, without SQLAlchemy's statement and parameters."""
    text = str(exc).split("[SQL:", 1)[0].split("(Background on this error", 1)[0]
    return " ".join(text.split())[:500]


def check_inner(cfg: DictConfig) -> None:
    """``sweep.inner`` must be flat ({dotted.key: [values]}), name keys the config has, give at
    least one run, and share no key with the grid (the inner value would silently win);
    ``sweep.side_by_side`` is a whole number >= 1."""
    from nanbench.spec import ConfigError
    from nanbench.validate import check_number
    check_number("sweep.side_by_side", cfg.sweep.get("side_by_side", 1), low=1, integer=True)
    inner = OmegaConf.to_container(cfg.sweep.inner, resolve=True) if cfg.sweep.inner else {}
    if not isinstance(inner, dict):
        raise ConfigError("sweep.inner", "a mapping {dotted.key: [values]}", inner)
    for key, values in inner.items():
        if isinstance(values, dict):
            sub = next(iter(values), "KEY")
            raise ConfigError(f"sweep.inner.{key}", "a list of values under a dotted key (a nested "
                              f"mapping replaces the whole {key} group): write "
                              f"'sweep.inner={{{key}.{sub}:[...]}}'", values)
        if isinstance(values, list) and not values:
            raise ConfigError(f"sweep.inner.{key}", "a non-empty list of values", values)
    grid = {override_key(o) for o in grid_overrides(cfg)}
    both = sorted(grid & set(inner))
    if both:
        raise ConfigError(both[0], "set in one place: the grid (the command line or hydra.sweeper.params) "
                          "or sweep.inner", "set in both")


def override_key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~").split("@", 1)[0]


def grid_overrides(cfg: DictConfig) -> list[str]:
    """The sweep's grid as Hydra's sweeper gets it: the file's sweeper params, then the command line's."""
    params = cfg.hydra.sweeper.get("params") or {}
    return [f"{k}={v}" for k, v in params.items()] + list(cfg.hydra.overrides.task)


def grid_fingerprint(cfg: DictConfig) -> str:
    """What decides a sweep's set of configurations: the config files (every YAML file of the
    config search path's folders), the sweep file's name, the grid and the command line (less
    where results go and how jobs are launched), and nanbench's validation code (spec.py, validate.py)."""
    import hashlib
    digest = hashlib.sha256()
    for source in cfg.hydra.runtime.get("config_sources", []):
        folder = str(source.get("path") or "").removeprefix("file://")
        if source.get("schema") == "file" and folder and Path(folder).is_dir():
            for path in sorted(Path(folder).rglob("*.yaml")):
                digest.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes())
    from nanbench import spec, validate
    for module in (spec, validate):
        digest.update(Path(module.__file__).read_bytes())
    digest.update(str(cfg.hydra.job.config_name).encode())
    for name in user_file_digests(cfg):
        digest.update(b"\0" + name.encode())
    ignored = ("hydra.", "hydra/", "sweep.results_dir", "sweep.summarize", "sweep.wait", "sweep.max_runs", "tracking.uri")
    for override in sorted(o for o in grid_overrides(cfg) if not override_key(o).startswith(ignored)):
        digest.update(b"\0" + override.encode())
    return digest.hexdigest()[:32]


USER_FILE_KEYS = ("dataset.path", "model.path", "model.builder")  # a user's data and model (their files)


def user_file_digests(cfg: DictConfig) -> list[str]:
    """The digests of the user's files the grid names (dataset.path, model.path, the builder's
    module, in the config or on a grid axis): a changed file makes another grid, whose runs are
    other configurations (their digests are factors), so "nothing to do" must not answer it."""
    from nanbench import user_data, user_model
    from nanbench.spec import ConfigError
    values = {(key, str(value)) for key in USER_FILE_KEYS
              for value in [OmegaConf.select(cfg, key, default=None)] if value}
    for override in grid_overrides(cfg):
        key = override_key(override)
        if key in USER_FILE_KEYS:
            values |= {(key, v.strip()) for v in override.split("=", 1)[1].split(",") if v.strip()}
    digests = []
    for key, value in sorted(values):
        try:
            path = str(Path(value).expanduser().resolve())
            digests.append(f"{key}={value}:" + (user_model.builder_digest(value) if key == "model.builder"
                                                 else user_data.keras_digest(path) if key == "model.path"
                                                 else user_data.digest(path)))
        except (ConfigError, OSError):
            continue  # not there: the job that names it fails validation itself
    return digests


def check_jobs(cfg: DictConfig) -> None:
    """Compose jobs of the grid before anything is recorded: as many as the longest grid axis has
    values, the i-th job taking each axis's i-th value (cycling), so that every value of every
    axis is composed once (an unknown option, a missing key or a bad device in any job stops
    the sweep here with one line, not with a RUNNING parent run); an axis of numbers of a
    RUNTIME_KEYS key is composed with its first value only (any number of the key composes alike)."""
    from hydra.core.global_hydra import GlobalHydra

    from nanbench.validate import check_device
    from nanbench.spec import ConfigError

    axes: dict[str, list[str]] = {}
    for o in parser().parse_overrides(grid_overrides(cfg)):
        key = o.get_key_element()
        if not o.is_sweep_override():
            axes[key] = [f"{key}={o.get_value_element_as_str()}"]
        elif o.is_discrete_sweep():
            axes[key] = [f"{key}={v}" for v in o.sweep_string_iterator()]
        else:
            raise ConfigError(key, "a comma-separated list of values (hydra/sweeper=nanbench is Hydra's "
                              "basic sweeper)", o.input_line)
        if not axes[key]:
            raise ConfigError(key, "a grid axis with at least one value", o.input_line)
    swept = {k for k, v in axes.items() if len(v) > 1}
    for key, values in axes.items():
        # the numbers of a key the engines take at run time (learning rates, seeds) compose alike:
        # one stands for them all (train.seed=range(100) is not composed a hundred times)
        if key in RUNTIME_KEYS and all(_number(v.split("=", 1)[1]) for v in values):
            axes[key] = values[:1]
    loader = GlobalHydra.instance().config_loader()
    _composed.clear()  # only the latest sweep's
    composed_here = _composed.setdefault(_signature(cfg), [])
    for i in range(max((len(v) for v in axes.values()), default=1)):
        job = [values[i % len(values)] for values in axes.values()]
        try:
            composed = loader.load_sweep_config(cfg, job)
            composed_here.append((frozenset(job), composed))
        except Exception as exc:  # noqa: BLE001 - Hydra's own message: the option, and the ones there are
            shown = " ".join(o for o in job if o.split("=", 1)[0] in swept) or "(defaults)"
            reason = one_line(exc).split(" Config search path")[0]
            raise ConfigError(f"the job {shown}", "one Hydra can compose", reason) from None
        check_device(composed.train.device)
        if composed.sweep.inner:
            check_inner_values(composed)
        check_user_files(composed)


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


# check_jobs' compositions by sweep (_signature): each job's overrides and its config
_composed: dict[tuple, list[tuple[frozenset, DictConfig]]] = {}


def _signature(cfg: DictConfig) -> tuple:
    return (str(cfg.hydra.job.config_name), str(cfg.hydra.runtime.get("config_sources")), tuple(grid_overrides(cfg)))


def composed_with(cfg: DictConfig, override: str) -> DictConfig | None:
    """A job of sweep `cfg` that check_jobs composed and that has `override` (None if none): the
    sweeper's fold reads the data groups' nodes from these (nanbench.sweep.fold.data_nodes)
    instead of composing each option once more."""
    return next((composed for job, composed in _composed.get(_signature(cfg), []) if override in job), None)


# what is wrong with a user's file or model stops the sweep (an invalid combination of options,
# such as an LSTM on a table, stays a FAILED run of its own)
USER_FILE_ERRORS = ("dataset.path", "dataset.target", "dataset.digest", "model.path", "model.builder",
                    "model.digest", "model.reinit")


def check_base(cfg: DictConfig) -> None:
    """The sweep's own config validated whole (a bad value stops the sweep with its one line). A
    user's file named only on a grid axis (``dataset.path=a.csv,b.csv``) is not in this config:
    what its absence makes wrong is left to check_jobs, which composes every value of every axis."""
    from nanbench.run import check_user_model
    from nanbench.spec import ConfigError, from_config
    from nanbench.validate import check_name
    # the experiment's name is the summary's folder under sweep.results_dir
    check_name("sweep.name" if cfg.sweep.name else "tracking.experiment", experiment_name(cfg))
    try:
        check_user_model(from_config(cfg, multirun=True))
    except ConfigError as exc:
        axes = {override_key(o) for o in grid_overrides(cfg)}
        if exc.key in USER_FILE_ERRORS and any(a in ("dataset", "model") or a.startswith(("dataset.", "model."))
                                               for a in axes):
            return
        raise


def check_user_files(cfg: DictConfig) -> None:
    """A composed job on a user's data or model (dataset=csv / npz, model=keras / builder) is
    validated whole: a missing or unreadable file, an unknown column, a builder that raises or a
    model that does not fit the data is its one-line ConfigError before anything is recorded."""
    from nanbench.run import check_user_model
    from nanbench.spec import USER_MODELS, ConfigError, from_config
    if cfg.dataset.get("generator") not in ("csv", "npz") and cfg.model.get("name") not in USER_MODELS:
        return
    try:
        check_user_model(from_config(cfg, multirun=True))
    except ConfigError as exc:
        if exc.key in USER_FILE_ERRORS:
            raise


def check_inner_values(cfg: DictConfig) -> None:
    """A composed job's inner grid has at least one run, and names keys the job's config has (a
    key may belong to a group the grid chooses, e.g. dataset.nan_fraction of dataset=nan_inputs)."""
    from nanbench.spec import ConfigError
    if not inner_grid(cfg):
        raise ConfigError("sweep.inner", "lists of values giving at least one run", "no runs")
    for key in cfg.sweep.inner:
        if OmegaConf.select(cfg, key, default="__missing__") == "__missing__":
            raise ConfigError(f"sweep.inner.{key}", "a key of the config (e.g. optimizer.lr, train.seed)", key)
