"""Stability boundary: the largest learning rate at which one configuration trains stably.

A search brackets the boundary on a log scale (steps of ``growth_factor`` from the starting
learning rate) and then bisects in log space until ``lr_min_unstable / lr_max_stable <= 1 +
rel_precision``. Every evaluation is a real training run (``nanbench.run.execute``) of the same
spec with another learning rate; with the fused engine all of them reuse one traced graph.

"Stable" means the run's outcome is ``converged``, ``improving`` or ``stalled``: finite throughout,
and its final loss over the whole training set not above ``outcome.diverge_factor`` times the
initial one (nanbench.forensics.classify).
Outcomes ``nan``, ``inf``, ``diverged`` and ``error`` are unstable. The search assumes stability is
monotone in the learning rate (stable below some lr, unstable above); it reports what it measured
and, where no change of outcome lies inside [lr_low, lr_high], says so instead of inventing a boundary.

Theory oracle (:func:`theory`): for Dense(1) with bias, Keras's mean-reduced MSE and full-batch
gradient descent, the loss is quadratic with Hessian H = (2/n) X~^T X~, X~ = [X, 1]. GD is stable
iff lr < 2 / lambda_max(H); with heavy-ball momentum beta (Keras SGD(momentum=beta)) iff
lr < 2 (1 + beta) / lambda_max(H) (Cohen et al. 2021, "Gradient descent on neural networks
typically occurs at the edge of stability", footnote 3; Goh 2017, "Why Momentum Really Works").

Ways to run it:

- ``python -m nanbench.studies.boundary [hydra overrides]``: one search; the last stdout line is JSON.
- ``python -m nanbench.studies.boundary --grid sweeps/boundaries.yaml --out results``: one search per job
  of a Hydra sweep file, each composed with Hydra's compose API, all validated before any trains;
  writes ``boundaries.json``, ``boundaries.md`` and ``boundaries.png`` (nanbench.studies.boundary.report).
- ``python -m nanbench.studies.boundary -m --config-dir sweeps --config-name boundaries``: the same jobs
  as a Hydra multirun; :class:`BoundaryCallback` writes the table into Hydra's sweep folder.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from nanbench.vocab import STABLE_OUTCOMES, UNSTABLE_OUTCOMES
from nanbench.config import CONF_DIR
from nanbench.spec import ConfigError, RunSpec, _number, from_config

CONFIG_DIR = str(CONF_DIR)
CONFIG_NAME = "boundary"
ROLE = "nanbench.role"  # the tag nanbench.sweep uses too: "search" (parent) / "evaluation" (child) here


def is_stable(outcome: str) -> bool:
    """Stable iff the run stayed finite and its loss did not grow past diverge_factor x its start."""
    return outcome in STABLE_OUTCOMES


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
    b = dict(values or {})
    names = {f.name for f in dataclasses.fields(BoundarySpec)}
    unknown = sorted(set(b) - names)
    if unknown:
        raise ConfigError(f"boundary.{unknown[0]}", "one of the keys " + ", ".join(sorted(names)),
                          b[unknown[0]])
    for key in ("lr_low", "lr_high", "growth_factor", "rel_precision"):
        if key in b:
            b[key] = float(_number(f"boundary.{key}", b[key], low=0, low_open=True))
    spec = BoundarySpec(**b)
    if spec.lr_high <= spec.lr_low:
        raise ConfigError("boundary.lr_high", f"> boundary.lr_low ({spec.lr_low:g})", spec.lr_high)
    if spec.growth_factor <= 1:
        raise ConfigError("boundary.growth_factor", "> 1", spec.growth_factor)
    if spec.lr_start is not None:
        start = float(_number("boundary.lr_start", spec.lr_start, low=spec.lr_low, high=spec.lr_high))
        spec = dataclasses.replace(spec, lr_start=start)
    _number("boundary.max_evaluations", spec.max_evaluations, low=2, integer=True)
    return spec


# --------------------------------------------------------------------------- the search (pure)

@dataclass(frozen=True)
class Probe:
    """One evaluation of the search."""

    lr: float
    stable: bool
    phase: str  # "bracket" or "bisect"


@dataclass(frozen=True)
class Search:
    """What a search established: the tightest bracket it saw, and how."""

    lr_max_stable: float | None    # largest learning rate found stable (None: none was)
    lr_min_unstable: float | None  # smallest learning rate found unstable (None: none was)
    status: str                    # bracketed | stable_everywhere | unstable_everywhere | max_evaluations
    probes: tuple[Probe, ...] = ()

    @property
    def found(self) -> bool:
        """A boundary lies inside the searched range (both sides measured)."""
        return self.lr_max_stable is not None and self.lr_min_unstable is not None


def search(stable: Callable[[float, str], bool], bs: BoundarySpec, lr_start: float) -> Search:
    """Bracket on a log scale from `lr_start`, then bisect in log space.

    `stable(lr, phase)` trains one run and answers whether it stayed stable. Assumes stability
    is monotone in lr; every point evaluated is kept in `probes`.
    """
    probes: list[Probe] = []
    lo: float | None = None  # largest stable lr seen
    hi: float | None = None  # smallest unstable lr seen

    def probe(lr: float, phase: str) -> bool:
        nonlocal lo, hi
        ok = bool(stable(lr, phase))
        probes.append(Probe(lr=lr, stable=ok, phase=phase))
        if ok:
            lo = lr if lo is None else max(lo, lr)
        else:
            hi = lr if hi is None else min(hi, lr)
        return ok

    def budget_left() -> bool:
        return len(probes) < bs.max_evaluations

    lr = min(max(lr_start, bs.lr_low), bs.lr_high)
    if probe(lr, "bracket"):
        while hi is None and lo < bs.lr_high and budget_left():  # walk up until unstable
            probe(min(lo * bs.growth_factor, bs.lr_high), "bracket")
    else:
        while lo is None and hi > bs.lr_low and budget_left():  # walk down until stable
            probe(max(hi / bs.growth_factor, bs.lr_low), "bracket")
    while lo is not None and hi is not None and hi / lo > 1 + bs.rel_precision and budget_left():
        probe(math.sqrt(lo * hi), "bisect")

    if lo is not None and hi is not None:
        status = "bracketed" if hi / lo <= 1 + bs.rel_precision else "max_evaluations"
    elif hi is None:
        status = "stable_everywhere" if lo >= bs.lr_high else "max_evaluations"
    else:
        status = "unstable_everywhere" if hi <= bs.lr_low else "max_evaluations"
    return Search(lr_max_stable=lo, lr_min_unstable=hi, status=status, probes=tuple(probes))


def describe(result: Search, bs: BoundarySpec) -> str:
    """One plain sentence on what the search found, for tables and logs."""
    if result.status == "bracketed":
        return (f"boundary between {result.lr_max_stable:.3g} (stable) "
                f"and {result.lr_min_unstable:.3g} (unstable)")
    if result.status == "stable_everywhere":
        return f"stable up to lr = {bs.lr_high:g}: no boundary in [{bs.lr_low:g}, {bs.lr_high:g}]"
    if result.status == "unstable_everywhere":
        return f"unstable down to lr = {bs.lr_low:g}: no stable lr in [{bs.lr_low:g}, {bs.lr_high:g}]"
    return (f"stopped after {len(result.probes)} evaluations (boundary.max_evaluations) "
            "before reaching the precision")


# --------------------------------------------------------------------------- theory

@dataclass(frozen=True)
class Theory:
    """The full-batch GD bound, when it applies; else why not."""

    lr: float | None          # 2 (1 + momentum) / lambda_max, or None
    lambda_max: float | None  # largest eigenvalue of the MSE Hessian (2/n) X~^T X~
    reason: str | None        # why the bound does not apply (None when it does)


def lambda_max_mse(X: np.ndarray) -> float:
    """Largest eigenvalue of the Hessian of Keras's mean-reduced MSE for Dense(1) with bias.

    loss(w, b) = (1/n) ||X w + b - y||^2, so H = (2/n) X~^T X~ with X~ = [X, 1]; computed in float64
    from the float32 arrays the run trains on.
    """
    X = np.asarray(X, dtype=np.float64)
    Xt = np.hstack([X, np.ones((X.shape[0], 1))])
    return float(np.linalg.eigvalsh(2.0 / X.shape[0] * Xt.T @ Xt)[-1])


def theory(spec: RunSpec, X: np.ndarray) -> Theory:
    """lr_theory = 2 (1 + beta) / lambda_max(H) where the quadratic full-batch GD model holds."""
    reasons = []
    if spec.model.name != "linear":
        reasons.append(f"model {spec.model.name} is not linear (no closed form)")
    if spec.loss.name != "mse":
        reasons.append(f"loss {spec.loss.name} is not quadratic (no closed form)")
    if spec.optimizer.name not in ("sgd", "momentum"):
        reasons.append(f"optimizer {spec.optimizer.name} is adaptive (no closed form)")
    if spec.clipping.kind != "none":
        reasons.append(f"clipping {spec.clipping.kind} makes the update nonlinear")
    if spec.model.weight_decay > 0:
        reasons.append("weight decay changes the Hessian")
    if spec.train.precision != "float32":
        reasons.append(f"precision {spec.train.precision} is not float32")
    n = X.shape[0]
    if n == 0:
        reasons.append("no rows to train on")
    elif spec.train.batch_size < n:
        reasons.append(f"mini-batch (batch_size {spec.train.batch_size} < {n} rows): "
                       "the full-batch bound does not apply")
    if n and not np.isfinite(X).all():
        reasons.append("inputs hold NaN or inf")
    if reasons:
        return Theory(lr=None, lambda_max=None, reason="; ".join(reasons))
    lam = lambda_max_mse(X)
    if not lam > 0:
        return Theory(lr=None, lambda_max=lam, reason="the Hessian is zero")
    return Theory(lr=2.0 * (1.0 + spec.optimizer.momentum) / lam, lambda_max=lam, reason=None)


# --------------------------------------------------------------------------- one search, trained and tracked

@dataclass
class BoundaryResult:
    """One configuration's search, its theory and where it was recorded."""

    spec: RunSpec
    boundary: BoundarySpec
    search: Search
    theory: Theory
    outcomes: list[str] = field(default_factory=list)     # outcome per probe, in order
    run_ids: list[str | None] = field(default_factory=list)
    steps_per_run: list[int] = field(default_factory=list)
    n_samples: int = 0
    parent_run_id: str | None = None
    train_s: float = 0.0  # seconds in nanbench.run.execute (data, trace, training)
    log_s: float = 0.0    # seconds writing to MLflow
    wall_s: float = 0.0

    def summary(self) -> dict:
        """The JSON a search prints last; numbers are finite or null."""
        s, t, spec = self.search, self.theory, self.spec
        ratio = (s.lr_max_stable / t.lr if t.lr is not None and s.lr_max_stable is not None else None)
        return {
            "lr_max_stable": s.lr_max_stable,
            "lr_min_unstable": s.lr_min_unstable,
            "rel_precision": self.boundary.rel_precision,
            "bracket_ratio": (s.lr_min_unstable / s.lr_max_stable if s.found else None),
            "found": s.found,
            "status": s.status,
            "note": describe(s, self.boundary),
            "lr_theory": t.lr,
            "lambda_max": t.lambda_max,
            "theory_reason": t.reason,
            "measured_over_theory": ratio,
            "evaluations": len(s.probes),
            "history": [{"lr": p.lr, "phase": p.phase, "outcome": o, "run_id": r}
                        for p, o, r in zip(s.probes, self.outcomes, self.run_ids)],
            "lr_low": self.boundary.lr_low,
            "lr_high": self.boundary.lr_high,
            "steps_per_run": max(self.steps_per_run, default=0),
            "epochs": spec.train.epochs,
            "factors": config_factors(spec, self.n_samples),
            "parent_run_id": self.parent_run_id,
            "train_s": self.train_s,
            "log_s": self.log_s,
            "wall_s": self.wall_s,
        }

    def to_json(self) -> str:
        return json.dumps(self.summary(), allow_nan=False)


def config_factors(spec: RunSpec, n_samples: int = 0) -> dict:
    """The factors a boundary table is indexed by (the learning rate is what is searched)."""
    clip = spec.clipping.kind
    if clip != "none":
        clip = f"{clip}={spec.clipping.threshold:g}"
    opt = spec.optimizer.name
    if spec.optimizer.name in ("momentum", "rmsprop") and spec.optimizer.momentum > 0:
        opt = f"{opt} {spec.optimizer.momentum:g}"
    loss = spec.loss.name if spec.loss.name != "huber" else f"huber {spec.loss.delta:g}"
    model = spec.model.name if spec.model.name == "linear" else (
        f"mlp {spec.model.depth}x{spec.model.width} {spec.model.activation}")
    return {"dataset": spec.dataset.name, "preprocess": spec.preprocess.scaler, "model": model,
            "optimizer": opt, "clipping": clip, "loss": loss, "batch_size": spec.train.batch_size,
            "n_samples": n_samples, "full_batch": bool(n_samples) and spec.train.batch_size >= n_samples}


def _start_parent(tracker, spec: RunSpec, bs: BoundarySpec) -> str:
    """The search's own MLflow run; evaluations become its children."""
    from mlflow.entities import Param, RunTag
    from nanbench.tracking import git_commit, run_name, versions

    exp_id = tracker.experiment_id(spec.tracking.experiment)
    name = "boundary · " + run_name(spec).replace(f" lr={spec.optimizer.lr:g}", "")
    run = tracker.client.create_run(exp_id, run_name=name, tags={"mlflow.runName": name})
    params = {k: v for k, v in spec.factors().items() if k != "optimizer.lr"}
    params.update({f"boundary.{k}": v for k, v in dataclasses.asdict(bs).items() if v is not None})
    tags = {ROLE: "search", "engine": spec.train.engine, "git_commit": git_commit(), **versions()}
    tracker.client.log_batch(run.info.run_id, params=[Param(k, str(v)) for k, v in params.items()],
                             tags=[RunTag(k, str(v)) for k, v in tags.items()])
    return run.info.run_id


def _finish_parent(tracker, run_id: str, result: BoundaryResult) -> None:
    from mlflow.entities import Metric, RunTag

    s = result.summary()
    now = int(time.time() * 1000)
    metrics = [Metric(k, float(s[k]), now, 0) for k in
               ("lr_max_stable", "lr_min_unstable", "lr_theory", "lambda_max", "measured_over_theory",
                "bracket_ratio", "evaluations", "wall_s")
               if s[k] is not None and math.isfinite(s[k])]
    tags = {"status": s["status"], "found": str(s["found"]).lower(), "note": s["note"],
            "theory_reason": s["theory_reason"] or "none"}
    tracker.client.log_batch(run_id, metrics=metrics, tags=[RunTag(k, v) for k, v in tags.items()])
    tracker.client.log_text(run_id, json.dumps(s, indent=2), "boundary.json")


def find_boundary(spec: RunSpec, bs: BoundarySpec, *, tracker=None, device: str | None = None) -> BoundaryResult:
    """Search one configuration's stability boundary, recording every evaluation in MLflow.

    With a `tracker`, the search is a parent run in experiment `spec.tracking.experiment` and each
    evaluation a child run (tag mlflow.parentRunId), tagged with its index, phase and stability.
    """
    from nanbench.data import load
    from nanbench.run import execute

    t0 = time.perf_counter()
    try:  # for the theory only; each run loads its own (and records a failure as outcome error)
        data = load(spec.dataset, spec.preprocess)
        oracle, n_samples = theory(spec, data.X), data.n_samples
    except Exception as exc:  # noqa: BLE001 - the runs will say what went wrong
        oracle, n_samples = Theory(lr=None, lambda_max=None, reason=f"data not loaded: {exc}"), 0
    result = BoundaryResult(spec=spec, boundary=bs, search=Search(None, None, "max_evaluations"),
                            theory=oracle, n_samples=n_samples)
    if tracker is not None:
        t = time.perf_counter()
        result.parent_run_id = _start_parent(tracker, spec, bs)
        result.log_s += time.perf_counter() - t

    def stable(lr: float, phase: str) -> bool:
        t = time.perf_counter()
        run = execute(spec.replace(optimizer={"lr": lr}), device)
        result.train_s += time.perf_counter() - t
        ok = is_stable(run.outcome)
        if tracker is not None:
            t = time.perf_counter()
            tags = {ROLE: "evaluation", "boundary.index": str(len(result.outcomes)), "boundary.phase": phase,
                    "boundary.stable": str(ok).lower()}
            run.run_id = tracker.log(run, experiment=spec.tracking.experiment,
                                     parent_run_id=result.parent_run_id, tags=tags)
            result.log_s += time.perf_counter() - t
        result.outcomes.append(run.outcome)
        result.run_ids.append(run.run_id)
        result.steps_per_run.append(run.steps_run)
        return ok

    status = "FAILED"  # a bug inside the search still closes the parent run, marked failed
    try:
        start = bs.lr_start if bs.lr_start is not None else spec.optimizer.lr
        result.search = search(stable, bs, start)
        status = "FINISHED"
    finally:
        result.wall_s = time.perf_counter() - t0  # the parent's metric: the search without closing it
        if tracker is not None:
            t = time.perf_counter()
            if status == "FINISHED":
                _finish_parent(tracker, result.parent_run_id, result)
            tracker.client.set_terminated(result.parent_run_id, status=status)
            result.log_s += time.perf_counter() - t
        result.wall_s = time.perf_counter() - t0
    return result


# --------------------------------------------------------------------------- command line

def fail(message: str) -> None:
    print(f"nanbench.studies.boundary: error: {message}", file=sys.stderr, flush=True)
    sys.exit(2)


def prepare(cfg) -> tuple[RunSpec, BoundarySpec]:
    """Validate a composed config (conf/boundary.yaml) into the run spec and the search spec."""
    from omegaconf import DictConfig, OmegaConf

    spec = from_config(cfg)
    section = cfg.get("boundary") if hasattr(cfg, "get") else None
    if isinstance(section, DictConfig):
        section = OmegaConf.to_container(section, resolve=True)
    return spec, boundary_spec(section)


def run_one(cfg) -> dict:
    """`python -m nanbench.studies.boundary [overrides]`: one search; prints its JSON summary last."""
    from nanbench.run import resolve_device
    from nanbench.tracking import Tracker

    try:
        spec, bs = prepare(cfg)
        tracker = Tracker(spec.tracking)
        device = resolve_device(spec.train.device)
    except ConfigError as exc:
        fail(str(exc))
    result = find_boundary(spec, bs, tracker=tracker, device=device)
    print(result.to_json(), flush=True)
    return result.summary()


def _hydra_app():
    import hydra

    @hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name=CONFIG_NAME)
    def app(cfg) -> dict:
        return run_one(cfg)  # under -m, BoundaryCallback collects the returned summaries

    return app


try:  # Hydra ships the callback base class; keep the module importable without it all the same
    from hydra.experimental.callback import Callback as _Callback
except ImportError:  # pragma: no cover
    _Callback = object


class BoundaryCallback(_Callback):
    """Under `python -m nanbench.studies.boundary -m ...`: collects each job's search summary and writes
    boundaries.{json,md,png} into Hydra's sweep folder when the multirun ends.

    It takes the place of nanbench.sweep.SweepCallback (conf/boundary.yaml), whose per-run parent
    and resume logic are for single training runs, not searches. Jobs report through their return
    value, so the table needs the basic (in-process) launcher; `--grid` needs no launcher at all.
    """

    def __init__(self) -> None:
        self.summaries: list[dict] = []

    def on_job_end(self, config, job_return, **kwargs) -> None:
        from hydra.core.utils import JobStatus

        value = job_return.return_value if job_return.status == JobStatus.COMPLETED else None
        if isinstance(value, dict) and "lr_max_stable" in value:
            self.summaries.append({**value, "overrides": list(job_return.overrides or [])})

    def on_multirun_end(self, config, **kwargs) -> None:
        if not self.summaries:
            return
        from nanbench.studies.boundary.report import write_plot, write_table

        out = Path(str(config.hydra.sweep.dir))
        out.mkdir(parents=True, exist_ok=True)
        (out / "boundaries.json").write_text(json.dumps(self.summaries, indent=1, allow_nan=False) + "\n")
        name = str(config.hydra.job.config_name)
        write_table(self.summaries, out / "boundaries.md",
                    command=f"python -m nanbench.studies.boundary -m --config-name {name} ...")
        write_plot(self.summaries, out / "boundaries.png")
        print(f"nanbench.studies.boundary: {len(self.summaries)} searches; table {out / 'boundaries.md'}", flush=True)


# ----- grid mode

def compose(overrides: list[str]):
    """conf/boundary.yaml composed with `overrides`, exactly as the command line would see it."""
    from hydra import compose as hydra_compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return hydra_compose(config_name=CONFIG_NAME, overrides=list(overrides))


def _compose_in(config_dir: Path, name: str, overrides: list[str], *, hydra_config: bool = False):
    """Compose `name` from `config_dir` with conf/ on the search path (as `--config-dir` does)."""
    from hydra import compose as hydra_compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir.resolve()), version_base="1.3"):
        return hydra_compose(config_name=name, overrides=[f"hydra.searchpath=[file://{CONFIG_DIR}]", *overrides],
                             return_hydra_config=hydra_config)


def load_grid(path: str | Path, extra: list[str] | None = None) -> list[list[str]]:
    """The jobs of a sweep file (e.g. sweeps/boundaries.yaml), as Hydra's basic sweeper expands
    its ``hydra.sweeper.params``: one override list per combination, in Hydra's order.

    `extra` overrides apply first, so ``hydra.sweeper.params.dataset=doc000_clean`` narrows the grid.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    path = Path(path)
    cfg = _compose_in(path.parent, path.stem, list(extra or []), hydra_config=True)
    params = cfg.hydra.sweeper.params
    if not params:
        raise ConfigError("hydra.sweeper.params", f"a mapping of key -> options in {path}", params)
    parsed = OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in params.items()])
    axes = [[f"{o.get_key_element()}={v}" for v in o.sweep_string_iterator()] if o.is_sweep_override()
            else [f"{o.get_key_element()}={o.get_value_element_as_str()}"] for o in parsed]
    return [list(combo) for combo in itertools.product(*axes)]


def compose_job(path: str | Path, job: list[str], extra: list[str] | None = None):
    """One job of a sweep file, composed exactly as `python -m nanbench.studies.boundary -m` would."""
    path = Path(path)
    return _compose_in(path.parent, path.stem, [*(extra or []), *job])


def run_grid(grid_path: str | Path, out_dir: str | Path, extra: list[str] | None = None) -> list[dict]:
    """One search per job of a sweep file, in this process; writes boundaries.{json,md,png} to out_dir.

    Every job is composed and validated before anything is trained, so a bad grid fails at once
    with one line naming the key and the job.
    """
    from nanbench.studies.boundary.report import write_plot, write_table
    from nanbench.run import resolve_device
    from nanbench.tracking import Tracker

    t0 = time.perf_counter()
    extra = list(extra or [])
    try:
        jobs = load_grid(grid_path, extra)
    except ConfigError as exc:
        fail(f"{grid_path}: {exc}")
    except Exception as exc:  # noqa: BLE001 - missing file, bad YAML or override syntax
        fail(f"{grid_path}: {type(exc).__name__}: {exc}".replace("\n", " "))
    prepared, trackers, devices = [], {}, {}
    for job in jobs:
        where = f" (job: {' '.join(job)})"
        try:
            spec, bs = prepare(compose_job(grid_path, job, extra))
            if spec.tracking not in trackers:
                trackers[spec.tracking] = Tracker(spec.tracking)
            if spec.train.device not in devices:
                devices[spec.train.device] = resolve_device(spec.train.device)
        except ConfigError as exc:
            fail(f"{exc}{where}")
        except Exception as exc:  # noqa: BLE001 - Hydra cannot compose it (unknown option, bad value)
            fail(f"{type(exc).__name__}: {exc}{where}".replace("\n", " "))
        prepared.append((job, spec, bs))

    summaries = []
    for i, (job, spec, bs) in enumerate(prepared, 1):
        result = find_boundary(spec, bs, tracker=trackers[spec.tracking], device=devices[spec.train.device])
        s = result.summary()
        s["overrides"] = job
        summaries.append(s)
        theory_part = f"; theory {s['lr_theory']:.3g}" if s["lr_theory"] is not None else ""
        print(f"[{i}/{len(prepared)}] {' '.join(job)}: {s['note']}{theory_part} "
              f"({s['evaluations']} runs, {s['wall_s']:.1f} s)", flush=True)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "boundaries.json").write_text(json.dumps(summaries, indent=1, allow_nan=False) + "\n")
    write_table(summaries, out / "boundaries.md",
                command=" ".join(["python -m nanbench.studies.boundary --grid", str(grid_path), *extra]))
    write_plot(summaries, out / "boundaries.png")
    print(json.dumps({"configurations": len(summaries), "json": str(out / "boundaries.json"),
                      "table": str(out / "boundaries.md"), "plot": str(out / "boundaries.png"),
                      "wall_s": time.perf_counter() - t0}), flush=True)
    return summaries


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if any(a == "--grid" or a.startswith("--grid=") for a in argv):
        parser = argparse.ArgumentParser(
            prog="python -m nanbench.studies.boundary",
            description="One stability-boundary search per configuration of a grid file.")
        parser.add_argument("--grid", required=True, help="grid file, e.g. sweeps/boundaries.yaml")
        parser.add_argument("--out", default="results", help="folder for boundaries.{json,md,png}")
        parser.add_argument("overrides", nargs="*",
                            help="Hydra overrides added to every configuration, e.g. tracking.uri=...")
        args = parser.parse_args(argv)
        run_grid(args.grid, args.out, args.overrides)
        return
    _hydra_app()()

