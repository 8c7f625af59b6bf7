"""A diagnosis as report.md, report.html (one self-contained page, nanbench.summary.report) and
diagnosis.json, in results/diagnose/<name>/. Reads the summary only; trains nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from nanbench.studies.diagnose import data_check
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
    if s.get("loss"):
        facts.append(f"loss: `{s['loss']}`")
    if s.get("dead_output"):
        facts.append(f"**{s['dead_output']}**")
    facts += [f"data: {line}" for line in data_check.lines(s.get("data"))]
    if s.get("replication"):
        facts.append(f"seeds: {s['replication']}")
    n = len(s["seeds"])
    if s.get("distinct_runs") is not None and s["distinct_runs"] < n:
        facts.append(f"the {n} seeds ran **{s['distinct_runs']} distinct run{'s' if s['distinct_runs'] > 1 else ''}** "
                     "(same initial loss, same loss at every step): not a replication")
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
        if norms:  # none before a NaN at step 0
            facts.append(f"layer `{layer}`'s gradient norms, the same steps: " + ", ".join(_num(v) for v in norms))
    if s.get("error"):
        facts.append(f"error: `{s['error']}`")
    r.bullets(facts)
    if s.get("per_seed"):
        r.table(pd.DataFrame([{"seed": p["seed"], "outcome": p["outcome"],
                               "non-finite": "yes" if p["nonfinite"] else "no",
                               "first non-finite step": "-" if p["first_nonfinite_step"] is None
                               else f"{p['first_nonfinite_step']} ({p['first_nonfinite_source']})",
                               "trained": "yes" if p["trained"] else "no", "initial loss": _num(p["initial_loss"]),
                               "L/L0": _num(p["relative_loss"])} for p in s["per_seed"]]))
    if s["verdict"] == "nothing to fix":
        r.para("The configuration trains in every seed: nothing to fix, no change tried.")
        return r
    target = s.get("target_ratio", 0.1)
    r.heading(2, "Remedies")
    r.para("Changes with which the model *trains* (finite, and the final whole-data loss at most "
           "(1 − outcome.improve_fraction) × the initial one) in at least one seed, best first: trained in more "
           "seeds, then the lower median final whole-data loss relative to the initial one (L/L0: scaling y or "
           "changing the loss changes the loss's units, so L itself is not comparable across changes), then the "
           f"fewer steps to target (the first step whose loss is at most {target:g} × L0, median over the seeds that "
           "trained), then the smaller change. Append a change's overrides to the command above to run it.")
    n = len(s["seeds"])

    def seeds_cell(count: int, m: dict) -> str:
        """k/n seeds; one run, never n/n, where every seed ran the same run."""
        distinct = m.get("distinct_runs", n)
        if distinct == 1 and n > 1:
            return f"{min(count, 1)}/1 distinct run ({n} identical seeds)"
        return f"{count}/{n}" + (f" ({distinct} distinct runs)" if distinct < n else "")

    rows = [{"rank": i, "change": m["change"], "verdict": m.get("verdict", ""),
             "trained seeds": seeds_cell(m["trained_seeds"], m),
             "median L/L0": _num(m["relative_loss"]), "steps to target": _num(m["steps_to_target"], "{:.0f}"),
             "seconds to target": _num(m["seconds_to_target"], "{:.2g}"), "final loss": _num(m["final_loss"]),
             "overrides": " ".join(f"`{o}`" for o in m["overrides"]), "how chosen": m["why"] or ""}
            for i, m in enumerate(s["remedies"], 1)]
    if rows:
        r.table(pd.DataFrame(rows))
    else:
        r.para("No change tried made the model train in any seed.")
    if s.get("avoids_nan_only"):
        r.heading(3, "Avoids NaN, does not train")
        r.para("These changes kept runs finite and not diverged, but the model trained in no seed with them: "
               "they are not fixes. An L/L0 above 1 means the loss grew.")
        r.table(pd.DataFrame([{"change": m["change"], "stable seeds": seeds_cell(m["stable_seeds"], m),
                               "trained seeds": seeds_cell(0, m), "median L/L0": _num(m["relative_loss"]),
                               "outcomes": ", ".join(m["outcomes"]),
                               "overrides": " ".join(f"`{o}`" for o in m["overrides"])}
                              for m in s["avoids_nan_only"]]))
    if s.get("boundary_status") == "skipped":
        r.para(f"Learning-rate boundary {s['boundary_note']}.")
    elif s["lr_max_stable"] is not None or s.get("boundary_status"):
        r.para(f"Largest stable learning rate (boundary search at seed {s.get('boundary_seed', s['seeds'][0])}): "
               f"**{_num(s['lr_max_stable'])}** (smallest unstable: {_num(s['lr_min_unstable'])}; status "
               f"{s['boundary_status']}). Largest learning rate at which every seed trains: "
               f"**{_num(s.get('lr_max_trains'))}** ({s.get('boundary_note') or ''}).")
    r.heading(2, "Every change tried")
    r.table(pd.DataFrame([{"change": t["change"], "outcomes": ", ".join(t["outcomes"]) or "-",
                           "trained seeds": seeds_cell(t["trained_seeds"], t) if not t["skipped"] else "-",
                           "stable seeds": t["stable_seeds"] if not t["skipped"] else "-",
                           "L/L0": _num(t.get("relative_loss")) if not t["skipped"] else "-",
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
