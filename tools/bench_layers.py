"""The benchmark's forensics-cost items, each a fused run beside the same run without one part of
its forensics, one row per model: item 10, the per-layer gradient norms (nanbench.locate's
steps.csv columns); item T, time to target's whole-data loss at each epoch's end
(fused.Trainer(target=False) leaves it out). The replay that names a run's first non-finite layer
runs once per failing run, never per step, so stable runs measure the whole per-step cost."""

from __future__ import annotations

import json
import subprocess
import time

from nanbench.config import ROOT
from tools.bench_sweeps import PY, median

# each on its dataset, 20 epochs of batch 32: every run stays finite
SETTINGS = {
    "linear (Dense 10-1)": ["dataset=clean", "model=linear"],
    "MLP 10-64-1": ["dataset=clean", "model=mlp", "model.width=64"],
    "MLP 10-64-64-64-1": ["dataset=clean", "model=mlp", "model.width=64", "model.depth=3"],
    "MLP + BatchNorm 10-64-1": ["dataset=clean", "model=mlp_batchnorm", "model.width=64"],
    "LSTM 32 units, 20 steps x 4": ["dataset=sequences", "model=lstm"],
}


# time to target: its cost per step is one forward pass per epoch, the most with few steps an
# epoch (2 here: batch 128 of 256 rows); with the whole data in one batch no pass is made
TARGET_SETTINGS = {
    **{f"{name}, batch 32": overrides for name, overrides in SETTINGS.items()},
    "MLP 10-64-1, batch 128 (2 steps an epoch)": ["dataset=clean", "model=mlp", "model.width=64",
                                                  "train.batch_size=128"],
    "MLP 10-64-1, batch 256 (the whole data)": ["dataset=clean", "model=mlp", "model.width=64",
                                                "train.batch_size=256"],
}
KNOBS = {"layers": SETTINGS, "target": TARGET_SETTINGS}  # the Trainer argument turned off -> its settings


def layers_child(reps: int, knob: str = "layers") -> dict:
    """In a fresh process: per setting, the median ms per step of a fused run with the forensics
    part `knob` (a fused.Trainer argument: layers, target) and without (every trainer traced and
    warmed first; `reps` interleaved runs)."""
    from nanbench.config import compose
    from nanbench.data import load
    from nanbench.engines import base, fused
    from nanbench.run import configure_tensorflow
    from nanbench.spec import from_config

    configure_tensorflow()
    out = {}
    for name, overrides in KNOBS[knob].items():
        spec = from_config(compose(["optimizer=adam", "optimizer.lr=0.001", "train.batch_size=32",
                                    "train.epochs=20", "train.engine=fused", *overrides]))
        data = load(spec.dataset, spec.preprocess)
        trainers = {on: fused.Trainer(spec, data.n_features, "/CPU:0", **{knob: on}) for on in (True, False)}
        steps = len(trainers[True].run(spec, data.X, data.y).series)
        for t in trainers.values():
            t.run(spec, data.X, data.y), t.run(spec, data.X, data.y)
        base.freeze_once()
        times = {layers: [] for layers in trainers}
        for _ in range(reps):
            for layers, trainer in trainers.items():
                t0 = time.perf_counter()
                trainer.run(spec, data.X, data.y)
                times[layers].append((time.perf_counter() - t0) / steps * 1e3)
        out[name] = {"with": median(times[True]), "without": median(times[False]), "steps": steps}
    return out


def layer_forensics(reps: int, processes: int = 3, knob: str = "layers") -> list[dict]:
    """Item 10 (knob layers) or T (knob target): each setting in `processes` fresh processes; the
    ratio is taken within each."""
    runs = []
    for _ in range(processes):
        proc = subprocess.run([PY, "-m", "tools.benchmark", f"--{knob}-child", "--reps", str(max(reps, 20))],
                              capture_output=True, text=True, cwd=ROOT)
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr[-2000:])
        runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    item, what, reference = {"layers": ("10", "per-layer gradient norms vs global forensics only",
                                        "fused, global forensics only"),
                             "target": ("T", "time to target (the whole data's loss at each epoch's end) vs "
                                             "without", "fused, forensics without time to target")}[knob]
    rows = []
    for name in KNOBS[knob]:
        ratios = [r[name]["with"] / r[name]["without"] for r in runs]
        ratio = median(ratios)
        rows.append({"item": item, "measure": f"ms per step, fused with {what}; {name}, {runs[0][name]['steps']} "
                                              f"steps; {len(runs)} processes, ratios {min(ratios):.3f}-{max(ratios):.3f}",
                     "nanbench": median([r[name]["with"] for r in runs]),
                     "reference": median([r[name]["without"] for r in runs]),
                     "reference_name": reference, "ratio": ratio, "goal": "<= 1.10", "met": ratio <= 1.10})
    return rows
