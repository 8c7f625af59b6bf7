"""`make bench`: nanbench's speed, measured side by side, written to results/benchmark.{md,csv}.

Every figure is a median of repeated measurements taken in this one invocation, with the things
compared interleaved (A, B, A, B, ...) so that a noisy machine hits both alike. Speed is never
asserted in tests; this file is where it is measured.

    python -m tools.benchmark [--reps 3] [--out results] [--quick] [--items 7,8,9]

With --items only those items are measured; the other rows are carried over from the folder's
benchmark.csv, each marked with the commit it was measured on.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from nanbench.config import ROOT
from nanbench.tracking.record import git_commit
from tools.bench_diagnose import diagnosis
from tools.bench_layers import layer_forensics, layers_child
from tools.bench_memory import long_run_memory
from tools.bench_side import default_sweep, side_by_side, side_child
from tools.bench_sweeps import EPOCHS, PY, adhoc, median, scaling, throughput, workers


def _machine() -> dict:
    import keras
    import mlflow
    import numpy as np
    import tensorflow as tf
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpus = tf.config.list_physical_devices("GPU")
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "tensorflow": tf.__version__, "keras": keras.__version__, "numpy": np.__version__,
            "mlflow": mlflow.__version__, "gpu": ", ".join(g.name for g in gpus) or "none"}


# ---------------------------------------------------------------------------------------------
# 1 and 4: per-step cost of the fused engine vs a minimal hand-written loop; forensics on/off


def per_step_child(threads: int, reps: int) -> dict[str, float]:
    """In a fresh process: the median ms per step of each candidate over `reps` interleaved runs."""
    import numpy as np
    import tensorflow as tf

    from nanbench.config import compose
    from nanbench.data import load
    from nanbench.engines import base, fused
    from nanbench.model import build_loss, build_model, build_optimizer, reset_model
    from nanbench.run import configure_tensorflow
    from nanbench.spec import from_config

    configure_tensorflow(threads or None)
    spec = from_config(compose(["dataset=clean", "model=mlp", "model.width=64", "optimizer=adam",
                                       "train.batch_size=32", f"train.epochs={EPOCHS}", "train.engine=fused"]))
    data = load(spec.dataset, spec.preprocess)
    steps = EPOCHS * 8
    with_f = fused.Trainer(spec, data.n_features, "/CPU:0", forensics=True)
    without_f = fused.Trainer(spec, data.n_features, "/CPU:0", forensics=False)

    # The limit: the same Keras model, optimizer and loss in the smallest whole-run tf.function
    # (fixed-order batches by slicing, no forensics, no per-step outputs), reset the same way as
    # the fused engine (precomputed initial values assigned inside the function).
    model = build_model(spec.model, data.n_features, seed=0)
    opt = build_optimizer(spec.optimizer, spec.clipping)
    loss_fn = build_loss(spec.loss)
    opt.build(model.trainable_variables)
    reset_model(model, 0)
    state = model.variables + opt.variables
    start = [v.numpy() for v in state]

    @tf.function(input_signature=[tf.TensorSpec([None, data.n_features]), tf.TensorSpec([None, 1]),
                                  [tf.TensorSpec(v.shape, tf.as_dtype(v.dtype)) for v in state]])
    def minimal(X, y, initial):
        for v, value in zip(state, initial):
            v.assign(value)

        def body(i, _):
            s = (i % 8) * 32
            with tf.GradientTape() as tape:
                loss = loss_fn(y[s:s + 32], model(X[s:s + 32], training=True))
            opt.apply(tape.gradient(loss, model.trainable_variables), model.trainable_variables)
            return i + 1, loss
        return tf.while_loop(lambda i, _: i < steps, body, (tf.constant(0), tf.constant(0.0)))[1]

    def run_minimal():
        minimal(data.X, data.y, start).numpy()

    candidates = {"fused": lambda: with_f.run(spec, data.X, data.y),
                  "fused_no_forensics": lambda: without_f.run(spec, data.X, data.y),
                  "minimal": run_minimal}
    for fn in candidates.values():  # trace and warm up
        fn(), fn(), fn()
    base.freeze_once()  # as the engine does after a process's first trace (else Python's full
    # collections rescan TensorFlow and Keras at random points of the measured runs)
    times: dict[str, list[float]] = {k: [] for k in candidates}
    for _ in range(reps):
        for name, fn in candidates.items():
            t = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - t) / steps * 1e3)
    return {k: median(v) for k, v in times.items()}


def per_step(reps: int, processes: int = 5) -> list[dict]:
    """Items 1 and 4, each measured in `processes` fresh processes (a process's step time moves
    with where its memory and threads land; ratios are taken within each process, side by side),
    with TensorFlow's default threads (as `make sweep`) and with one thread (as each JOBS=2 worker)."""
    runs: dict[int, list[dict[str, float]]] = {0: [], 1: []}
    for _ in range(processes):
        for threads in runs:  # interleaved
            proc = subprocess.run([PY, "-m", "tools.benchmark", "--per-step-child", str(threads), "--reps", str(max(reps, 30))],
                                  capture_output=True, text=True, cwd=ROOT)
            if proc.returncode != 0:
                raise RuntimeError(proc.stderr[-2000:])
            runs[threads].append(json.loads(proc.stdout.strip().splitlines()[-1]))
    rows = []
    for threads, label in ((0, "TensorFlow's default threads"), (1, "one TensorFlow thread")):
        meds = runs[threads]

        def summary(name, ref):
            ratios = [m[name] / m[ref] for m in meds]
            return (median([m[name] for m in meds]), median([m[ref] for m in meds]), median(ratios),
                    f"{len(meds)} processes, ratios {min(ratios):.3f}-{max(ratios):.3f}")
        a, b, r, spread = summary("fused", "minimal")
        rows.append({"item": "1", "measure": f"ms per step, whole run incl. reset (MLP 10-64-1, batch 32, 160 steps); "
                                             f"{label}; {spread}",
                     "nanbench": a, "reference": b, "reference_name": "minimal tf.function loop",
                     "ratio": r, "goal": "<= 1.5", "met": r <= 1.5})
        a, b, r, spread = summary("fused", "fused_no_forensics")
        rows.append({"item": "4", "measure": f"ms per step, fused with forensics vs without; {label}; {spread}",
                     "nanbench": a, "reference": b, "reference_name": "fused, forensics off",
                     "ratio": r, "goal": "<= 1.10", "met": r <= 1.10})
    return rows


# ---------------------------------------------------------------------------------------------
# 2 and 6: sweep throughput through the real CLIs


def harness_overhead(store: str = "sqlite:///results/mlflow.db") -> list[dict]:
    """Item 3, from the latest `make sweep` of the default grid in the project's store."""
    from mlflow.tracking import MlflowClient
    path = ROOT / "results" / "mlflow.db"
    if not path.exists():
        return [{"item": "3", "measure": "default sweep: run `make sweep` first", "nanbench": None,
                 "reference": None, "reference_name": "", "ratio": None, "goal": "<= 1.5", "met": None}]
    client = MlflowClient(f"sqlite:///{path}")
    exp = client.get_experiment_by_name("default")
    parent = client.search_runs([exp.experiment_id], "tags.`nanbench.role` = 'parent'",
                                order_by=["attributes.start_time DESC"], max_results=1)[0]
    children = client.search_runs([exp.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
                                  max_results=50000)
    train = sum(r.data.metrics.get("first_step_s", 0) + r.data.metrics.get("train_s", 0) for r in children)
    wall = parent.data.metrics["wall_s"]
    return [{"item": "3", "measure": f"default sweep ({len(children)} runs): sweep wall s / sum of engine s "
                                     "(trace + training)",
             "nanbench": wall, "reference": train, "reference_name": "sum of engine time",
             "ratio": wall / train, "goal": "<= 1.5", "met": wall / train <= 1.5}]


def summary_scale() -> list[dict]:
    from tools.synthetic import time_summary
    seconds = time_summary(10000)
    return [{"item": "S", "measure": "summarize 10,000 runs (seconds)", "nanbench": seconds, "reference": None,
             "reference_name": "", "ratio": None, "goal": "<= 10 s", "met": seconds <= 10}]


FIELDS = ["item", "measure", "nanbench", "reference", "reference_name", "ratio", "goal", "met", "commit"]


def item_order(row: dict) -> tuple:
    """Rows in item order: 1, 2, ..., 10, 11, then lettered items (S)."""
    item = str(row["item"])
    return (0, int(item), "") if item.isdigit() else (1, 0, item)


def carried(out: Path, items: set[str]) -> list[dict]:
    """The rows of the folder's benchmark.csv for items not measured now, as they were written."""
    path = out / "benchmark.csv"
    if not path.exists():
        return []
    rows = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            if row["item"] in items:
                continue
            for key in ("nanbench", "reference", "ratio"):
                row[key] = float(row[key]) if row.get(key) not in (None, "") else None
            row["met"] = {"True": True, "False": False}.get(row.get("met"))
            row["commit"] = row.get("commit") or "an earlier commit"
            rows.append(row)
    return rows


def write(rows: list[dict], machine: dict, out: Path, elapsed: float, items: set[str] | None = None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    commit = git_commit()[:10]
    for row in rows:
        row.setdefault("commit", commit)
    if items is not None:
        rows = sorted(rows + carried(out, items), key=item_order)
    with open(out / "benchmark.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        w.writeheader()
        w.writerows(rows)

    def fmt(v):
        return "" if v is None else (f"{v:.3g}" if isinstance(v, float) else str(v))

    lines = ["# nanbench benchmark", "",
             f"Machine: {machine['cpu']}, {machine['cores']} cores; GPU: {machine['gpu']}. "
             f"Python {machine['python']}, TensorFlow {machine['tensorflow']}, Keras {machine['keras']}, "
             f"NumPy {machine['numpy']}, MLflow {machine['mlflow']}.",
             f"Produced by `make bench` on commit {commit} in {elapsed:.0f} s"
             + (f" (items {', '.join(sorted(items))}; every other row is carried over from an earlier run, "
                "marked with its commit)" if items is not None else "")
             + ". Figures are medians of repeated, interleaved measurements; ratios are taken within one run."
             + (" CPU only: no GPU was available, so no GPU rows were measured." if machine["gpu"] == "none" else ""),
             "",
             "| # | measure | nanbench | reference | ratio | goal | met | commit |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ref = f"{fmt(r['reference'])} ({r['reference_name']})" if r["reference"] is not None else ""
        met = {True: "yes", False: "**no**", None: ""}[r["met"]]
        lines.append(f"| {r['item']} | {r['measure']} | {fmt(r['nanbench'])} | {ref} | {fmt(r['ratio'])} | "
                     f"{r['goal']} | {met} | {r['commit']} |")
    (out / "benchmark.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3, help="repetitions of each measurement (>= 3)")
    parser.add_argument("--out", default=str(ROOT / "results"), help="folder for benchmark.md and .csv")
    parser.add_argument("--quick", action="store_true", help="scaling up to 1,000 runs only")
    parser.add_argument("--items", help="measure only these items (comma-separated, e.g. 7,8,9)")
    parser.add_argument("--per-step-child", type=int, metavar="THREADS", help=argparse.SUPPRESS)
    parser.add_argument("--side-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--layers-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--target-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if args.per_step_child is not None:
        print(json.dumps(per_step_child(args.per_step_child, args.reps)))
        return
    if args.side_child:
        print(json.dumps(side_child(args.reps)))
        return
    if args.layers_child or args.target_child:
        print(json.dumps(layers_child(args.reps, "layers" if args.layers_child else "target")))
        return
    items = set(args.items.split(",")) if args.items else None
    if items is not None and items & {"1", "4"}:
        items |= {"1", "4"}  # one measurement gives both
    start = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="nanbench-bench-"))
    measures = [("1", lambda: per_step(args.reps)), ("6", lambda: workers(args.reps, tmp)),
                ("2", lambda: throughput(args.reps, tmp)), ("7", lambda: adhoc(args.reps, tmp)),
                ("8", lambda: side_by_side(args.reps)), ("9", lambda: default_sweep(args.reps, tmp)),
                ("10", lambda: layer_forensics(args.reps)),
                ("T", lambda: layer_forensics(args.reps, knob="target")),
                ("11", lambda: diagnosis(args.reps, tmp)),
                ("12", lambda: long_run_memory(args.reps, tmp)),
                ("3", harness_overhead),
                ("5", lambda: scaling(tmp, args.reps, (100, 1000) if args.quick else (100, 1000, 10000))),
                ("S", summary_scale)]
    try:
        machine = _machine()
        rows: list[dict] = []
        for item, measure in measures:
            if items is None or item in items:
                rows += measure()
                print(json.dumps(rows[-1], default=str), flush=True)
        rows.sort(key=item_order)
        write(rows, machine, Path(args.out), time.perf_counter() - start, items)
        print((Path(args.out) / "benchmark.md").read_text())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
