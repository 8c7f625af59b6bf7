"""Tables of `make examples`: results/examples.md, results/examples.csv and results/claims.csv.

Formatting only: the rows come from nanbench.examples (the six examples and their variants) and
nanbench.claims (the prose claims); nothing here trains. Non-finite numbers are written as
``nan``/``inf``, never replaced.
"""

from __future__ import annotations

import csv
import math
import platform
from pathlib import Path

EXAMPLE_COLUMNS = (
    "doc", "example", "key", "ran_as", "as_written", "as_written_with_data", "warnings", "changes",
    "outcome", "initial_loss", "final_loss", "first_nonfinite_step", "first_nonfinite_epoch",
    "first_nonfinite_source", "steps", "claim", "verdict", "evidence", "matches_as_written",
    "wall_s", "steps_per_s", "run_id",
)
CLAIM_COLUMNS = (
    "claim", "sweep", "cell", "level", "role", "runs", "nonfinite", "nan", "inf", "diverged",
    "converged", "stalled", "error", "first_nonfinite_sources",
)


def _num(value, fmt: str = "{:.4g}") -> str:
    if value is None:
        return ""
    return fmt.format(value) if math.isfinite(value) else str(value)


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def example_record(row) -> dict:
    """One CSV line of the examples table."""
    r, v, ex, aw = row.result, row.result.verdict, row.example, row.as_written
    return {
        "doc": ex.doc, "example": ex.example, "key": ex.key, "ran_as": row.ran_as,
        "as_written": aw.status if aw else "", "as_written_with_data": (aw.with_data or "") if aw else "",
        "warnings": " | ".join(row.warnings), "changes": " | ".join(row.changes), "outcome": r.outcome,
        "initial_loss": _num(v.initial_loss, "{!r}") if v else "",
        "final_loss": _num(v.final_loss, "{!r}") if v else "",
        "first_nonfinite_step": "" if not v or v.first_nonfinite_step is None else v.first_nonfinite_step,
        "first_nonfinite_epoch": "" if row.first_nonfinite_epoch is None else row.first_nonfinite_epoch,
        "first_nonfinite_source": (v.first_nonfinite_source or "") if v else "", "steps": r.steps_run,
        "claim": ex.claim, "verdict": row.verdict, "evidence": row.evidence,
        "matches_as_written": row.matches_as_written, "wall_s": f"{r.wall_s:.3f}",
        "steps_per_s": _num(r.steps_per_s, "{:.1f}"), "run_id": r.run_id or "",
    }


def claim_records(judged) -> list[dict]:
    """claims.csv: per claim, cell and factor level, the outcome counts."""
    out = []
    for j in judged:
        c = j.claim
        for cell, levels in j.cells.items():
            for level, tally in levels.items():
                role = "control" if level in c.control else "treatment" if level in c.treatment else "other"
                out.append({
                    "claim": c.id, "sweep": f"sweeps/{c.sweep}.yaml",
                    "cell": ", ".join(f"{k}={v}" for k, v in cell) or "all", "level": f"{c.factor}={level}",
                    "role": role, "runs": tally.runs, "nonfinite": tally.nonfinite,
                    **{o: tally.outcomes[o] for o in ("nan", "inf", "diverged", "converged", "stalled", "error")},
                    "first_nonfinite_sources": " ".join(f"{s}:{n}" for s, n in sorted(tally.sources.items())),
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


def _table(rows, *, first: tuple[str, ...]) -> list[str]:
    head = (*first, "outcome", "final loss", "first non-finite epoch", "verdict", "wall s", "steps/s", "matches")
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        rec, v = example_record(row), row.result.verdict
        cells = {"doc": rec["doc"], "example": rec["example"], "ran as": rec["ran_as"],
                 "as written": rec["as_written"] + (f"; with X_train, y_train given: {rec['as_written_with_data']}"
                                                    if rec["as_written_with_data"] else "")}
        out.append("| " + " | ".join(_cell(x) for x in (
            *(cells[k] for k in first), rec["outcome"], _num(v.final_loss) if v else "n/a",
            rec["first_nonfinite_epoch"] if rec["first_nonfinite_epoch"] != "" else "-", rec["verdict"],
            f"{row.result.wall_s:.2f}", rec["steps_per_s"] or "n/a", rec["matches_as_written"])) + " |")
    return out


def markdown(rows, judged, *, seconds: dict[str, float] | None = None) -> str:
    from nanbench.examples import BLOCK_TIMEOUT_S, SEED

    devices = sorted({r.result.device for r in rows})
    lines = [
        "# The documents' examples and claims, measured",
        "",
        f"{_versions()} · device: {', '.join(devices) or 'n/a'} · seed {SEED}",
        "",
        "Generated by `make examples` (`python -m nanbench.examples`). Every run is in MLflow: the "
        "examples in experiment `examples`, each claim's sweep in the experiment named after its sweep "
        "file; run ids are in `examples.csv`. Outcomes are nanbench.forensics.classify with the default "
        "thresholds (converged: final epoch loss <= 0.1 x the first step's loss or <= 1e-3; diverged: > 10 x; "
        "stalled: finite, in between). Losses, outcomes and verdicts are identical on every run; wall "
        "time and steps/s are measurements of this run.",
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
        lines += ["", "## The prose claims", "",
                  "Each claim is checked by a sweep that varies its factor with everything else held fixed "
                  "(the file is named). Runs that agree on every other swept key form a cell; in each cell every "
                  "treatment level is compared with every control level by the fraction of runs that ended inf "
                  "or NaN. *raises*: the claim holds where the treatment's fraction is higher; *lowers*: where it "
                  "is lower, testable only where something was non-finite. Verdict: supported (holds in every "
                  "testable comparison), supported under conditions, refuted (in none), not testable. Counts per "
                  "cell are in `claims.csv`.", "",
                  "| claim | source | sweep | runs | inf/NaN: control -> treatment | verdict | where it holds |",
                  "|---|---|---|---|---|---|---|"]
        for j in judged:
            c = j.claim
            lines.append("| " + " | ".join(_cell(x) for x in (
                f"{c.id}: {c.quote}", c.source, f"`sweeps/{c.sweep}.yaml`", len(j.records),
                f"{j.totals(c.control)} -> {j.totals(c.treatment)} ({c.factor}: "
                f"{','.join(c.control)} -> {','.join(c.treatment)}; {c.effect})",
                f"**{j.verdict}**", j.conditions)) + " |")
        lines += ["", "### Where the first inf/NaN appeared (treatment runs)", ""]
        for j in judged:
            t = j.totals(j.claim.treatment)
            if t.sources:
                lines.append(f"- {j.claim.id}: " + ", ".join(f"{s} {n}" for s, n in sorted(t.sources.items())))
        probes = [j for j in judged if j.probe]
        if probes:
            lines += ["", "### Op-level probes", "",
                      "Activations: Keras's functions on extreme finite float32 inputs, gradient of sum(w * f(x)) with "
                      "w = 1..n. Clipping: one SGD step at learning rate 1.0 on doc003 example 2's model (Dense(64, relu), "
                      "Dense(1)) with its stand-in data's first batch, y x 100, so the step equals the clipped gradient."]
            for j in probes:
                keys = list(j.probe[0])
                lines += ["", f"{j.claim.id}:", "", "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
                lines += ["| " + " | ".join(_cell(p[k]) for k in keys) + " |" for p in j.probe]
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
