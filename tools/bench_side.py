"""The benchmark's side-by-side items: runs trained side by side (nanbench.engines.batched)
against the same runs one at a time (the fused engine) and against the smallest hand-written
batched loop; and the default sweep with and without side-by-side calls."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from nanbench.config import ROOT
from tools.bench_sweeps import PY, median

# MLP 10 -> 64 -> 1 on 256 rows, batch 32, 20 epochs: 160 steps a run (as item 1)
PROBLEM = ["dataset=clean", "model=mlp", "model.width=64", "optimizer=adam", "train.batch_size=32",
           "train.epochs=20", "train.engine=fused"]
SIZES = (1, 8, 32, 64, 128)


def side_child(reps: int) -> dict:
    """In a fresh process: steady-state runs/s of R runs side by side for each R in SIZES, of the
    same runs one at a time on the fused engine, and of a minimal batched loop (no Keras, no
    forensics: batched matmuls, MSE, Adam's update) at each R; every candidate traced and warmed
    first, then measured `reps` times interleaved."""
    import numpy as np
    import tensorflow as tf

    from nanbench.config import compose
    from nanbench.data import load
    from nanbench.engines import base, batched, fused
    from nanbench.run import configure_tensorflow
    from nanbench.spec import from_config

    configure_tensorflow()
    specs = [from_config(compose([*PROBLEM, f"optimizer.lr={lr:g}"]), multirun=True)
             for lr in np.geomspace(1e-4, 1e-1, max(SIZES))]
    data = load(specs[0].dataset, specs[0].preprocess)
    trainer = fused.Trainer(specs[0], data.n_features, "/CPU:0")

    def minimal_fn():
        steps = 160

        @tf.function(input_signature=[tf.TensorSpec([None, None, 10]), tf.TensorSpec([None, None, 1]),
                                      tf.TensorSpec([None])])
        def loop(X, y, lr):
            runs = tf.shape(X)[0]
            w = [tf.random.stateless_uniform([runs, 10, 64], [0, 1], -0.3, 0.3), tf.zeros([runs, 64]),
                 tf.random.stateless_uniform([runs, 64, 1], [0, 2], -0.3, 0.3), tf.zeros([runs, 1])]
            m = [tf.zeros_like(v) for v in w]
            v2 = [tf.zeros_like(v) for v in w]
            lr_ = [tf.reshape(lr, [-1] + [1] * (len(t.shape) - 1)) for t in w]

            def body(i, w, m, v2):
                s = (i % 8) * 32
                with tf.GradientTape() as tape:
                    tape.watch(w)
                    h = tf.nn.relu(tf.matmul(X[:, s:s + 32], w[0]) + w[1][:, None])
                    p = tf.matmul(h, w[2]) + w[3][:, None]
                    loss = tf.reduce_sum(tf.reduce_mean(tf.square(p - y[:, s:s + 32]), axis=[1, 2]))
                g = tape.gradient(loss, w)
                t = tf.cast(i + 1, tf.float32)
                m = [a + (b - a) * 0.1 for a, b in zip(m, g)]
                v2 = [a + (b * b - a) * 0.001 for a, b in zip(v2, g)]
                alpha = tf.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t)
                w = [a - r * alpha * b / (tf.sqrt(c) + 1e-7) for a, b, c, r in zip(w, m, v2, lr_)]
                return i + 1, w, m, v2
            return tf.while_loop(lambda i, *_: i < steps, body, (tf.constant(0), w, m, v2))[1][0]
        return loop

    minimal = minimal_fn()
    X = {R: np.stack([data.X] * R) for R in SIZES}
    y = {R: np.stack([data.y] * R) for R in SIZES}
    lrs = {R: np.array([s.optimizer.lr for s in specs[:R]], np.float32) for R in SIZES}
    candidates = {"fused": (1, lambda: trainer.run(specs[0], data.X, data.y))}
    for R in SIZES:
        candidates[f"side_{R}"] = (R, lambda R=R: batched.train_together(specs[:R], [data] * R, "/CPU:0"))
        candidates[f"minimal_{R}"] = (R, lambda R=R: minimal(X[R], y[R], lrs[R]).numpy())
    for _, fn in candidates.values():  # trace and warm up
        fn(), fn()
    base.freeze_once()
    rates: dict[str, list[float]] = {k: [] for k in candidates}
    for _ in range(reps):
        for name, (runs, fn) in candidates.items():
            t = time.perf_counter()
            fn()
            rates[name].append(runs / (time.perf_counter() - t))
    return {k: median(v) for k, v in rates.items()}


def side_by_side(reps: int, processes: int = 3) -> list[dict]:
    """Item 8, in `processes` fresh processes; ratios taken within each process, side by side."""
    meds = []
    for _ in range(processes):
        proc = subprocess.run([PY, "-m", "tools.benchmark", "--side-child", "--reps", str(max(reps, 10))],
                              capture_output=True, text=True, cwd=ROOT)
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr[-2000:])
        meds.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    rows = []
    for R in SIZES:
        vs_fused = [m[f"side_{R}"] / m["fused"] for m in meds]
        vs_minimal = [m[f"minimal_{R}"] / m[f"side_{R}"] for m in meds]
        goal = R >= 32
        rows.append({"item": "8", "measure": f"runs/s, {R} runs side by side vs the same runs one at a time "
                                             f"(fused); MLP 10-64-1, Adam, 160 steps; {len(meds)} processes, "
                                             f"ratios {min(vs_fused):.2f}-{max(vs_fused):.2f}",
                     "nanbench": median([m[f"side_{R}"] for m in meds]), "reference": median([m["fused"] for m in meds]),
                     "reference_name": "fused, one run at a time", "ratio": median(vs_fused),
                     "goal": ">= 6" if goal else "", "met": median(vs_fused) >= 6 if goal else None})
        rows.append({"item": "8", "measure": f"runs/s, minimal hand-written batched loop vs {R} runs side by side "
                                             f"(no Keras, no forensics); ratios {min(vs_minimal):.2f}-{max(vs_minimal):.2f}",
                     "nanbench": median([m[f"side_{R}"] for m in meds]),
                     "reference": median([m[f"minimal_{R}"] for m in meds]),
                     "reference_name": "minimal batched loop", "ratio": median(vs_minimal),
                     "goal": "<= 1.5" if goal else "", "met": median(vs_minimal) <= 1.5 if goal else None})
    return rows


def _default_sweep(store: str, workdir: Path, *extra: str) -> tuple[float, float, dict[str, str]]:
    """The default sweep end to end: seconds, the sum of its runs' engine seconds, and each run's
    outcome by configuration."""
    from mlflow.tracking import MlflowClient
    cmd = [PY, "-m", "nanbench", "-m", "--config-dir", "sweeps", "--config-name", "default",
           f"tracking.uri={store}", f"sweep.results_dir={workdir}/results", "sweep.summarize=false",
           f"hydra.sweep.dir={workdir}/hydra", *extra]
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t
    if proc.returncode not in (0, 1):
        raise RuntimeError(proc.stderr[-2000:])
    client = MlflowClient(store)
    exp = client.get_experiment_by_name("default")
    runs = client.search_runs([exp.experiment_id], "tags.`nanbench.role` = 'child'", max_results=50000)
    engine = sum(r.data.metrics.get("first_step_s", 0) + r.data.metrics.get("train_s", 0) for r in runs)
    return wall, engine, {r.data.tags["config_hash"]: r.data.tags["outcome"] for r in runs}


# Item 9's two ways of running the default sweep: as it runs now (its data groups folded into
# 16 Hydra jobs, runs of one structure side by side), and as it ran before issue 20 (a Hydra job
# per combination of the grid, 224, and every run alone on the fused engine).
NOW, BEFORE = "now", "before"
WAYS = {NOW: (), BEFORE: ("hydra.sweeper.fold=false", "sweep.side_by_side=1")}


def default_sweep(reps: int, tmp: Path) -> list[dict]:
    """Item 9: the default sweep (6,720 runs) as it runs now and as it ran before issue 20
    (WAYS), repetitions interleaved; every run's outcome compared."""
    walls: dict[str, list[float]] = {way: [] for way in WAYS}
    engines: dict[str, list[float]] = {way: [] for way in WAYS}
    outcomes: dict[str, dict[str, str]] = {}
    for rep in range(reps):
        for way, extra in WAYS.items():
            d = tmp / f"default_{way}_{rep}"
            d.mkdir()
            wall, engine, out = _default_sweep(f"sqlite:///{d}/m.db", d, *extra)
            walls[way].append(wall)
            engines[way].append(engine)
            outcomes.setdefault(way, out)
    same = sum(outcomes[NOW].get(h) == o for h, o in outcomes[BEFORE].items())
    n = len(outcomes[BEFORE])
    rows = []
    for label, values, goal in (("wall s end to end", walls, 3.0), ("sum of the runs' engine s (traces included)", engines, None)):
        ratio = median(values[BEFORE]) / median(values[NOW])
        rows.append({"item": "9", "measure": f"default sweep ({n} runs), {label}: data groups folded into 16 jobs and "
                                             f"runs side by side vs 224 jobs and runs one at a time; same outcome on "
                                             f"{same}/{n} runs; {reps} reps",
                     "nanbench": median(values[NOW]), "reference": median(values[BEFORE]),
                     "reference_name": "hydra.sweeper.fold=false sweep.side_by_side=1 (as before issue 20)",
                     "ratio": ratio, "goal": f">= {goal:g} (speed-up)" if goal else "",
                     "met": ratio >= goal if goal else None})
    return rows
