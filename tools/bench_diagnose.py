"""The benchmark's diagnosis item: `python -m nanbench.diagnose` end to end on a small failing
configuration (unscaled features and target, SGD: NaN within a few steps), as shipped (the fused
engine, tries of one structure side by side) and with every run trained alone by Keras's fit
(train.engine=fit, sweep.side_by_side=1), repetitions interleaved; both must reach the same
ranked remedies."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from nanbench.config import ROOT
from tools.bench_sweeps import PY, median

CONFIG = ["dataset=unscaled", "optimizer=sgd"]   # the README's example: 256 rows, 20 epochs, 3 seeds


def _diagnose(workdir: Path, *extra: str) -> tuple[float, dict]:
    cmd = [PY, "-m", "nanbench.diagnose", *CONFIG, *extra, f"tracking.uri=sqlite:///{workdir}/m.db",
           f"diagnose.out={workdir}/out"]
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    return wall, json.loads(proc.stdout.strip().splitlines()[-1])


def diagnosis(reps: int, tmp: Path) -> list[dict]:
    """Item 11: a diagnosis's seconds end to end (process start included), shipped vs fit alone."""
    walls: dict[str, list[float]] = {"shipped": [], "fit": []}
    answers: dict[str, list[str]] = {}
    runs = 0
    for rep in range(reps):
        for label, extra in (("shipped", ()), ("fit", ("train.engine=fit", "sweep.side_by_side=1"))):
            d = tmp / f"diagnose_{label}_{rep}"
            d.mkdir()
            wall, s = _diagnose(d, *extra)
            walls[label].append(wall)
            answers.setdefault(label, [m["change"] for m in s["remedies"]])
            runs = s["runs"]
    same = "same" if answers["shipped"] == answers["fit"] else "different"
    ours, ref = median(walls["shipped"]), median(walls["fit"])
    return [{"item": "11", "measure": f"diagnose {' '.join(CONFIG)} ({runs} runs + its boundary search), wall s "
                                      f"end to end; {same} ranked remedies",
             "nanbench": ours, "reference": ref, "reference_name": "every run alone with fit",
             "ratio": ref / ours, "goal": "<= 60 s", "met": ours <= 60}]
