"""Bench item 12: a long run's resident memory grows by its per-step record only.

One run of an MLP (clean data, model=mlp width 256 x 2 hidden layers: ~69,000 weights) through
`python -m nanbench` with the fused engine and forensics on, at 100 and at 10,000 optimizer steps,
each in a fresh process; the figure is each process's peak resident set size (os.wait4's
ru_maxrss). Keeping every step's weights and gradients would cost 10,000 x 2 x 69,000 x 4 bytes,
about 5.5 GB, at the long budget; the per-step record is a few numbers per step. Goal: the long
run's peak within 1.5x of the short run's (issue 31: a ~6,000-step run was killed at 17.3 GB).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from nanbench.config import ROOT
from tools.bench_sweeps import median

SHORT, LONG = 100, 10_000
MODEL = ["dataset=clean", "model=mlp", "model.width=256", "model.depth=2", "optimizer=sgd", "optimizer.lr=0.001",
         "train.engine=fused"]


def peak_rss_mb(steps: int, tmp: Path) -> float:
    """Peak resident memory (MB) of one `python -m nanbench` run of `steps` steps, in its own process."""
    store = f"sqlite:///{tmp / f'memory-{steps}.db'}"
    proc = subprocess.Popen([sys.executable, "-m", "nanbench", *MODEL, f"train.steps={steps}",
                             f"tracking.uri={store}"], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"the {steps}-step run failed (exit {os.waitstatus_to_exitcode(status)})")
    return usage.ru_maxrss / 1024.0  # Linux: kilobytes


def long_run_memory(reps: int, tmp: Path) -> list[dict]:
    """Item 12: peak resident memory at 10,000 steps over that at 100 steps (median of `reps`)."""
    short, long = [], []
    for _ in range(reps):  # interleaved, as every bench item
        short.append(peak_rss_mb(SHORT, tmp))
        long.append(peak_rss_mb(LONG, tmp))
    s, l = median(short), median(long)
    return [{"item": "12", "measure": f"peak resident MB of a {LONG:,}-step MLP run (fused, forensics) vs "
                                      f"{SHORT} steps", "nanbench": l, "reference": s,
             "reference_name": f"{SHORT}-step run", "ratio": l / s, "goal": "<= 1.5", "met": l / s <= 1.5}]
