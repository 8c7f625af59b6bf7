"""The benchmark's layer-forensics item: what the per-layer gradient norms (nanbench.locate's
steps.csv columns) cost a fused run's step, beside the same run with only the global forensics;
one row per model. The replay that names a run's first non-finite layer runs once per failing
run, never per step, so stable runs measure the whole per-step cost."""

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


def layers_child(reps: int) -> dict:
    """In a fresh process: per setting, the median ms per step of a fused run with per-layer
    gradient norms and without (every trainer traced and warmed first; `reps` interleaved runs)."""
    from nanbench.config import compose
    from nanbench.data import load
    from nanbench.engines import base, fused
    from nanbench.run import configure_tensorflow
    from nanbench.spec import from_config

    configure_tensorflow()
    out = {}
    for name, overrides in SETTINGS.items():
        spec = from_config(compose([*overrides, "optimizer=adam", "optimizer.lr=0.001", "train.batch_size=32",
                                    "train.epochs=20", "train.engine=fused"]))
        data = load(spec.dataset, spec.preprocess)
        trainers = {layers: fused.Trainer(spec, data.n_features, "/CPU:0", layers=layers) for layers in (True, False)}
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


def layer_forensics(reps: int, processes: int = 3) -> list[dict]:
    """Item 10: each setting in `processes` fresh processes; the ratio is taken within each."""
    runs = []
    for _ in range(processes):
        proc = subprocess.run([PY, "-m", "tools.benchmark", "--layers-child", "--reps", str(max(reps, 20))],
                              capture_output=True, text=True, cwd=ROOT)
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr[-2000:])
        runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    rows = []
    for name in SETTINGS:
        ratios = [r[name]["with"] / r[name]["without"] for r in runs]
        ratio = median(ratios)
        rows.append({"item": "10", "measure": f"ms per step, fused with per-layer gradient norms vs global forensics "
                                              f"only; {name}, {runs[0][name]['steps']} steps; {len(runs)} processes, "
                                              f"ratios {min(ratios):.3f}-{max(ratios):.3f}",
                     "nanbench": median([r[name]["with"] for r in runs]),
                     "reference": median([r[name]["without"] for r in runs]),
                     "reference_name": "fused, global forensics only", "ratio": ratio, "goal": "<= 1.10",
                     "met": ratio <= 1.10})
    return rows
