"""Tables and plots of stability boundaries, from the summaries nanbench.studies.boundary.run makes.

Nothing here trains: it reads a list of search summaries (``results/boundaries.json``) and writes
a Markdown table and a plot, the learning-rate sensitivity view of DeepOBS (Schneider et al. 2019)
and Wortsman et al. 2023 ("Small-scale proxies for large-scale Transformer training instabilities").
Where a search found no boundary inside its range the table says so; it never invents a number.
"""

from __future__ import annotations

import json
from pathlib import Path

FACTORS = ("dataset", "preprocess", "model", "optimizer", "clipping", "loss")


def _key(s: dict) -> tuple:
    f = s["factors"]
    return tuple(str(f[k]) for k in FACTORS) + (f["batch_size"],)


def _lr(value: float | None) -> str:
    return "—" if value is None else f"{value:.3g}"


def max_stable_cell(s: dict) -> str:
    """The table's answer: a number only where the search measured one."""
    if s["status"] == "stable_everywhere":
        return f"≥ {s['lr_high']:g} (stable up to lr = {s['lr_high']:g})"
    if s["status"] == "unstable_everywhere":
        return f"none ≥ {s['lr_low']:g} (unstable down to lr = {s['lr_low']:g})"
    return _lr(s["lr_max_stable"])


def max_trains_cell(s: dict) -> str:
    """The largest learning rate at which every seed trained (a number only where measured)."""
    status = s.get("trains_status")
    if status is None or status == "skipped":
        return "—"  # a summary from before lr_max_trains, or a search that was not run
    if status == "trains_up_to_high":
        return f"≥ {s['lr_high']:g}"
    if status == "trains_nowhere":
        return "none"
    return _lr(s.get("lr_max_trains"))


def theory_cells(s: dict) -> tuple[str, str]:
    if s["lr_theory"] is None:
        reason = s["theory_reason"] or ""
        short = "n/a (mini-batch)" if reason.startswith("mini-batch") else "n/a"
        return short, "—"
    ratio = s["measured_over_theory"]
    return _lr(s["lr_theory"]), ("—" if ratio is None else f"{ratio:.3f}")


def table(summaries: list[dict]) -> str:
    """A Markdown table, one row per search, sorted by dataset, preprocessing, optimizer, clipping, loss."""
    head = ("| dataset | preprocess | model | optimizer | clipping | loss | batch | max stable lr "
            "| max lr that trains | min unstable lr | theory lr | measured / theory | runs |")
    lines = [head, "|" + "---|" * 6 + "---:|" * 7]
    for s in sorted(summaries, key=_key):
        f = s["factors"]
        batch = f"{f['batch_size']} (full)" if f.get("full_batch") else str(f["batch_size"])
        theory, ratio = theory_cells(s)
        lines.append(f"| {f['dataset']} | {f['preprocess']} | {f['model']} | {f['optimizer']} | {f['clipping']} "
                     f"| {f['loss']} | {batch} | {max_stable_cell(s)} | {max_trains_cell(s)} "
                     f"| {_lr(s['lr_min_unstable'])} "
                     f"| {theory} | {ratio} | {s['evaluations']} |")
    return "\n".join(lines) + "\n"


def agreement(summaries: list[dict]) -> str:
    """One line on how measured boundaries compare with theory where the theory applies."""
    ratios = [s["measured_over_theory"] for s in summaries if s["measured_over_theory"] is not None]
    slack = 1.0001  # float rounding of the printed learning rates
    inside = [s for s in summaries if s["lr_theory"] is not None and s["found"]
              and s["lr_max_stable"] <= s["lr_theory"] * slack and s["lr_theory"] <= s["lr_min_unstable"] * slack]
    n_theory = sum(s["lr_theory"] is not None for s in summaries)
    if not ratios:
        return "No configuration of this grid has a closed-form bound."
    return (f"The closed form applies to {n_theory} of {len(summaries)} configurations: measured max stable lr / "
            f"theory ranges over {min(ratios):.3f} … {max(ratios):.3f}, and the theoretical bound lies inside "
            f"the measured bracket [max stable, min unstable] in {len(inside)} of {n_theory}.")


def write_table(summaries: list[dict], path: str | Path, *, command: str = "python -m nanbench.studies.boundary") -> None:
    epochs = sorted({s["epochs"] for s in summaries})
    budget = f"{epochs[0]}-epoch" if len(epochs) == 1 else "fixed-budget"
    precision = sorted({s["rel_precision"] for s in summaries}) or [0.05]
    first = (f"Each row is one search: bracket on a log scale, then bisect to a relative precision of "
             f"{', '.join(f'{p:g}' for p in precision)}, each evaluation a {budget} training run. "
             "Stable: the outcome is converged, improving or stalled, i.e. finite, with the final and "
             "the last epoch's loss at most outcome.diverge_factor × the loss over the whole data at the "
             "initial weights (nanbench.forensics.classify). "
             "Stable is not trained: max lr that trains is the largest learning rate at which the run trains "
             "(finite and the final whole-data loss at most (1 − outcome.improve_fraction) × the initial one: "
             "nanbench.forensics.trained), searched downwards from max stable lr; none: no learning rate tried "
             "trains. "
             "Theory: 2(1+momentum)/λmax((2/n)·[X,1]ᵀ[X,1]) for linear + MSE + full-batch SGD/momentum; "
             "n/a elsewhere.")
    text = ["# Stability boundaries: the largest stable learning rate per configuration", "",
            f"Made by `{command}`. {first}", "",
            agreement(summaries), "", table(summaries)]
    missing = [s for s in summaries if not s["found"]]
    if missing:
        text += ["Searches without a boundary inside the range:", ""]
        text += [f"- {' · '.join(str(s['factors'][k]) for k in FACTORS)}: {s['note']}"
                 for s in sorted(missing, key=_key)]
        text.append("")
    Path(path).write_text("\n".join(text))


def write_plot(summaries: list[dict], path: str | Path) -> None:
    """Dot plot on a log axis: measured bracket per configuration, theory marked where it applies."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted(summaries, key=_key)
    fig, ax = plt.subplots(figsize=(10, 1.2 + 0.24 * max(1, len(rows))))
    labels = []
    for y, s in enumerate(rows):
        f = s["factors"]
        labels.append(f"{f['dataset']}/{f['preprocess']} · {f['optimizer']} · {f['clipping']} · {f['loss']}"
                      + ("" if f.get("full_batch") else f" · b{f['batch_size']}"))
        if s["found"]:
            ax.plot([s["lr_max_stable"], s["lr_min_unstable"]], [y, y], color="tab:blue", lw=3)
            ax.plot(s["lr_max_stable"], y, "o", color="tab:blue", ms=5)
        elif s["status"] == "stable_everywhere":
            ax.plot(s["lr_high"], y, ">", color="tab:green", ms=7)
        elif s["status"] == "unstable_everywhere":
            ax.plot(s["lr_low"], y, "<", color="tab:red", ms=7)
        elif s["lr_max_stable"] is not None:
            ax.plot(s["lr_max_stable"], y, "o", mfc="none", color="tab:blue", ms=5)
        if s.get("lr_max_trains") is not None:
            ax.plot(s["lr_max_trains"], y, "d", color="tab:orange", ms=6)
        if s["lr_theory"] is not None:
            ax.plot(s["lr_theory"], y, "x", color="black", ms=7)
    ax.set_xscale("log")
    ax.set_yticks(range(len(rows)), labels, fontsize=7)
    ax.invert_yaxis()
    ax.grid(axis="x", which="major", alpha=0.3)
    ax.set_xlabel("learning rate")
    ax.set_title("Largest stable learning rate per configuration", fontsize=10)
    from matplotlib.lines import Line2D
    handles = [
        Line2D([], [], color="tab:blue", marker="o", lw=3, label="measured: max stable → min unstable"),
        Line2D([], [], color="black", marker="x", ls="none", label="theory 2(1+β)/λmax (full-batch GD)"),
        Line2D([], [], color="tab:orange", marker="d", ls="none", label="largest lr that trains"),
        Line2D([], [], color="tab:green", marker=">", ls="none", label="stable up to lr_high: no boundary"),
        Line2D([], [], color="tab:red", marker="<", ls="none", label="unstable down to lr_low: no boundary"),
    ]
    below = -0.6 / max(1, len(rows)) - 0.04  # just under the x label, whatever the figure height
    ax.legend(handles=handles, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, below), ncol=2,
              frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    """`python -m nanbench.studies.boundary.report results/boundaries.json`: rewrite table and plot."""
    import sys
    src = Path(sys.argv[1] if len(sys.argv) > 1 else "results/boundaries.json")
    summaries = json.loads(src.read_text())
    write_table(summaries, src.with_suffix(".md"))
    write_plot(summaries, src.with_suffix(".png"))


if __name__ == "__main__":
    main()
