"""Tables of `make examples`: results/examples.md, results/examples.csv and results/claims.csv.

Formatting only: the rows come from nanbench.studies.examples.run (the six examples and their
variants) and nanbench.studies.claims.run (the prose claims); nothing here trains. Non-finite numbers are written as
``nan``/``inf``, never replaced.
"""

from __future__ import annotations

import csv
import math
import platform
from pathlib import Path

from nanbench.studies.claims.definitions import BUDGETS, MIN_SEEDS
from nanbench.studies.claims.judging import level_role
from nanbench.studies.documents import SEED
from nanbench.studies.examples.as_written import BLOCK_TIMEOUT_S
from nanbench.studies.verdicts import DEAD, Comparison
from nanbench.vocab import OUTCOMES

EXAMPLE_COLUMNS = (
    "doc", "example", "key", "ran_as", "as_written", "as_written_with_data", "warnings", "changes",
    "outcome", "initial_loss", "final_loss", "final_loss_seed_min", "final_loss_seed_max", "seeds",
    "seeds_nonfinite", "seeds_dead", "dead_fraction", "dead_fraction_at_nonfinite",
    "first_nonfinite_step", "first_nonfinite_epoch", "first_nonfinite_source", "steps", "claim", "verdict",
    "evidence", "matches_as_written", "wall_s", "steps_per_s", "run_id",
)
CLAIM_COLUMNS = (
    "claim", "sweep", "steps", "cell", "level", "role", "runs", "nonfinite", "dead", *OUTCOMES,
    "first_nonfinite_sources", "first_nonfinite_layers", "skipped_steps", "compared",
)


def _num(value, fmt: str = "{:.4g}") -> str:
    if value is None:
        return ""
    return fmt.format(value) if math.isfinite(value) else str(value)


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def example_record(row) -> dict:
    """One CSV line of the examples table (losses: seed 0's run; the range: every seed's)."""
    r, v, ex, aw = row.result, row.result.verdict, row.example, row.as_written
    rng = row.final_loss_range
    runs = row.all_seeds
    return {
        "doc": ex.doc, "example": ex.example, "key": ex.key, "ran_as": row.ran_as,
        "as_written": aw.status if aw else "", "as_written_with_data": (aw.with_data or "") if aw else "",
        "warnings": " | ".join(row.warnings), "changes": " | ".join(row.changes), "outcome": r.outcome,
        "initial_loss": _num(v.initial_loss, "{!r}") if v else "",
        "final_loss": _num(v.final_loss, "{!r}") if v else "",
        "final_loss_seed_min": _num(rng[0], "{!r}") if rng else "",
        "final_loss_seed_max": _num(rng[1], "{!r}") if rng else "",
        "seeds": " ".join(str(s.seed) for s in runs),
        "seeds_nonfinite": sum(s.nonfinite for s in runs), "seeds_dead": sum(s.dead for s in runs),
        "dead_fraction": _num(r.dead_fraction, "{!r}"),
        "dead_fraction_at_nonfinite": _num(r.dead_fraction_at_nonfinite, "{!r}"),
        "first_nonfinite_step": "" if not v or v.first_nonfinite_step is None else v.first_nonfinite_step,
        "first_nonfinite_epoch": "" if row.first_nonfinite_epoch is None else row.first_nonfinite_epoch,
        "first_nonfinite_source": (v.first_nonfinite_source or "") if v else "", "steps": r.steps_run,
        "claim": ex.claim, "verdict": row.verdict, "evidence": row.evidence,
        "matches_as_written": row.matches_as_written, "wall_s": f"{r.wall_s:.3f}",
        "steps_per_s": _num(r.steps_per_s, "{:.1f}"), "run_id": r.run_id or "",
    }


def _compared(budget, claim, cell, level) -> str:
    """This level's comparisons in this cell: 'vs none: holds -1.00 [-1.00, -0.44]'."""
    tallies = budget.cells[cell]
    out = []
    for c in claim.control:
        if c in tallies and level != c:
            cmp = Comparison((), tallies[c].rate, tallies[level].rate, claim.effect)
            out.append(f"vs {c}: {cmp.status}" + (f" {cmp.difference}" if cmp.difference else "")
                       + (f" ({cmp.reason})" if cmp.reason else ""))
    return "; ".join(out)


def _layers(j, steps) -> str:
    """The first non-finite layers of a claim's non-finite runs at one budget, treatment and control
    apart (a cause's are the treatment's, a remedy's what it is meant to prevent, the control's):
    'treatment: hidden0 (output) 12; control: lstm0 (gradient) 3'."""
    said = []
    for role, levels in (("treatment", j.claim.treatment), ("control", j.claim.control)):
        layers = j.totals(levels, steps).layers
        if layers:
            said.append(f"{role}: " + ", ".join(f"{name} {n}" for name, n in layers.most_common()))
    return "; ".join(said) or "-"


def claim_records(judged) -> list[dict]:
    """claims.csv: per claim, budget, cell and factor level, the outcome counts and the comparisons."""
    out = []
    for j in judged:
        c = j.claim
        for budget in j.budgets:
            for cell, levels in budget.cells.items():
                for level, tally in levels.items():
                    role = level_role(c, level)
                    out.append({
                        "claim": c.id, "sweep": f"sweeps/{c.sweep}.yaml", "steps": budget.steps or "",
                        "cell": ", ".join(f"{k}={v}" for k, v in cell) or "all", "level": f"{c.factor}={level}",
                        "role": role, "runs": tally.runs, "nonfinite": tally.nonfinite, "dead": tally.dead,
                        **{o: tally.outcomes[o] for o in OUTCOMES},
                        "first_nonfinite_sources": " ".join(f"{s}:{n}" for s, n in sorted(tally.sources.items())),
                        "first_nonfinite_layers": " ".join(f"{s.replace(' ', '')}:{n}"
                                                           for s, n in sorted(tally.layers.items())),
                        "skipped_steps": tally.skipped,
                        "compared": _compared(budget, c, cell, level) if role != "control" else "",
                    })
    return out


def _write_csv(path: Path, columns, records) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(records)


def _versions() -> str:
    import keras
    import numpy as np
    import sklearn
    import tensorflow as tf
    return (f"TensorFlow {tf.__version__} · Keras {keras.__version__} · NumPy {np.__version__} · "
            f"scikit-learn {sklearn.__version__} · Python {platform.python_version()}")


def _range(row) -> str:
    rng = row.final_loss_range
    n = len(row.all_seeds)
    bad = sum(s.nonfinite for s in row.all_seeds)
    if rng is None:
        return f"none finite ({n} seeds)"
    span = _num(rng[0]) if rng[0] == rng[1] else f"{_num(rng[0])} .. {_num(rng[1])}"
    return span + (f" ({n - bad} finite of {n})" if bad else "")


def _table(rows, *, first: tuple[str, ...]) -> list[str]:
    n = max((len(r.all_seeds) for r in rows), default=1)
    head = (*first, "outcome (seed 0)", "final loss (seed 0)", f"final loss over {n} seeds",
            "non-finite seeds", "dead ReLU (seed 0)", "first non-finite epoch", "verdict", "wall s", "steps/s",
            "matches")
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        rec, v = example_record(row), row.result.verdict
        cells = {"doc": rec["doc"], "example": rec["example"], "ran as": rec["ran_as"],
                 "as written": rec["as_written"] + (f"; with X_train, y_train given: {rec['as_written_with_data']}"
                                                    if rec["as_written_with_data"] else "")}
        dead = row.result.dead_fraction
        out.append("| " + " | ".join(_cell(x) for x in (
            *(cells[k] for k in first), rec["outcome"], _num(v.final_loss) if v and v.final_loss is not None else "n/a",
            _range(row), f"{rec['seeds_nonfinite']}/{len(row.all_seeds)}",
            "-" if dead is None else f"{dead:.0%}",
            rec["first_nonfinite_epoch"] if rec["first_nonfinite_epoch"] != "" else "-", rec["verdict"],
            f"{row.result.wall_s:.2f}", rec["steps_per_s"] or "n/a", rec["matches_as_written"])) + " |")
    return out


def _counts(decision) -> str:
    """The pooled counts behind the difference; every comparison's when none was testable."""
    if decision.pooled is None:
        return f"{decision.all_control} -> {decision.all_treatment} (none testable)"
    return f"{decision.control} -> {decision.treatment}"


def _claims_section(judged) -> list[str]:
    lines = ["", "## The prose claims", "",
             "Each claim is checked by a sweep that varies its factor with everything else held fixed (the file "
             "is named), over only the conditions the claim is about, at least "
             f"{MIN_SEEDS} seeds per configuration, the same optimizer steps on every dataset (`train.steps`), and "
             "learning rates by decades from where every configuration is stable to where it is not (each "
             "configuration's stable -> unstable transition lies in the grid). Runs that agree on every other swept "
             "key form a *cell*; in each cell each treatment level (the levels the documents name) is compared with "
             "each control level by the fraction of seeds that ended inf or NaN. The *difference* is treatment - "
             "control with Newcombe's 95% hybrid score interval (from the two Wilson intervals). A comparison "
             "*holds* when the interval lies on the claimed side of 0, is *reversed* when it lies on the other, is "
             "*no effect* when it contains 0 (both non-finite at every seed included), and is *untestable* when "
             "neither side has an inf/NaN run (the same for raises and lowers claims). "
             f"Finite runs whose every ReLU unit is dead (dead_fraction >= {DEAD:g}: a constant prediction) are "
             "set aside from both sides and counted. Verdicts (nanbench.studies.verdicts): **supported** (the pooled "
             "difference holds and no condition changes that), **supported under conditions** (the conditions are "
             "named), **no effect** (ties within the interval), **refuted** (the effect reverses significantly), "
             "**not testable** (no testable comparison), **avoids NaN, does not train** (a remedy whose difference "
             "holds but none of whose runs trained: finite, and the whole-data loss fell by less than a tenth). Remedies (*lowers*) are judged at two budgets, "
             f"{BUDGETS[0]} and {BUDGETS[-1]} steps: a remedy *prevents* a non-finite run when its run is still "
             f"finite at {BUDGETS[-1]}, and only *postpones* it when it is finite at {BUDGETS[0]} and non-finite at "
             f"{BUDGETS[-1]}. Levels the documents do not name are judged the same way and reported beside the "
             "verdict, never pooled into it. Counts per cell, level and budget are in `claims.csv`. The claims "
             "whose source is an issue thread or a paper are not the documents': they are the causes of NaN "
             "people report on the Keras and TensorFlow trackers, judged by the same rules.", "",
             "| claim | source | sweep (runs) | steps | inf/NaN: control -> treatment (pooled over the testable "
             "comparisons) | difference [95% CI] | verdict | first non-finite layer (non-finite runs) | "
             "comparisons and conditions |",
             "|---|---|---|---|---|---|---|---|---|"]
    for j in judged:
        c = j.claim
        for i, b in enumerate(j.budgets):
            d = b.decision
            first = (f"{c.id}: {c.quote}", c.source, f"`sweeps/{c.sweep}.yaml` ({len(j.records)})") if i == 0 else ("", "", "")
            levels = (f" ({c.factor}: {','.join(c.control)} -> {','.join(c.treatment)}; {c.effect})" if i == 0 else "")
            lines.append("| " + " | ".join(_cell(x) for x in (
                *first, b.steps if b.steps is not None else "-", _counts(d) + levels,
                str(d.pooled) if d.pooled else "n/a", f"**{d.verdict}**", _layers(j, b.steps),
                d.text(with_difference=False))) + " |")
    remedies = [j for j in judged if j.remedy is not None]
    if remedies:
        lines += ["", "### Remedies: prevents or postpones", "",
                  f"Each treatment run (cell, level, seed) in a cell where a control run was non-finite at "
                  f"{BUDGETS[-1]} steps, by what the same configuration did at the two budgets.", "",
                  f"| claim | treatment runs with something to prevent | prevents (finite at {BUDGETS[-1]}) | "
                  f"postpones (finite at {BUDGETS[0]}, not at {BUDGETS[-1]}) | does not prevent (non-finite at "
                  f"{BUDGETS[0]}) | set aside (dead) | answer |",
                  "|---|---|---|---|---|---|---|"]
        for j in remedies:
            r = j.remedy
            lines.append("| " + " | ".join(_cell(x) for x in (
                j.claim.id, sum(r.values()), r.get("prevents", 0), r.get("postpones", 0),
                r.get("does not prevent", 0), r.get("set aside (a dead network)", 0), f"**{j.answer}**")) + " |")
    beside = [(j, b, level, d) for j in judged for b in j.budgets for level, d in b.beside.items()]
    if beside:
        lines += ["", "### Reported beside (levels the documents do not name; not in the verdicts)", "",
                  "| claim | level | steps | inf/NaN: control -> level | difference [95% CI] | "
                  "would be | comparisons and conditions |", "|---|---|---|---|---|---|---|"]
        for j, b, level, d in beside:
            lines.append("| " + " | ".join(_cell(x) for x in (
                j.claim.id, f"{j.claim.factor}={level}", b.steps if b.steps is not None else "-",
                _counts(d), str(d.pooled) if d.pooled else "n/a", d.verdict, d.text(with_difference=False))) + " |")
    dead = [(j, j.dead) for j in judged if any(j.dead.values())]
    if dead:
        lines += ["", "### Dead networks set aside", "",
                  "Finite runs whose every ReLU unit outputs 0 on every training row at the end: the network predicts "
                  "a constant, so its finite loss says nothing about stability. They are in neither side's rate.", ""]
        lines += [f"- {j.claim.id}: " + ", ".join(f"{role} {n}" for role, n in d.items() if n) for j, d in dead]
    lines += ["", "### Where the first inf/NaN appeared (treatment runs, longest budget)", "",
              "By source (input, loss, gradients, weights) and, where the run's layer forensics name it, by the "
              "first layer (a Keras layer's name, `input` or `loss`) and part (its output, gradient or weights) "
              "that held one. Skipped updates are the loss scaler's (mixed_float16), summed over the runs.", ""]
    for j in judged:
        t = j.totals(j.claim.treatment)
        if t.sources or t.layers or t.skipped:
            said = [", ".join(f"{s} {n}" for s, n in sorted(t.sources.items()))]
            if t.layers:
                said.append("layers: " + ", ".join(f"{s} {n}" for s, n in sorted(t.layers.items())))
            if t.skipped:
                c = j.totals(j.claim.control)
                said.append(f"skipped updates: {t.skipped} (control {c.skipped})")
            lines.append(f"- {j.claim.id}: " + "; ".join(x for x in said if x))
    notes = [j for j in judged if j.claim.note]
    if notes:
        lines += ["", "Levels: " + "; ".join(f"{j.claim.id}: {j.claim.note}" for j in notes) + "."]
    probes = [j for j in judged if j.probe]
    if probes:
        lines += ["", "### Op-level probes", "",
                  "Activations: Keras's functions on extreme finite float32 inputs, gradient of sum(w * f(x)) with "
                  "w = 1..n. Clipping: one SGD step at learning rate 1.0 on doc003 example 2's model (Dense(64, relu), "
                  "Dense(1)) with its stand-in data's first batch, y x 100, so the step equals the clipped gradient. "
                  "sqrt: rmse (sqrt of Keras's mse) and mse, value and gradient with respect to the predictions, at an "
                  "exact fit and at residuals of 1e-20 (rounded away at targets 1..4: exact again) and 1e-3."]
        for j in probes:
            keys = list(j.probe[0])
            lines += ["", f"{j.claim.id}:", "", "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
            lines += ["| " + " | ".join(_cell(p[k]) for k in keys) + " |" for p in j.probe]
    return lines


# A verdict in one word, for the opening table (the full verdict is in the evidence below it)
ONE_WORD = {"supported": "true", "supported under conditions": "sometimes", "no effect": "no effect",
            "refuted": "false", "not testable": "untestable", "avoids NaN, does not train": "untrained"}


def measured(row) -> str:
    """What the seeds did, in a few words: 'NaN at 5/5 seeds', 'finite at 5/5 seeds, trained at 0'."""
    runs = row.all_seeds
    bad, trained = sum(s.nonfinite for s in runs), sum(s.trained for s in runs)
    if row.result.outcome == "error":
        return "error"
    if bad == len(runs):
        kinds = sorted({s.outcome for s in runs})
        return f"{'/'.join(k.upper() if k == 'nan' else k for k in kinds)} at {bad}/{len(runs)} seeds"
    text = f"finite at {len(runs) - bad}/{len(runs)} seeds" if bad == 0 else f"non-finite at {bad}/{len(runs)} seeds"
    return text + f", trained at {trained}"


def opening(examples) -> list[str]:
    """The six examples in one table (what the article says, what was measured, one word), then,
    plainly, every claim that is false as written."""
    lines = ["| example | the article says | measured | verdict |", "|---|---|---|---|"]
    for row in examples:
        ex = row.example
        lines.append(f"| {ex.doc} ex{ex.number} | {_cell(ex.claim)} | {measured(row)} | "
                     f"{ONE_WORD.get(row.verdict, row.verdict)} |")
    false = [row for row in examples if row.verdict in ("refuted", "avoids NaN, does not train")]
    if false:
        lines += [""] + [f"False as written: {row.example.doc} ex{row.example.number} says {row.example.claim}; "
                         f"measured: {measured(row)}"
                         + (" (it stays finite but does not train)" if row.verdict != "refuted" else "") + "."
                         for row in false]
    lines += ["", "One word: true (supported at every seed), sometimes (under conditions), false (refuted), "
              "untrained (finite, but the model does not train: no fix), untestable (nothing to prevent, or "
              "no healthy control). The evidence for each is below."]
    return lines


def markdown(rows, judged, *, seconds: dict[str, float] | None = None) -> str:
    devices = sorted({r.result.device for r in rows})
    n_seeds = max((len(r.all_seeds) for r in rows), default=1)
    lines = [
        "# The documents' examples and claims, measured",
        "",
        *opening([r for r in rows if r.example.base is None]),
        "",
        f"{_versions()} · device: {', '.join(devices) or 'n/a'} · seeds {SEED}-{SEED + n_seeds - 1}",
        "",
        "Generated by `make examples` (`python -m nanbench.studies.examples`). Every run is in MLflow: the "
        "examples in experiment `examples` (seed 0, the seed the documents' code runs with), each claim's sweep "
        "in the experiment named after its sweep file; run ids are in `examples.csv`. Outcomes are "
        "nanbench.forensics.classify with the default thresholds, on L0 and L, the loss over the whole training "
        "set at the initial and at the final weights: nan (a NaN anywhere), inf (an inf, no NaN), diverged "
        "(L > 10 x L0), converged (L <= 0.1 x L0 or L <= 1e-3), improving (L <= 0.9 x L0), stalled (finite, "
        "none of these). `dead ReLU` is the fraction of ReLU units that output 0 on every training row at the "
        "end; a network with all of them dead predicts a constant. Losses, outcomes and verdicts are identical "
        "on every run; wall time and steps/s are measurements of this run.",
        "",
        "How each example is run:",
        "",
        f"- **as written**: the document's code block, verbatim, `exec`-ed in a fresh namespace in a separate "
        f"Python process (seeded with `keras.utils.set_random_seed({SEED})`, op determinism on, progress "
        f"output swallowed, {BLOCK_TIMEOUT_S} s limit). When it stops on `X_train`/`y_train`, which the "
        "document never defines, it is executed again with them given (the stand-in data below) to show "
        "what breaks next.",
        "- **in nanbench**: the same arrays, `Dense` layers with the same arguments (`input_shape=` "
        "included), the same optimizer and loss arguments and the same epochs through `Model.fit` with "
        "its defaults (batch size 32, shuffling on), same seed; the model is nanbench's "
        "`ForensicSequential` (Keras's train_step plus inf/NaN checks) with the fit engine's recording "
        "callback, which stops a run once its weights are NaN (every later step would be NaN too). "
        "`ran as` says whether that is the code as written or its closest equivalent, whose every "
        "change is listed; `matches` says whether Keras's epoch losses equal the as-written process's.",
        f"- **seeds**: every row is trained the same way at seeds {SEED}-{SEED + n_seeds - 1} (the initial weights "
        "and the shuffle); the table gives seed 0's run and the range of the final loss over the seeds, because "
        "a single seed's final loss is mostly set by its initial weights. Verdicts count the seeds: a claimed NaN "
        "is supported when every seed goes non-finite, under conditions when some do; a remedy is compared with "
        "its control seed for seed, by the difference in the fraction of non-finite seeds and its 95% Newcombe "
        "interval (supported when the interval lies below 0, no effect when it contains 0, refuted when it lies "
        "above), and is not testable when the control is finite at every seed or a dead network (finite dead "
        "networks are set aside: they are no healthy control). A run *trains* when it is finite and its whole-data "
        "loss fell by at least a tenth (converged or improving); a remedy, or a claimed stable run, whose seeds stay "
        "finite but train at none is *avoids NaN, does not train*, never supported.",
        "- **variants** are not in the documents: each changes the listed things, to show what it takes "
        "for a claimed effect to appear; a *control* is the partner run without the remedy that a "
        "remedy's verdict is compared with.",
        "",
        "## The six examples",
        "",
    ]
    examples = [r for r in rows if r.example.base is None]
    variants = [r for r in rows if r.example.base is not None]
    lines += _table(examples, first=("doc", "example", "ran as", "as written"))
    lines += ["", "### Claims, verdicts and evidence", ""]
    for row in examples:
        ex = row.example
        lines.append(f"- **{ex.doc} ex{ex.number}** ({row.ran_as}). Claim: {ex.claim}. "
                     f"**{row.verdict}**: {row.evidence}")
        if row.changes:
            lines.append("  Changes from the document's code: " + "; ".join(row.changes) + ".")
    if variants:
        lines += ["", "## Variants and controls", "",
                  "Not in the documents. Each changes the example it names in the listed ways; a remedy's verdict "
                  "compares it with its control (the same run without the remedy).", ""]
        lines += _table(variants, first=("doc", "example"))
        lines += [""]
        by_key = {r.example.key: r for r in rows}
        for row in variants:
            ex = row.example
            base = by_key.get(ex.base)
            extra = [c for c in row.changes if base is None or c not in base.changes]
            lines.append(f"- **{ex.doc} {ex.example}** (changes from {ex.doc} ex{ex.number} as run above: "
                         f"{'; '.join(extra) or 'none'}). Claim: {ex.claim}. **{row.verdict}**: {row.evidence}")
    warnings = sorted({w for row in rows for w in row.warnings}
                      | {w for row in rows if row.as_written for w in row.as_written.warnings})
    if warnings:
        lines += ["", "Warnings Keras emitted (as written and in nanbench):", ""]
        lines += [f"- {w}" for w in warnings]
    if judged:
        lines += _claims_section(judged)
    if seconds:
        lines += ["", "## Runtime", "",
                  ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items()) + " (wall clock, this machine)."]
    return "\n".join(lines) + "\n"


def write(out: Path, rows, judged, *, seconds: dict[str, float] | None = None) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "examples.md", out / "examples.csv"]
    paths[0].write_text(markdown(rows, judged, seconds=seconds))
    _write_csv(paths[1], EXAMPLE_COLUMNS, [example_record(r) for r in rows])
    if judged:
        paths.append(out / "claims.csv")
        _write_csv(paths[2], CLAIM_COLUMNS, claim_records(judged))
    return paths
