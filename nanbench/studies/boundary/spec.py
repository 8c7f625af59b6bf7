"""A boundary search's own settings (the ``boundary:`` section of conf/boundary.yaml), validated
like every other key: a bad value fails with one line naming the key and what is allowed, exit 2,
before anything trains."""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from typing import Any, Mapping

from nanbench.spec import ConfigError, RunSpec, from_config

CONFIG_NAME = "boundary"   # conf/boundary.yaml: conf/config.yaml plus the search's keys


@dataclass(frozen=True)
class BoundarySpec:
    """How one search runs (the `boundary:` section of conf/boundary.yaml)."""

    lr_low: float = 1e-8          # smallest learning rate tried
    lr_high: float = 10.0         # largest learning rate tried
    lr_start: float | None = None  # first learning rate tried; None: the spec's optimizer.lr
    growth_factor: float = 10.0   # bracketing step, a factor > 1
    rel_precision: float = 0.05   # stop once lr_min_unstable / lr_max_stable <= 1 + rel_precision
    max_evaluations: int = 40     # cap on training runs per search


def boundary_spec(values: Mapping[str, Any] | None) -> BoundarySpec:
    """Validate the `boundary:` section; a bad value raises ConfigError naming the key."""
    from nanbench.validate import check_number

    b = dict(values or {})
    names = {f.name for f in dataclasses.fields(BoundarySpec)}
    unknown = sorted(set(b) - names)
    if unknown:
        raise ConfigError(f"boundary.{unknown[0]}", "one of the keys " + ", ".join(sorted(names)),
                          b[unknown[0]])
    for key in ("lr_low", "lr_high", "growth_factor", "rel_precision"):
        if key in b:
            b[key] = float(check_number(f"boundary.{key}", b[key], low=0, low_open=True))
    spec = BoundarySpec(**b)
    if spec.lr_high <= spec.lr_low:
        raise ConfigError("boundary.lr_high", f"> boundary.lr_low ({spec.lr_low:g})", spec.lr_high)
    if spec.growth_factor <= 1:
        raise ConfigError("boundary.growth_factor", "> 1", spec.growth_factor)
    if spec.lr_start is not None:
        start = float(check_number("boundary.lr_start", spec.lr_start, low=spec.lr_low, high=spec.lr_high))
        spec = dataclasses.replace(spec, lr_start=start)
    check_number("boundary.max_evaluations", spec.max_evaluations, low=2, integer=True)
    return spec


def prepare(cfg) -> tuple[RunSpec, BoundarySpec]:
    """Validate a composed config (conf/boundary.yaml) into the run spec and the search spec."""
    from omegaconf import DictConfig, OmegaConf

    spec = from_config(cfg)
    from nanbench.run import check_user_model
    check_user_model(spec)  # a user's model against the data, before anything is recorded
    section = cfg.get("boundary") if hasattr(cfg, "get") else None
    if isinstance(section, DictConfig):
        section = OmegaConf.to_container(section, resolve=True)
    return spec, boundary_spec(section)


def fail(message: str) -> None:
    """Bad input: one line on stderr naming the key (or the job), exit status 2."""
    print(f"nanbench.studies.boundary: error: {message}", file=sys.stderr, flush=True)
    sys.exit(2)
