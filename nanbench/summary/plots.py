"""The summary's figures, drawn with Matplotlib's Agg canvas (no display, no pyplot global state).

Each function takes tables computed by nanbench.summary.analysis (or curves read by nanbench.tracking.reader),
writes one PNG and returns its path, or None when the sweep gives it nothing to show.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from nanbench.summary.analysis import LR

DPI = 100
MAX_PANELS = 48


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI)  # no layout engine: it costs seconds per figure
    FigureCanvasAgg(fig)
    return fig


def _margins(fig, left: float, right: float, bottom: float, top: float,
             wspace: float = 0.2, hspace: float = 0.2) -> None:
    """Subplot margins in inches (Matplotlib takes figure fractions)."""
    w, h = fig.get_size_inches()
    fig.subplots_adjust(left=left / w, right=1 - right / w, bottom=bottom / h, top=1 - top / h,
                        wspace=wspace, hspace=hspace)


def _save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=DPI)
    return path


def _log_axis(ax, which: str, log: bool) -> None:
    """Log scale on axis `which` ('x' or 'y') when the data allow it, with major ticks only:
    Matplotlib's minor ticks on log axes are most of the cost of drawing these small figures."""
    from matplotlib.ticker import NullLocator

    (ax.set_xscale if which == "x" else ax.set_yscale)("log" if log else "linear")
    if log:
        (ax.xaxis if which == "x" else ax.yaxis).set_minor_locator(NullLocator())


def _label(v) -> str:
    return f"{v:g}" if isinstance(v, (float, np.floating)) else str(v)


def nonfinite_heatmaps(runs: pd.DataFrame, flags: pd.DataFrame, path: Path,
                       rows: str = "optimizer.name", cols: str = LR,
                       panel_rows: str = "dataset.name", panel_cols: str = "preprocess") -> Path | None:
    """Non-finite rate over lr (columns) x optimizer (rows), one panel per dataset x preprocessing.
    Cells are annotated k/n (non-finite / runs that ran); cells without a run stay blank. A
    sweep that does not cross every dataset with every preprocessing (sweeps/realworld) gets its
    panels only, wrapped in rows of up to three, instead of a grid of empty ones."""
    if runs[rows].nunique() < 2 and runs[cols].nunique() < 2:
        return None
    data = pd.DataFrame({"r": runs[rows], "c": runs[cols], "pr": runs[panel_rows], "pc": runs[panel_cols],
                         "k": flags["nonfinite"], "n": flags["ran"]})
    cells = data.groupby(["pr", "pc", "r", "c"], observed=True)[["k", "n"]].sum()
    by_panel = {key: part.droplevel([0, 1]) for key, part in cells.groupby(level=[0, 1], observed=True)}
    r_levels = list(pd.unique(data["r"].sort_values()))
    c_levels = list(pd.unique(data["c"].sort_values()))
    panels = data[["pr", "pc"]].drop_duplicates().sort_values(["pr", "pc"])
    pr_levels = list(pd.unique(panels["pr"]))
    pc_levels = list(pd.unique(panels["pc"]))
    present = list(panels.itertuples(index=False, name=None))
    if len(present) == len(pr_levels) * len(pc_levels):  # a full grid: rows datasets, columns preprocessing
        if len(present) > MAX_PANELS:  # keep the figure readable: first datasets only
            pr_levels = pr_levels[:max(1, MAX_PANELS // len(pc_levels))]
        n_cols = len(pc_levels)
        layout = [(pr, pc) for pr in pr_levels for pc in pc_levels]
    else:  # a sparse one (preprocessing varies for some datasets only): the panels run, wrapped
        n_cols = min(len(pc_levels), 3)
        layout = present[:MAX_PANELS]
    n_rows = -(-len(layout) // n_cols)
    w = max(2.2, 0.3 + 0.55 * len(c_levels))
    h = max(1.6, 0.9 + 0.38 * len(r_levels))
    fig = _figure(min(40, w * n_cols + 2.8), min(60, h * n_rows + 1.6))
    axes = fig.subplots(n_rows, n_cols, squeeze=False, sharex=True, sharey=True)
    _margins(fig, 1.2, 1.6, 1.0, 0.9, wspace=0.12, hspace=0.6)
    import matplotlib as mpl
    cmap = mpl.colormaps["Reds"].with_extremes(bad="#eeeeee")
    image = None
    annotate = len(r_levels) * len(c_levels) <= 80
    for index in range(len(layout), n_rows * n_cols):  # the wrapped grid's empty tail
        axes[index // n_cols][index % n_cols].set_visible(False)
    for index, (pr, pc) in enumerate(layout):
        i, j = divmod(index, n_cols)
        ax = axes[i][j]
        k = np.full((len(r_levels), len(c_levels)), np.nan)
        n = np.zeros_like(k)
        part = by_panel.get((pr, pc))
        for (r, c), kk, nn in ([] if part is None else zip(part.index, part["k"], part["n"])):
            k[r_levels.index(r), c_levels.index(c)] = kk
            n[r_levels.index(r), c_levels.index(c)] = nn
        with np.errstate(divide="ignore", invalid="ignore"):
            rate = np.where(n > 0, k / n, np.nan)
        image = ax.imshow(np.ma.masked_invalid(rate), cmap=cmap, vmin=0, vmax=1, aspect="auto")
        if annotate:
            for (a, b), kk in np.ndenumerate(k):
                if n[a, b] > 0:
                    ax.text(b, a, f"{int(kk)}/{int(n[a, b])}", ha="center", va="center", fontsize=7,
                            color="white" if rate[a, b] > 0.6 else "black")
        ax.set_title(f"{panel_rows}={_label(pr)}\n{panel_cols}={_label(pc)}", fontsize=8)
        ax.set_xticks(range(len(c_levels)), [_label(c) for c in c_levels], rotation=45, fontsize=8)
        ax.set_yticks(range(len(r_levels)), [_label(r) for r in r_levels], fontsize=8)
        if index + n_cols >= len(layout):  # no panel below: label the axis, show its ticks
            ax.set_xlabel(f"{cols} (grid levels, log-spaced)" if cols == LR else cols, fontsize=8)
            ax.xaxis.set_tick_params(labelbottom=True)
        if j == 0:
            ax.set_ylabel(rows, fontsize=8)
    width, height = fig.get_size_inches()
    cax = fig.add_axes((1 - 1.3 / width, 1.0 / height, 0.15 / width, 1 - 1.7 / height))
    fig.colorbar(image, cax=cax, label="non-finite rate")
    fig.suptitle(f"Non-finite rate by {cols} × {rows}, per {panel_rows} × {panel_cols}", fontsize=11)
    return _save(fig, path)


def overview_chart(shares: pd.DataFrame, path: Path, panels: str = "optimizer.name",
                   lines: str = "clipping") -> Path | None:
    """The summary's opening picture (training.shares_along_lr): per panel, the share of runs
    non-finite (dashed) and the share that trained (solid) along the learning rate, one colour per
    line level; a log x axis with the grid's own learning rates as numeric ticks, y from 0 to 1."""
    data = shares.dropna(subset=["lr"])
    data = data[data["lr"] > 0]
    if data.empty or data["lr"].nunique() < 2:
        return None
    panel_levels = list(dict.fromkeys(data["panel"]))[:8]
    line_levels = list(dict.fromkeys(data["line"]))
    fig = _figure(min(16, 0.6 + 3.2 * len(panel_levels)), 3.4)
    axes = fig.subplots(1, len(panel_levels), squeeze=False, sharey=True)[0]
    _margins(fig, 0.7, 0.2, 1.35, 0.75, wspace=0.08)
    lrs = sorted(data["lr"].unique())
    for ax, panel in zip(axes, panel_levels):
        part = data[data["panel"] == panel]
        for i, line in enumerate(line_levels):
            one = part[part["line"] == line]
            if one.empty:
                continue
            color = f"C{i % 10}"
            name = f"{lines}={line}" if line != "all" else "every run"
            ax.plot(one["lr"], one["trained_share"], "-o", color=color, ms=3, lw=1.5, label=f"{name}: trained")
            ax.plot(one["lr"], one["nonfinite_share"], "--x", color=color, ms=4, lw=1.2,
                    label=f"{name}: non-finite")
        _log_axis(ax, "x", True)
        ax.set_xticks(lrs, [_label(v) for v in lrs], rotation=60, fontsize=7)
        ax.set_xlim(lrs[0] / 1.5, lrs[-1] * 1.5)
        ax.set_ylim(-0.03, 1.03)
        ax.set_yticks([0, 0.25, 0.5, 0.75, 1.0])
        ax.grid(alpha=0.3)
        ax.set_title(f"{panels}={panel}" if panel != "all" else "every run", fontsize=9)
        ax.set_xlabel(LR, fontsize=8)
    axes[0].set_ylabel("share of runs", fontsize=8)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)), fontsize=7, frameon=False)
    fig.suptitle(f"Share trained (solid) and non-finite (dashed)\nalong the learning rate, per {panels}", fontsize=9)
    return _save(fig, path)


def main_effects_chart(effects: pd.DataFrame, factors: list[str], path: Path) -> Path | None:
    """Non-finite rate per factor level with its 95% Wilson interval, one row per level."""
    data = effects[effects["factor"].isin(factors)]
    if data.empty:
        return None
    labels = [f"{f}={_label(v)}" for f, v in zip(data["factor"], data["level"])]
    y = np.arange(len(data))[::-1]
    rate = data["rate"].to_numpy(float)
    err = np.clip(np.vstack([rate - data["ci_low"].to_numpy(float),
                             data["ci_high"].to_numpy(float) - rate]), 0.0, None)
    order = list(dict.fromkeys(data["factor"]))
    colors = [f"C{order.index(f) % 10}" for f in data["factor"]]
    fig = _figure(8, 1.2 + 0.24 * len(data))
    _margins(fig, 0.3 + 0.065 * max(len(label) for label in labels), 0.3, 0.6, 0.4)
    ax = fig.subplots()
    ax.errorbar(rate, y, xerr=err, fmt="none", ecolor="#999999", elinewidth=2)
    ax.scatter(rate, y, c=colors, zorder=3, s=18)
    ax.set_yticks(y, labels, fontsize=8)
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.7, len(data) - 0.3)
    ax.set_xlabel("non-finite rate (nan or inf / runs, errors excluded), 95% Wilson interval")
    ax.grid(axis="x", alpha=0.3)
    fig.suptitle("Main effects: non-finite rate per factor level", fontsize=11)
    return _save(fig, path)


def speed_chart(speed: pd.DataFrame, path: Path) -> Path | None:
    """Median steady-state steps/s and median first-step (trace/compile) seconds per level."""
    data = speed.dropna(subset=["steps_per_s", "first_step_s"], how="all")
    if data.empty:
        return None
    labels = [f"{f}={_label(v)}" if f != "all" else "all runs" for f, v in zip(data["factor"], data["level"])]
    y = np.arange(len(data))[::-1]
    factors = list(dict.fromkeys(data["factor"]))
    colors = [f"C{factors.index(f) % 10}" for f in data["factor"]]
    fig = _figure(10, 1.3 + 0.25 * len(data))
    ax1, ax2 = fig.subplots(1, 2, sharey=True)
    longest = max(len(label) for label in labels)
    _margins(fig, 0.3 + 0.065 * longest, 0.2, 0.6, 0.4, wspace=0.05)
    # dots, not bars: a bar on a log axis has no meaningful base
    for ax, column, label in ((ax1, "steps_per_s", "median steps/s, steady state"),
                              (ax2, "first_step_s", "median first step incl. trace/compile, s")):
        values = _positive(data[column])
        ax.scatter(values, y, c=colors, s=22)
        log = bool(np.isfinite(values).any())
        _log_axis(ax, "x", log)
        ax.set_xlabel(label + (" (log)" if log else ""))
    ax1.set_yticks(y, labels, fontsize=8)
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
    fig.suptitle("Speed by factor level (runs that ran)", fontsize=11)
    return _save(fig, path)


def _positive(values: pd.Series) -> np.ndarray:
    """Values a log axis can show: non-finite and non-positive ones become gaps in the line
    (the figure marks where the run turned non-finite)."""
    v = pd.to_numeric(values, errors="coerce").to_numpy(float)
    return np.where(np.isfinite(v) & (v > 0), v, np.nan)


def contrast_curves(pairs: list[tuple[pd.Series, pd.Series, str, pd.DataFrame, pd.DataFrame]],
                    path: Path) -> Path | None:
    """Loss and gradient norm of a non-finite run beside a finite run that differs in one factor
    only, one row per pair (bad run, good run, factor, bad curve, good curve)."""
    if not pairs:
        return None
    fig = _figure(11, 0.5 + 3.4 * len(pairs))
    axes = fig.subplots(len(pairs), 2, squeeze=False)
    _margins(fig, 0.8, 0.2, 0.55, 0.3, wspace=0.22, hspace=0.45)
    for row, (bad, good, factor, bad_curve, good_curve) in zip(axes, pairs):
        runs = ((bad, bad_curve, "#b2182b"), (good, good_curve, "#2166ac"))
        for ax, column, title in zip(row, ("loss", "grad_norm"), ("loss", "gradient norm (before clipping)")):
            for run, curve, color in runs:
                ax.plot(curve["step"], _positive(curve[column]), color=color, linewidth=1.5,
                        label=f"{factor}={_label(run[factor])}: {run['outcome']}")
            step = bad.get("first_nonfinite_step")
            if step is not None and np.isfinite(step) and bad_curve["unit"].iloc[0] == "step":
                ax.axvline(step, color="#b2182b", linestyle="--", linewidth=1)
                ax.annotate(f" first non-finite: {bad['first_nonfinite_source']}", (step, 0.98),
                            xycoords=("data", "axes fraction"), fontsize=8, color="#b2182b", ha="left",
                            va="top", rotation=90)
            shown = np.concatenate([_positive(c[column]) for _, c, _ in runs])
            log = bool(np.isfinite(shown).any())  # a log axis needs one positive finite value
            _log_axis(ax, "y", log)
            ax.set_xlabel(bad_curve["unit"].iloc[0])
            ax.set_ylabel(title + (" (log)" if log else ""))
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8, loc="best")
        row[0].set_title(f"{bad['run_name']}: {factor} {_label(bad[factor])} ({bad['outcome']}) "
                         f"vs {_label(good[factor])} ({good['outcome']})", fontsize=9, loc="left")
    return _save(fig, path)
