"""One diagnosis, trained and tracked: the original configuration at every seed (its forensics,
and per seed whether it went non-finite), the catalogue's single changes, pairs where no single
change makes the model train in every seed, and the largest stable learning rate beside the
largest one that trains (nanbench.studies.boundary), searched at a seed that went non-finite. The
diagnosis is an MLflow parent run; each try's run at each seed is its child, and the boundary
search's parent run is one too.

What "fixed" means: the model *trains* in every seed with the change (nanbench.forensics.trained),
not merely stays finite; a change that only avoids NaN is reported as such (rank.avoids_nan_only).
Seeds are distinct runs only where they differ: a try whose seeds all ran the same run (a saved
model's weights kept, shuffle off) counts as one distinct run, never as n of n.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field

import numpy as np

from nanbench import vocab
from nanbench.forensics import trained
from nanbench.result import RunResult, finite_or_none
from nanbench.spec import RunSpec
from nanbench.studies.diagnose import data_check
from nanbench.studies.boundary.search import is_stable
from nanbench.studies.diagnose import rank, tries as trying
from nanbench.studies.diagnose.catalogue import Evidence, catalogue, grad_norms_before
from nanbench.studies.diagnose.spec import DiagnoseSpec
from nanbench.studies.diagnose.tries import Try

NOTHING_TO_FIX = "nothing to fix"
AVOIDS_NAN = "avoids NaN, does not train"
SHUFFLE_ONLY = "replication over shuffle order only"
# a NaN at step 0 from these sources comes before any update: no learning rate can change it
BEFORE_ANY_UPDATE = ("input", "loss", "gradients")


def default_name(spec: RunSpec) -> str:
    return f"{spec.dataset.name}-{spec.config_hash()[:8]}"


def reference_run(original: Try) -> RunResult:
    """The run whose forensics a diagnosis reports (and whose seed the boundary is searched at):
    the first seed's (the configured one first) that went non-finite, else the first unstable
    one's, else the first that did not train, else the configured seed's."""
    for bad in (lambda r: r.outcome in vocab.NONFINITE_OUTCOMES, lambda r: not is_stable(r.outcome),
                lambda r: not trained(r.outcome)):
        found = next((r for r in original.results if bad(r)), None)
        if found is not None:
            return found
    return original.results[0]


def replication(spec: RunSpec) -> str:
    """What the seeds vary, in words (the report says it beside every count of seeds)."""
    m = spec.model
    if m.name == "keras" and m.reinit is False:  # model.reinit=false, set by the user
        return SHUFFLE_ONLY + ("" if spec.train.shuffle else " (train.shuffle is off: every seed is the same run)")
    if m.name == "keras" and m.reinit is None:
        return "seed 0 starts from the saved weights, every other seed from the model's initializers drawn with it"
    return "each seed its own initial weights" + (" and shuffle order" if spec.train.shuffle else "")


def boundary_run(original: Try) -> RunResult:
    """The seed the boundary is searched at: the first that went non-finite where the learning
    rate can matter (boundary_skip is None), else the reference run."""
    return next((r for r in original.results if r.outcome in vocab.NONFINITE_OUTCOMES and boundary_skip(r) is None),
                reference_run(original))


def boundary_skip(ref: RunResult) -> str | None:
    """Why the learning-rate search would be wasted on `ref` (None: it is not): a NaN at step 0
    before any update (from the data or the architecture), which no learning rate can change."""
    v = ref.verdict
    if v is None or v.first_nonfinite_step != 0 or v.first_nonfinite_source not in BEFORE_ANY_UPDATE:
        return None
    what = "the data" if v.first_nonfinite_source == "input" else "the architecture or loss at the initial weights"
    return (f"not searched: the first non-finite value is at step 0 (source {v.first_nonfinite_source}), "
            f"from {what}, before any update: no learning rate can change it")


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
    boundary_skipped: str | None = None  # why the boundary was not searched (boundary_skip)
    parent_run_id: str | None = None
    wall_s: float = 0.0
    data: dict | None = None  # what is wrong in the data, by column and row (nanbench.studies.diagnose.data_check)

    @property
    def seeds(self) -> list[int]:
        return trying.seeds_of(self.spec, self.settings.seeds)

    @property
    def reference(self) -> RunResult:
        return reference_run(self.original)

    @property
    def nothing_to_fix(self) -> bool:
        """The original trained in every seed, and its gradients are not dead (:meth:`dead_output`)."""
        return self.original.trained_seeds == self.settings.seeds and self.dead_output() is None

    def dead_output(self) -> str | None:
        """A finding when the reference run's global gradient norm is exactly 0 for its last steps
        (at least min(history, steps) of them, >= 2; before any non-finite step): nothing learns,
        e.g. a relu output layer that gives 0 on every row. None otherwise."""
        ref = self.reference
        if ref.series is None:
            return None
        step = ref.verdict.first_nonfinite_step if ref.verdict else None
        norms = np.asarray(ref.series.grad_norm, dtype=np.float64)[:step]
        nonzero = np.flatnonzero(norms != 0)
        zeros = len(norms) - (int(nonzero[-1]) + 1 if len(nonzero) else 0)
        if zeros < 2 or zeros < min(self.settings.history, len(norms)):
            return None
        return (f"dead output: every gradient norm is exactly 0 for the last {zeros} steps (the output gives 0 on "
                "every row, e.g. a relu output layer, so nothing learns)")

    def remedies(self) -> list[Try]:
        return rank.ranked(self.singles + self.pairs)

    def avoids_nan_only(self) -> list[Try]:
        return rank.avoids_nan_only(self.singles + self.pairs)

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
        if any(t.stable_seeds == n for t in self.avoids_nan_only()):
            return "no change tried trains in every seed; some avoid NaN but do not train"
        return "no change tried trains in every seed"

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
            "per_seed": per_seed(self.original, self.seeds),
            "distinct_runs": self.original.distinct_runs,
            "replication": replication(self.spec),
            "target_ratio": self.spec.outcome.target_ratio,
            "first_nonfinite_step": v.first_nonfinite_step if v else None,
            "first_nonfinite_source": v.first_nonfinite_source if v else None,
            "first_nonfinite_layer": _layer(ref, "first_nonfinite_layer"),
            "first_nonfinite_part": _layer(ref, "first_nonfinite_part"),
            "grad_norm_history": self.history(),
            "dead_output": self.dead_output(),
            "data": self.data,
            "loss": loss_label(self.spec),
            "layer_grad_norm_history": self.layer_history(),
            "remedies": [remedy(t, self.settings.seeds) for t in self.remedies()],
            "avoids_nan_only": [remedy(t, self.settings.seeds) for t in self.avoids_nan_only()],
            "tried": [{"change": t.name, "overrides": t.change.overrides, "outcomes": t.outcomes,
                       "trained_seeds": t.trained_seeds, "stable_seeds": t.stable_seeds,
                       "distinct_runs": t.distinct_runs, "relative_loss": finite_or_none(t.relative_loss),
                       "skipped": t.skipped}
                      for t in self.singles + self.pairs],
            "lr_max_stable": bs.get("lr_max_stable"),
            "lr_max_trains": bs.get("lr_max_trains"),
            "lr_min_unstable": bs.get("lr_min_unstable"),
            "boundary_status": bs.get("status") or ("skipped" if self.boundary_skipped else None),
            "boundary_seed": b.spec.train.seed if b is not None else None,
            "boundary_note": self.boundary_skipped or (f"{bs['note']}; {bs['trains_note']}" if bs else None),
            "runs": sum(len(t.results) for t in [self.original, *self.singles, *self.pairs]),
            "config_hash": self.spec.config_hash(),
            "parent_run_id": self.parent_run_id,
            "error": ref.error,
            "wall_s": self.wall_s,
        }

    def to_json(self) -> str:
        return json.dumps(self.summary(), allow_nan=False)


def loss_label(spec: RunSpec) -> str:
    """The loss the runs trained with, as the report names it: a saved model's own compiled loss
    (``compiled categorical_crossentropy``), else the loss option (``mse``)."""
    if getattr(spec.loss, "compiled", None):
        from nanbench.user_loss import compiled_label
        return f"compiled {compiled_label(spec.loss.compiled)} (the model's own)"
    return spec.loss.name + (" (from_logits)" if spec.loss.from_logits else "")


def per_seed(t: Try, seeds: list[int]) -> list[dict]:
    """Per seed of a try: its outcome, whether it went non-finite (and where), whether it trained,
    its initial whole-data loss and L / L0."""
    out = []
    for seed, r in zip(seeds, t.results):
        v = r.verdict
        rel = (v.final_loss / v.initial_loss if v is not None and v.final_loss is not None and v.initial_loss
               else None)
        out.append({"seed": seed, "outcome": r.outcome, "nonfinite": r.outcome in vocab.NONFINITE_OUTCOMES,
                    "trained": trained(r.outcome),
                    "first_nonfinite_step": v.first_nonfinite_step if v else None,
                    "first_nonfinite_source": v.first_nonfinite_source if v else None,
                    "initial_loss": finite_or_none(v.initial_loss) if v else None,
                    "relative_loss": finite_or_none(rel)})
    return out


def remedy(t: Try, n_seeds: int) -> dict:
    """A tried change as the report lists it: share of seeds trained, median L / L0, time to target."""
    rel = finite_or_none(t.relative_loss)
    return {"change": t.name, "overrides": t.change.overrides, "trained_seeds": t.trained_seeds,
            "stable_seeds": t.stable_seeds, "seeds": n_seeds, "distinct_runs": t.distinct_runs,
            "final_loss": finite_or_none(t.final_loss), "relative_loss": rel,
            "steps_to_target": finite_or_none(t.steps_to_target),
            "seconds_to_target": finite_or_none(t.seconds_to_target),
            "verdict": ("trains" if t.trained_seeds == n_seeds else
                        f"trains in {t.trained_seeds} of {n_seeds} seeds" if t.trained_seeds else
                        AVOIDS_NAN + ("; the loss grew" if rel is not None and rel > 1 else ""))
            + (f"; predicts no better than a constant in {t.constant_seeds} seed(s)" if t.constant_seeds else ""),
            "constant_seeds": t.constant_seeds, "outcomes": t.outcomes, "distance": t.distance, "why": t.change.why}


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
                "diagnose.trained": str(trained(result.outcome)).lower(),
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
    """The boundary searched at the reference run's seed (one that went non-finite where any did),
    and lr_max_trains at every seed of the diagnosis."""
    from nanbench.studies.boundary import BoundarySpec, find_boundary

    s = diagnosis.settings
    bs = BoundarySpec(rel_precision=s.boundary_precision, max_evaluations=s.boundary_evaluations,
                      lr_low=min(1e-8, diagnosis.spec.optimizer.lr), lr_high=max(10.0, diagnosis.spec.optimizer.lr))
    at = diagnosis.spec.replace(train={"seed": boundary_run(diagnosis.original).spec.train.seed})
    result = find_boundary(at, bs, tracker=tracker, device=device, seeds=diagnosis.seeds)
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
        diagnosis.data = data_check.check_spec(spec)
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
            if settings.pairs and not rank.fixes(diagnosis.singles, settings.seeds):  # none trains every seed
                known = {spec.config_hash()} | {t.spec.config_hash() for t in diagnosis.singles if t.spec}
                diagnosis.pairs = trying.prepare(spec, config, rank.pairs(diagnosis.singles, settings.pair_candidates),
                                                 known=known)
                trying.train(diagnosis.pairs, settings.seeds, device=device, side_by_side=side_by_side)
                for t in diagnosis.pairs:
                    _log(tracker, diagnosis, t, t.name)
                    say(describe_try(t, settings.seeds))
            if settings.boundary:
                diagnosis.boundary_skipped = boundary_skip(boundary_run(diagnosis.original))
                if diagnosis.boundary_skipped is None:
                    diagnosis.boundary = _boundary(diagnosis, tracker, device)
                    b = diagnosis.summary()
                    say(f"largest stable learning rate (seed {b['boundary_seed']}): {b['lr_max_stable']}; "
                        f"largest that trains at every seed: {b['lr_max_trains']} ({b['boundary_note']})")
                else:
                    say(f"learning-rate boundary {diagnosis.boundary_skipped}")
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
                                      metrics={"lr_max_stable": s["lr_max_stable"],
                                               "lr_max_trains": s["lr_max_trains"], "wall_s": s["wall_s"],
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
    lines = [f"diagnose {d.name}: {n} seeds {d.seeds}: outcomes {', '.join(d.original.outcomes)} "
             f"({s['replication']})"]
    lines.append(f"  loss: {s['loss']}")
    if d.original.distinct_runs < n:
        lines.append(f"  the {n} seeds ran {d.original.distinct_runs} distinct run(s)")
    bad = [p["seed"] for p in s["per_seed"] if p["nonfinite"]]
    if bad and len(bad) < n:
        lines.append(f"  non-finite at seed(s) {bad} only: the NaN depends on the seed")
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
    if s["dead_output"]:
        lines.append(f"  {s['dead_output']}")
    lines += [f"  data: {line}" for line in data_check.lines(s["data"])]
    if d.nothing_to_fix:
        lines.append(f"  trains in every seed: {NOTHING_TO_FIX}")
    return lines


def seeds_text(count: int, t: Try, n_seeds: int) -> str:
    """"2/3 seeds", or, when the seeds ran fewer distinct runs, how many (never "3/3" for one run)."""
    if t.distinct_runs == 1 and n_seeds > 1:
        return f"{min(count, 1)}/1 distinct run ({n_seeds} identical seeds)"
    if t.distinct_runs < n_seeds:
        return f"{count}/{n_seeds} seeds ({t.distinct_runs} distinct runs)"
    return f"{count}/{n_seeds} seeds"


def describe_try(t: Try, n_seeds: int) -> str:
    if t.skipped:
        return f"  skip {t.name}: {t.skipped}"
    return (f"  try {t.name}: trained in {seeds_text(t.trained_seeds, t, n_seeds)}, stable in {t.stable_seeds} "
            f"({', '.join(t.outcomes)}), L/L0 {_num(t.relative_loss)}, steps to target {_num(t.steps_to_target)}")
