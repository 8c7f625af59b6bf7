"""One configuration's search trained and tracked: every evaluation a real training run
(nanbench.run.execute) of the same spec with another learning rate, the search a parent run in
MLflow and each evaluation its child; with the fused engine all of them reuse one traced graph.

Two answers: ``lr_max_stable`` (the largest learning rate that stays finite and does not diverge,
at the spec's seed) and beside it ``lr_max_trains`` (the largest at which the run trains at every
seed of ``seeds``: search.search_trains), since a run can stay finite and learn nothing.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field

from nanbench import vocab
from nanbench.spec import RunSpec
from nanbench.studies.boundary.search import (Search, Theory, TrainsSearch, describe, describe_trains, is_stable,
                                              search, search_trains, theory, trains)
from nanbench.studies.boundary.spec import BoundarySpec

# a search's summary numbers on its parent run
PARENT_METRICS = ("lr_max_stable", "lr_max_trains", "lr_min_unstable", "lr_theory", "lambda_max",
                  "measured_over_theory", "bracket_ratio", "evaluations", "wall_s")


@dataclass
class BoundaryResult:
    """One configuration's search, its theory and where it was recorded."""

    spec: RunSpec
    boundary: BoundarySpec
    search: Search
    theory: Theory
    outcomes: list[str] = field(default_factory=list)     # outcome per probe, in order
    trains: TrainsSearch | None = None                    # the lr_max_trains search (None: not run)
    trains_seeds: list[int] = field(default_factory=list)  # the seeds every lr of it trained at
    trains_outcomes: list[list[str]] = field(default_factory=list)  # outcomes per seed, per trains probe
    trains_runs: int = 0                                  # runs that search trained (beyond the reused ones)
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
        tr = self.trains or TrainsSearch(None, None, "skipped", reason="not searched")
        return {
            "lr_max_stable": s.lr_max_stable,
            "lr_max_trains": tr.lr_max_trains,
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
            "evaluations": len(s.probes) + self.trains_runs,  # training runs, both searches
            "history": [{"lr": p.lr, "phase": p.phase, "outcome": o, "run_id": r}
                        for p, o, r in zip(s.probes, self.outcomes, self.run_ids)],
            "trains_status": tr.status,
            "trains_note": describe_trains(tr, self.boundary),
            "trains_seeds": self.trains_seeds,
            "trains_history": [{"lr": p.lr, "trained": p.stable, "outcomes": o}
                               for p, o in zip(tr.probes, self.trains_outcomes)],
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
    from nanbench.tracking import git_commit, run_name, versions

    name = "boundary · " + run_name(spec).replace(f" lr={spec.optimizer.lr:g}", "")
    params = {k: v for k, v in spec.factors().items() if k != "optimizer.lr"}
    params.update({f"boundary.{k}": v for k, v in dataclasses.asdict(bs).items() if v is not None})
    tags = {vocab.ENGINE: spec.train.engine, "git_commit": git_commit(), **versions()}
    return tracker.start_parent(spec.tracking.experiment, name, role=vocab.SEARCH, tags=tags, params=params)


def _finish_parent(tracker, run_id: str, result: BoundaryResult) -> None:
    """The search's answer on its parent run: the numbers (finite ones) as metrics, the words as
    tags, the whole summary as boundary.json; then FINISHED."""
    s = result.summary()
    tags = {"status": s["status"], "found": str(s["found"]).lower(), "note": s["note"],
            "trains_status": s["trains_status"], "trains_note": s["trains_note"],
            "theory_reason": s["theory_reason"] or "none"}
    tracker.finish_parent(run_id, metrics={k: s[k] for k in PARENT_METRICS}, tags=tags,
                          texts={"boundary.json": json.dumps(s, indent=2)})


def find_boundary(spec: RunSpec, bs: BoundarySpec, *, tracker=None, device: str | None = None,
                  seeds: list[int] | None = None) -> BoundaryResult:
    """Search one configuration's stability boundary at `spec`'s seed, then the largest learning
    rate at which it trains at every one of `seeds` (default: `spec`'s seed alone), recording
    every evaluation in MLflow.

    With a `tracker`, the search is a parent run in experiment `spec.tracking.experiment` and each
    evaluation a child run (tag mlflow.parentRunId), tagged with its index, phase and stability.
    """
    from nanbench.data import load
    from nanbench.run import execute, execute_many

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

    searched: dict[float, object] = {}  # lr -> the stability search's run at spec's seed
    index = 0

    def log(run, phase: str) -> None:
        nonlocal index
        if tracker is not None:
            t = time.perf_counter()
            tags = {vocab.ROLE: vocab.EVALUATION, "boundary.index": str(index), "boundary.phase": phase,
                    "boundary.stable": str(is_stable(run.outcome)).lower(),
                    "boundary.trained": str(trains(run.outcome)).lower()}
            run.run_id = tracker.log(run, experiment=spec.tracking.experiment,
                                     parent_run_id=result.parent_run_id, tags=tags)
            result.log_s += time.perf_counter() - t
        index += 1

    def stable(lr: float, phase: str) -> bool:
        t = time.perf_counter()
        run = execute(spec.replace(optimizer={"lr": lr}), device)
        result.train_s += time.perf_counter() - t
        log(run, phase)
        searched[lr] = run
        result.outcomes.append(run.outcome)
        result.run_ids.append(run.run_id)
        result.steps_per_run.append(run.steps_run)
        return is_stable(run.outcome)

    result.trains_seeds = list(seeds) if seeds else [spec.train.seed]

    def trains_at(lr: float, phase: str) -> bool:
        """Every seed of trains_seeds trained at lr (the search's own run reused where it has one)."""
        at = spec.replace(optimizer={"lr": lr})
        runs = {spec.train.seed: searched[lr]} if lr in searched else {}
        todo = [s for s in result.trains_seeds if s not in runs]
        t = time.perf_counter()
        for s, run in zip(todo, execute_many([at.replace(train={"seed": s}) for s in todo], device)):
            runs[s] = run
        result.train_s += time.perf_counter() - t
        result.trains_runs += len(todo)
        for s in todo:
            log(runs[s], phase)
            result.steps_per_run.append(runs[s].steps_run)
        outcomes = [runs[s].outcome for s in result.trains_seeds]
        result.trains_outcomes.append(outcomes)
        return all(trains(o) for o in outcomes)

    failure = "the search stopped before its end"  # a bug inside it still closes the parent run, FAILED
    try:
        start = bs.lr_start if bs.lr_start is not None else spec.optimizer.lr
        result.search = search(stable, bs, start)
        result.trains = search_trains(trains_at, bs, result.search)
        failure = None
    except BaseException as exc:
        failure = f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:5000]
        raise
    finally:
        result.wall_s = time.perf_counter() - t0  # the parent's metric: the search without closing it
        if tracker is not None:
            t = time.perf_counter()
            if failure is None:
                _finish_parent(tracker, result.parent_run_id, result)
            else:  # FAILED, with why as its error tag
                tracker.finish_parent(result.parent_run_id, failure=failure)
            result.log_s += time.perf_counter() - t
        result.wall_s = time.perf_counter() - t0
    return result
