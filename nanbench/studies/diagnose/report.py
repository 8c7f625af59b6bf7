"""A diagnosis as report.md, report.html (one self-contained page, nanbench.summary.report) and
diagnosis.json, in results/diagnose/<name>/. Reads the summary only; trains nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from nanbench.summary.report import Report


def _num(value, fmt: str = "{:.4g}") -> str:
    return "n/a" if value is None else fmt.format(value)


def build(s: dict, command: str) -> Report:
    """The report's blocks from a diagnosis summary (nanbench.studies.diagnose.run.Diagnosis.summary)."""
    r = Report()
    r.heading(1, f"Diagnosis: {s['name']}")
    r.code(command)
    r.heading(2, "What happened")
    facts = [f"outcome at seed {s['seeds'][0]}: **{s['outcome']}**; seeds {s['seeds']}: {', '.join(s['outcomes'])}",
             f"verdict: **{s['verdict']}**"]
    if s["first_nonfinite_step"] is not None:
        where = f"source `{s['first_nonfinite_source']}`"
        if s.get("first_nonfinite_layer"):
            where += f", layer `{s['first_nonfinite_layer']}`"
            if s.get("first_nonfinite_part"):
                where += f", part `{s['first_nonfinite_part']}`"
        facts.append(f"first non-finite value at step {s['first_nonfinite_step']}: {where}")
    if s["grad_norm_history"]:
        when = "before it" if s["first_nonfinite_step"] is not None else "of the last steps (the run stayed finite)"
        facts.append(f"global gradient norms {when}, last {len(s['grad_norm_history'])}: "
                     + ", ".join(_num(v) for v in s["grad_norm_history"]))
    for layer, norms in (s.get("layer_grad_norm_history") or {}).items():
        facts.append(f"layer `{layer}`'s gradient norms, the same steps: " + ", ".join(_num(v) for v in norms))
    if s.get("error"):
        facts.append(f"error: `{s['error']}`")
    r.bullets(facts)
    if s["verdict"] == "nothing to fix":
        r.para("The configuration is stable in every seed: nothing to fix, no change tried.")
        return r
    r.heading(2, "Remedies")
    r.para("Changes stable in at least one seed, best first: stable in more seeds, then the lower final "
           "whole-data loss relative to the initial one (L/L0: scaling y or changing the loss changes the "
           "loss's units, so L itself is not comparable across changes), then the smaller change. "
           "Stable is nanbench's word (outcome converged, improving or stalled: finite, and not diverged), so "
           "a change whose runs stalled kept the run finite but learned little; its L/L0 says how little. "
           "Append a change's overrides to the command above to run it.")
    rows = [{"rank": i, "change": m["change"], "stable seeds": f"{m['stable_seeds']}/{m['seeds']}",
             "L/L0": _num(m["relative_loss"]), "final loss": _num(m["final_loss"]),
             "overrides": " ".join(f"`{o}`" for o in m["overrides"]), "how chosen": m["why"] or ""}
            for i, m in enumerate(s["remedies"], 1)]
    if rows:
        r.table(pd.DataFrame(rows))
    else:
        r.para("No change tried was stable in any seed.")
    if s["lr_max_stable"] is not None or s.get("boundary_status"):
        r.para(f"Largest stable learning rate (boundary search at seed {s['seeds'][0]}): "
               f"**{_num(s['lr_max_stable'])}** (smallest unstable: {_num(s['lr_min_unstable'])}; "
               f"status {s['boundary_status']}).")
    r.heading(2, "Every change tried")
    r.table(pd.DataFrame([{"change": t["change"], "outcomes": ", ".join(t["outcomes"]) or "-",
                           "stable seeds": t["stable_seeds"] if not t["skipped"] else "-",
                           "note": t["skipped"] or ""} for t in s["tried"]]))
    r.para(f"{s['runs']} training runs, {s['wall_s']:.0f} s; MLflow parent run `{s['parent_run_id']}`.")
    return r


def write(s: dict, folder: str | Path, command: str) -> list[Path]:
    """report.md, report.html and diagnosis.json into `folder`; their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    r = build(s, command)
    paths = [folder / "report.md", folder / "report.html", folder / "diagnosis.json"]
    paths[0].write_text(r.markdown())
    paths[1].write_text(r.html(f"nanbench diagnosis: {s['name']}"))
    paths[2].write_text(json.dumps(s, indent=1, allow_nan=False) + "\n")
    return paths
