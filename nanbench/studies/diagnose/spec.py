"""A diagnosis's own settings (the ``diagnose:`` section of conf/diagnose.yaml), validated like
every other key, and the composed configuration turned into what the diagnosis starts from: the
run spec, the plain config every change is applied to, and these settings. Bad input fails with
one line naming the key, exit 2, before anything trains or is recorded."""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from typing import Any, Mapping

from nanbench.spec import ConfigError, RunSpec, from_config
from nanbench.validate import check_name

CONFIG_NAME = "diagnose"   # conf/diagnose.yaml: conf/config.yaml plus the diagnosis's keys


@dataclass(frozen=True)
class DiagnoseSpec:
    """How one diagnosis runs (the `diagnose:` section of conf/diagnose.yaml)."""

    name: str | None = None          # results folder and parent run name; None: <dataset>-<config hash>
    out: str = "results/diagnose"    # folder holding one folder per diagnosis
    seeds: int = 3                   # seeds every try trains at (train.seed and the next ones)
    history: int = 10                # gradient norms printed from before the first non-finite step
    pairs: bool = True               # try pairs when no single change makes the model train in every seed
    pair_candidates: int = 5         # singles (best first) the pairs are drawn from
    boundary: bool = True            # search the largest stable learning rate (and the largest that trains) too
    boundary_precision: float = 0.25  # that search's rel_precision
    boundary_evaluations: int = 16   # that search's max_evaluations


def diagnose_spec(values: Mapping[str, Any] | None) -> DiagnoseSpec:
    """Validate the `diagnose:` section; a bad value raises ConfigError naming the key."""
    from nanbench.validate import check_number

    d = dict(values or {})
    names = {f.name for f in dataclasses.fields(DiagnoseSpec)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ConfigError(f"diagnose.{unknown[0]}", "one of the keys " + ", ".join(sorted(names)), d[unknown[0]])
    name = d.get("name")
    if name is not None:  # the report's folder under diagnose.out: one path component
        check_name("diagnose.name", name)
    if not isinstance(d.get("out", "results/diagnose"), str) or not d.get("out", "x"):
        raise ConfigError("diagnose.out", "a folder path", d.get("out"))
    check_number("diagnose.seeds", d.get("seeds", 3), low=3, integer=True)
    check_number("diagnose.history", d.get("history", 10), low=1, integer=True)
    check_number("diagnose.pair_candidates", d.get("pair_candidates", 5), low=2, integer=True)
    check_number("diagnose.boundary_evaluations", d.get("boundary_evaluations", 16), low=2, integer=True)
    if "boundary_precision" in d:
        d["boundary_precision"] = float(check_number("diagnose.boundary_precision", d["boundary_precision"],
                                                     low=0, low_open=True))
    for key in ("pairs", "boundary"):
        if key in d and not isinstance(d[key], bool):
            raise ConfigError(f"diagnose.{key}", "true or false", d[key])
    return DiagnoseSpec(**d)


def plain_config(cfg) -> dict:
    """The composed config as plain, resolved values (Hydra's own node and the diagnosis's left
    out): what every change of the catalogue is applied to before nanbench.spec.from_config."""
    from omegaconf import DictConfig, OmegaConf

    if isinstance(cfg, DictConfig):
        cfg = {key: OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node
               for key, node in cfg.items_ex(resolve=False) if key != "hydra"}
    return {key: value for key, value in dict(cfg).items() if key not in ("hydra", "diagnose")}


def prepare(cfg) -> tuple[RunSpec, dict, DiagnoseSpec]:
    """Validate a composed config (conf/diagnose.yaml) into the run spec (``train.engine: auto``
    means fused here: the tries share traced graphs), its plain config, and the settings."""
    from omegaconf import DictConfig, OmegaConf

    section = cfg.get("diagnose") if hasattr(cfg, "get") else None
    if isinstance(section, DictConfig):
        section = OmegaConf.to_container(section, resolve=True)
    ds = diagnose_spec(section)
    plain = plain_config(cfg)
    return from_config(plain, multirun=True), plain, ds


def fail(message: str) -> None:
    """Bad input: one line on stderr naming the key, exit status 2."""
    print(f"nanbench.diagnose: error: {message}", file=sys.stderr, flush=True)
    sys.exit(2)
