"""One diagnosis, trained and tracked: the original configuration at every seed (its forensics),
the catalogue's single changes, pairs where no single change is stable in every seed, and the
largest stable learning rate (nanbench.studies.boundary). The diagnosis is an MLflow parent run;
each try's run at each seed is its child, and the boundary search's parent run is one too.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field

import numpy as np

from nanbench import vocab
from nanbench.result import RunResult, finite_or_none
from nanbench.spec import RunSpec
from nanbench.studies.boundary.search import is_stable
from nanbench.studies.diagnose import rank, tries as trying
from nanbench.studies.diagnose.catalogue import Evidence, catalogue, grad_norms_before
from nanbench.studies.diagnose.spec import DiagnoseSpec
from nanbench.studies.diagnose.tries import Try

NOTHING_TO_FIX = "nothing to fix"


def default_name(spec: RunSpec) -> str:
    return f"{spec.dataset.name}-{spec.config_hash()[:8]}"


def reference_run(original: Try) -> RunResult:
    """The run whose forensics a diagnosis reports: the configured seed's if it was unstable, else
    the first unstable seed's, else the configured seed's."""
    return next((r for r in original.results if not is_stable(r.outcome)), original.results[0])


def _layer(result: RunResult, name: str) -> str | None:
    return getattr(result, name, None)  # first_nonfinite_layer / _part: issue 21's layer forensics


@dataclass
class Diagnosis:
    spec: RunSpec
    settings: DiagnoseSpec
    name: str
    original: Try
    evidence: Evidence | None = None
    singles: list[Try] = field(default_factory=list)
    pairs: list[Try] = field(default_factory=list)
    boundary: object | None = None  # nanbench.studies.boundary.BoundaryResult
    parent_run_id: str | None = None
    wall_s: float = 0.0

    @property
    def seeds(self) -> list[int]:
        return trying.seeds_of(self.spec, self.settings.seeds)

    @property
    def reference(self) -> RunResult:
        return reference_run(self.original)

    @property
    def nothing_to_fix(self) -> bool:
        return self.original.stable_seeds == self.settings.seeds

    def remedies(self) -> list[Try]:
        return rank.ranked(self.singles + self.pairs)

    def history(self) -> list[float | None]:
        """The last `history` global gradient norms before the reference run's first non-finite
        step (every step's when it stayed finite); a non-finite norm is None."""
        ref = self.reference
        if ref.series is None:
            return []
        step = ref.verdict.first_nonfinite_step if ref.verdict else None
        norms = np.asarray(ref.series.grad_norm, dtype=np.float64)[:step]
        return [finite_or_none(float(v)) for v in norms[-self.settings.history:]]

    def layer_history(self) -> dict[str, list[float | None]]:
        """history() per layer with weights (its gradient norm before clipping; layer forensics)."""
        ref = self.reference
        per_layer = getattr(ref.series, "layer_grad_norm", None) or {}
        step = ref.verdict.first_nonfinite_step if ref.verdict else None
        return {layer: [finite_or_none(float(v))
                        for v in np.asarray(norms, dtype=np.float64)[:step][-self.settings.history:]]
                for layer, norms in per_layer.items()}

    def verdict(self) -> str:
        if self.nothing_to_fix:
            return NOTHING_TO_FIX
        n = self.settings.seeds
        if rank.fixes(self.singles, n):
            return "fixed by a single change"
        if rank.fixes(self.pairs, n):
            return "fixed by a pair of changes"
        return "no change tried is stable in every seed"

    def summary(self) -> dict:
        """The JSON a diagnosis prints last; numbers are finite or null."""
        ref, b = self.reference, self.boundary
        v = ref.verdict
        bs = b.summary() if b is not None else {}
        return {
            "name": self.name,
            "outcome": ref.outcome,
            "verdict": self.verdict(),
            "seeds": self.seeds,
            "outcomes": self.original.outcomes,
            "first_nonfinite_step": v.first_nonfinite_step if v else None,
            "first_nonfinite_source": v.first_nonfinite_source if v else None,
            "first_nonfinite_layer": _layer(ref, "first_nonfinite_layer"),
            "first_nonfinite_part": _layer(ref, "first_nonfinite_part"),
            "grad_norm_history": self.history(),
            "layer_grad_norm_history": self.layer_history(),
            "remedies": [remedy(t, self.settings.seeds) for t in self.remedies()],
            "tried": [{"change": t.name, "overrides": t.change.overrides, "outcomes": t.outcomes,
                       "stable_seeds": t.stable_seeds, "skipped": t.skipped}
                      for t in self.singles + self.pairs],
            "lr_max_stable": bs.get("lr_max_stable"),
            "lr_min_unstable": bs.get("lr_min_unstable"),
            "boundary_status": bs.get("status"),
            "runs": sum(len(t.results) for t in [self.original, *self.singles, *self.pairs]),
            "config_hash": self.spec.config_hash(),
            "parent_run_id": self.parent_run_id,
            "error": ref.error,
            "wall_s": self.wall_s,
        }

    def to_json(self) -> str:
        return json.dumps(self.summary(), allow_nan=False)


def remedy(t: Try, n_seeds: int) -> dict:
    return {"change": t.name, "overrides": t.change.overrides, "stable_seeds": t.stable_seeds,
            "seeds": n_seeds, "final_loss": finite_or_none(t.final_loss),
            "relative_loss": finite_or_none(t.relative_loss), "outcomes": t.outcomes, "distance": t.distance,
            "why": t.change.why}


def _raw_data_nonfinite(spec: RunSpec) -> bool:
    """Whether the data as made, before any preprocessing, hold NaN or inf."""
    from nanbench.data import make_dataset
    try:
        X, y = make_dataset(spec.dataset)
    except Exception:  # noqa: BLE001 - the runs themselves record why the data did not load
        return False
    return not all(np.isfinite(np.asarray(a, dtype=np.float64)).all() for a in (X, y))


def _log(tracker, diagnosis: Diagnosis, t: Try, role_change: str) -> None:
    if tracker is None or not t.results:
        return
    for seed, result in zip(diagnosis.seeds, t.results):
        tags = {vocab.ROLE: vocab.TRY, "diagnose.change": role_change[:500], "diagnose.seed": str(seed),
                "diagnose.stable": str(is_stable(result.outcome)).lower(),
                "diagnose.overrides": " ".join(t.change.overrides)[:5000] if t.change else "none"}
        result.run_id = tracker.log(result, experiment=diagnosis.spec.tracking.experiment,
                                    parent_run_id=diagnosis.parent_run_id, tags=tags)


def _start_parent(tracker, diagnosis: Diagnosis) -> str:
    from nanbench.tracking import git_commit, run_name, versions

    params = {**diagnosis.spec.factors(),
              **{f"diagnose.{k}": v for k, v in dataclasses.asdict(diagnosis.settings).items() if v is not None}}
    tags = {vocab.ENGINE: diagnosis.spec.train.engine, "git_commit": git_commit(), **versions()}
    return tracker.start_parent(diagnosis.spec.tracking.experiment, f"diagnose · {diagnosis.name} · "
                                + run_name(diagnosis.spec), role=vocab.DIAGNOSIS, tags=tags, params=params)


def _boundary(diagnosis: Diagnosis, tracker, device):
    from nanbench.studies.boundary import BoundarySpec, find_boundary

    s = diagnosis.settings
    bs = BoundarySpec(rel_precision=s.boundary_precision, max_evaluations=s.boundary_evaluations,
                      lr_low=min(1e-8, diagnosis.spec.optimizer.lr), lr_high=max(10.0, diagnosis.spec.optimizer.lr))
    result = find_boundary(diagnosis.spec, bs, tracker=tracker, device=device)
    if tracker is not None and result.parent_run_id:  # the search nests under the diagnosis
        tracker.annotate(result.parent_run_id, tags={vocab.PARENT_RUN_ID: diagnosis.parent_run_id})
    return result


def diagnose(spec: RunSpec, config: dict, settings: DiagnoseSpec, *, tracker=None, device: str | None = None,
             side_by_side: int = 64, say=print) -> Diagnosis:
    """Diagnose `spec` (its plain `config` is what the changes are applied to); `say` gets the
    lines a person reads as it goes."""
    t0 = time.perf_counter()
    original = Try(change=None, spec=spec)
    diagnosis = Diagnosis(spec=spec, settings=settings, name=settings.name or default_name(spec), original=original)
    if tracker is not None:
        diagnosis.parent_run_id = _start_parent(tracker, diagnosis)
    failure = "the diagnosis stopped before its end"
    try:
        trying.train([original], settings.seeds, device=device, side_by_side=side_by_side)
        _log(tracker, diagnosis, original, "original")
        for line in describe_original(diagnosis):
            say(line)
        if not diagnosis.nothing_to_fix:
            ref = diagnosis.reference
            diagnosis.evidence = Evidence(
                grad_norms=grad_norms_before(ref.series, ref.verdict.first_nonfinite_step if ref.verdict else None),
                nonfinite_data=_raw_data_nonfinite(spec))
            diagnosis.singles = trying.prepare(spec, config, catalogue(spec, config, diagnosis.evidence))
            trying.train(diagnosis.singles, settings.seeds, device=device, side_by_side=side_by_side)
            for t in diagnosis.singles:
                _log(tracker, diagnosis, t, t.name)
                say(describe_try(t, settings.seeds))
            if settings.pairs and not rank.fixes(diagnosis.singles, settings.seeds):
                known = {spec.config_hash()} | {t.spec.config_hash() for t in diagnosis.singles if t.spec}
                diagnosis.pairs = trying.prepare(spec, config, rank.pairs(diagnosis.singles, settings.pair_candidates),
                                                 known=known)
                trying.train(diagnosis.pairs, settings.seeds, device=device, side_by_side=side_by_side)
                for t in diagnosis.pairs:
                    _log(tracker, diagnosis, t, t.name)
                    say(describe_try(t, settings.seeds))
            if settings.boundary:
                diagnosis.boundary = _boundary(diagnosis, tracker, device)
                say(f"largest stable learning rate: {diagnosis.summary()['lr_max_stable']} "
                    f"({diagnosis.boundary.summary()['note']})")
        failure = None
    except BaseException as exc:
        failure = f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:5000]
        raise
    finally:
        diagnosis.wall_s = time.perf_counter() - t0
        if tracker is not None:
            if failure is None:
                s = diagnosis.summary()
                best = s["remedies"][0]["change"] if s["remedies"] else "none"
                tracker.finish_parent(diagnosis.parent_run_id, tags={"verdict": s["verdict"], "best_remedy": best[:500],
                                                                    vocab.OUTCOME: s["outcome"]},
                                      metrics={"lr_max_stable": s["lr_max_stable"], "wall_s": s["wall_s"],
                                               "runs": s["runs"], "remedies": len(s["remedies"])},
                                      texts={"diagnosis.json": json.dumps(s, indent=2)})
            else:
                tracker.finish_parent(diagnosis.parent_run_id, failure=failure)
    return diagnosis


def _num(value) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def describe_original(d: Diagnosis) -> list[str]:
    """Step 1 in words: outcome per seed, where the first non-finite value appeared, and the
    gradient norms before it."""
    ref, n = d.reference, d.settings.seeds
    s = d.summary()
    lines = [f"diagnose {d.name}: {n} seeds {d.seeds}: outcomes {', '.join(d.original.outcomes)}"]
    if ref.outcome == "error":
        lines.append(f"  the run failed: {ref.error}")
    if s["first_nonfinite_step"] is not None:
        where = f"source {s['first_nonfinite_source']}"
        if s["first_nonfinite_layer"]:
            where += f", layer {s['first_nonfinite_layer']}" + (f", part {s['first_nonfinite_part']}"
                                                                 if s["first_nonfinite_part"] else "")
        lines.append(f"  seed {ref.spec.train.seed}: first non-finite value at step "
                     f"{s['first_nonfinite_step']}, {where}")
    history = s["grad_norm_history"]
    if history:
        when = "before it" if s["first_nonfinite_step"] is not None else "of its last steps (it stayed finite)"
        lines.append(f"  global gradient norms {when} (last {len(history)}): " + ", ".join(_num(v) for v in history))
        for layer, norms in s["layer_grad_norm_history"].items():
            lines.append(f"    {layer}: " + ", ".join(_num(v) for v in norms))
    elif s["first_nonfinite_step"] == 0:
        lines.append("  no gradient norm before it: the very first step was non-finite")
    if d.nothing_to_fix:
        lines.append(f"  stable in every seed: {NOTHING_TO_FIX}")
    return lines


def describe_try(t: Try, n_seeds: int) -> str:
    if t.skipped:
        return f"  skip {t.name}: {t.skipped}"
    return (f"  try {t.name}: stable in {t.stable_seeds}/{n_seeds} seeds ({', '.join(t.outcomes)}), "
            f"L/L0 {_num(t.relative_loss)}")
