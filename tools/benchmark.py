"""`make bench`: nanbench's speed, measured side by side, written to results/benchmark.{md,csv}.

Every figure is a median of repeated measurements taken in this one invocation, with the things
compared interleaved (A, B, A, B, ...) so that a noisy machine hits both alike. Speed is never
asserted in tests; this file is where it is measured.

    python tools/benchmark.py [--reps 3] [--out results] [--quick]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from nanbench.config import ROOT
PY = sys.executable

# The grid of the throughput comparison: 4 structures x 3 learning rates x 30 seeds = 360 runs.
# Process start (~8 s of TensorFlow and Keras imports, paid by both sides) is about half of
# nanbench's time on 240 runs and less on this; the peer needs ~2 s a run, so a grid large
# enough to hide it entirely would make the peer's 3 repetitions take well over an hour.
GRID = {"dataset": ["clean", "outliers"], "optimizer": ["sgd", "adam"]}
LRS = [0.001, 0.01, 0.1]
SEEDS = list(range(30))
EPOCHS = 20


def _median(xs):
    return statistics.median(xs)


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
    from nanbench.engines import fused
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
    fused.freeze_once()  # as the engine does after a process's first trace (else Python's full
    # collections rescan TensorFlow and Keras at random points of the measured runs)
    times: dict[str, list[float]] = {k: [] for k in candidates}
    for _ in range(reps):
        for name, fn in candidates.items():
            t = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - t) / steps * 1e3)
    return {k: _median(v) for k, v in times.items()}


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
            return (_median([m[name] for m in meds]), _median([m[ref] for m in meds]), _median(ratios),
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


def _nanbench_sweep(store: str, workdir: Path, jobs: int = 1, grid: dict | None = None,
                    lrs=LRS, seeds=SEEDS, epochs=EPOCHS, extra=()) -> tuple[float, int, str]:
    grid = grid or GRID
    cfg = workdir / f"bench_{len(lrs)}x{len(seeds)}.yaml"
    cfg.write_text(
        "defaults:\n  - config\n  - _self_\n"
        f"sweep:\n  name: bench\n  inner:\n    optimizer.lr: {list(lrs)}\n    train.seed: {list(seeds)}\n"
        f"train:\n  engine: fused\n  epochs: {epochs}\n")
    params = [f"{k}={','.join(v)}" for k, v in grid.items()]
    launcher = ["hydra/launcher=joblib", f"hydra.launcher.n_jobs={jobs}"] if jobs > 1 else []
    cmd = [PY, "-m", "nanbench", "-m", "--config-dir", str(workdir), "--config-name", cfg.stem, *params,
           f"tracking.uri={store}", f"sweep.results_dir={workdir}/results", "sweep.redo=true",
           f"hydra.sweep.dir={workdir}/hydra", "sweep.summarize=false", *launcher, *extra]
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t
    if proc.returncode not in (0, 1):
        raise RuntimeError(proc.stderr[-2000:])
    n = len(lrs) * len(seeds)
    for v in grid.values():
        n *= len(v)
    return wall, n, proc.stdout


def _peer_sweep(store: str, workdir: Path) -> tuple[float, int]:
    params = [f"{k}={','.join(v)}" for k, v in GRID.items()]
    cmd = [PY, str(ROOT / "tools" / "naive_peer.py"), "-m", *params,
           f"optimizer.lr={','.join(map(str, LRS))}", f"train.seed={','.join(map(str, SEEDS))}",
           f"train.epochs={EPOCHS}", "train.engine=fit", f"tracking.uri={store}", "tracking.experiment=bench",
           "hydra/sweeper=basic", "~hydra.callbacks.nanbench", f"hydra.sweep.dir={workdir}/peer"]
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    n = len(LRS) * len(SEEDS)
    for v in GRID.values():
        n *= len(v)
    return wall, n


def _outcomes(store: str) -> dict[str, str]:
    from mlflow.tracking import MlflowClient
    client = MlflowClient(store)
    exp = client.get_experiment_by_name("bench")
    runs = client.search_runs([exp.experiment_id], "tags.outcome != ''", max_results=10000)
    # keyed by every factor but the engine (config_hash includes train.engine, which differs)
    return {tuple(sorted((k, v) for k, v in r.data.params.items() if k != "train.engine")): r.data.tags["outcome"]
            for r in runs if r.data.params}


def throughput(reps: int, tmp: Path) -> list[dict]:
    ours, peer = [], []
    for rep in range(reps):
        a, b = tmp / f"a{rep}", tmp / f"b{rep}"
        a.mkdir()
        b.mkdir()
        wall, n, _ = _nanbench_sweep(f"sqlite:///{a}/m.db", a)
        ours.append(n / wall * 60)
        wall, n = _peer_sweep(f"sqlite:///{b}/m.db", b)
        peer.append(n / wall * 60)
    theirs_out = _outcomes(f"sqlite:///{tmp}/b0/m.db")
    ours_out = _outcomes(f"sqlite:///{tmp}/a0/m.db")
    same = sum(ours_out.get(h) == o for h, o in theirs_out.items())
    med_ours, med_peer = _median(ours), _median(peer)
    return [{"item": "2", "measure": f"runs/min end to end (process start included), {n}-run grid; "
                                     f"same outcome on {same}/{len(theirs_out)} runs",
             "nanbench": med_ours, "reference": med_peer,
             "reference_name": "naive peer: Hydra job per run, model.fit, MLflow per value",
             "ratio": med_ours / med_peer, "goal": ">= 30", "met": med_ours / med_peer >= 30}]


# The ad-hoc grid of the README as a user types it (no sweep file, no sweep.inner): 2 datasets x
# 4 optimizers x 5 learning rates x 3 clipping kinds = 120 runs; x 10 seeds = 1,200.
ADHOC = ["dataset=clean,outliers", "optimizer=sgd,adam,rmsprop,momentum",
         "optimizer.lr=0.0001,0.001,0.01,0.1,1.0", "clipping=none,clipnorm,global_clipnorm", "model=mlp",
         "dataset.n_samples=256", "dataset.n_features=10", "model.width=64", "model.depth=1", "train.epochs=20"]


def _adhoc(store: str, workdir: Path, *extra: str, peer: bool = False) -> float:
    """Seconds end to end for the ad-hoc grid typed on the command line, by nanbench or the peer."""
    if peer:
        cmd = [PY, str(ROOT / "tools" / "naive_peer.py"), "-m", *ADHOC, *extra, "train.engine=fit",
               "tracking.experiment=bench", "hydra/sweeper=basic", "~hydra.callbacks.nanbench"]
    else:
        cmd = [PY, "-m", "nanbench", "-m", *ADHOC, *extra, "sweep.name=bench", "sweep.summarize=false",
               f"sweep.results_dir={workdir}/results"]
    cmd += [f"tracking.uri={store}", f"hydra.sweep.dir={workdir}/hydra"]
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode not in (0, 1):
        raise RuntimeError(proc.stderr[-2000:])
    return time.perf_counter() - t


def adhoc(reps: int, tmp: Path) -> list[dict]:
    """Item 7: the ad-hoc grid as typed, 120 and 1,200 runs (train.seed=range(10)), against the
    naive peer typed the same way on the 120 runs (its cost per run does not fall with the grid's
    size, and 1,200 of its runs would take hours), repetitions interleaved."""
    rates: dict[str, list[float]] = {"120": [], "1200": [], "peer": []}
    for rep in range(reps):
        for kind, extra, n in (("120", (), 120), ("1200", ("train.seed=range(10)",), 1200), ("peer", (), 120)):
            d = tmp / f"adhoc_{kind}_{rep}"
            d.mkdir()
            rates[kind].append(n / _adhoc(f"sqlite:///{d}/m.db", d, *extra, peer=kind == "peer") * 60)
    ours, theirs = _outcomes(f"sqlite:///{tmp}/adhoc_120_0/m.db"), _outcomes(f"sqlite:///{tmp}/adhoc_peer_0/m.db")
    same = sum(ours.get(key) == o for key, o in theirs.items())
    peer = _median(rates["peer"])
    rows = []
    for kind, goal in (("120", None), ("1200", 100)):
        ratio = _median(rates[kind]) / peer
        rows.append({"item": "7", "measure": f"ad-hoc grid as typed (README), {kind} runs, runs/min end to end; "
                                             f"same outcome on {same}/{len(theirs)} of the 120 runs",
                     "nanbench": _median(rates[kind]), "reference": peer,
                     "reference_name": "naive peer on the 120 runs", "ratio": ratio,
                     "goal": f">= {goal}" if goal else "", "met": ratio >= goal if goal else None})
    return rows


def workers(reps: int, tmp: Path) -> list[dict]:
    """`make sweep JOBS=2` vs `make sweep` (JOBS=1): the default sweep, end to end, each in its own
    store. Hydra's joblib launcher runs the jobs on 2 workers; nanbench's sweeper hands each
    worker whole groups of jobs that share traced graphs."""
    one, two, outcomes = [], [], set()
    for rep in range(reps):
        for jobs, out in ((1, one), (2, two)):
            d = tmp / f"w{jobs}_{rep}"
            d.mkdir()
            cmd = ["make", "sweep", f"JOBS={jobs}", f"PY={PY}", "STAMP=",
                   f"ARGS=tracking.uri=sqlite:///{d}/m.db sweep.results_dir={d}/results sweep.summarize=false "
                   f"hydra.sweep.dir={d}/hydra"]
            t = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
            out.append(time.perf_counter() - t)
            if proc.returncode not in (0, 1):
                raise RuntimeError(proc.stderr[-2000:])
            outcomes.add(next(line for line in proc.stdout.splitlines() if " done in " in line).split(" s: ", 1)[1])
    speedup = _median(one) / _median(two)
    same = "same outcome counts" if len(outcomes) == 1 else f"outcome counts differ: {sorted(outcomes)}"
    return [{"item": "6", "measure": f"`make sweep` of the default sweep, seconds end to end, "
                                     f"JOBS=2 vs JOBS=1; {same}",
             "nanbench": _median(two), "reference": _median(one), "reference_name": "JOBS=1",
             "ratio": speedup, "goal": ">= 1.7 (speed-up)", "met": speedup >= 1.7}]


def scaling(tmp: Path, reps: int, sizes=(100, 1000, 10000)) -> list[dict]:
    """Runs/s at growing sizes of a cheap grid (one Hydra job), three ways: the sweep's wall time
    (imports, store creation and the trace included, so it rises as those amortize); the job's
    loop, from its first run to its last write flushed, less its first run (data, build and
    trace, once per job), which still holds the job's end: waiting for the store to write its
    last batch; and the steady state: runs started per second from the second run's start to the
    last run's (MLflow start times), which holds every run's training and hand-off to the store,
    also its waits when the store falls behind (the pipe to it is bounded), and none of a job's
    one-time costs at either end. The steady state is flat if nothing grows with the number of
    runs: the store, the write queue, memory. Each size is measured `reps` times, sizes
    interleaved, each time into a new store."""
    from mlflow.tracking import MlflowClient
    kinds = {"wall": "sweep wall", "loop": "job loop less its first run",
             "steady": "steady state (run starts 2..n)"}
    values: dict[str, dict[int, list[float]]] = {k: {n: [] for n in sizes} for k in kinds}
    for rep in range(reps):
        for n in sizes:
            d = tmp / f"s{n}_{rep}"
            d.mkdir()
            seeds = list(range(n // 10))
            _, _, stdout = _nanbench_sweep(f"sqlite:///{d}/m.db", d,
                                           grid={"dataset": ["doc000_clean"], "optimizer": ["sgd"]},
                                           lrs=[10.0 ** -k for k in range(1, 11)], seeds=seeds, epochs=5,
                                           extra=["model=linear"])
            client = MlflowClient(f"sqlite:///{d}/m.db")
            exp = client.get_experiment_by_name("bench")
            parent = client.search_runs([exp.experiment_id], "tags.`nanbench.role` = 'parent'")[0]
            runs = client.search_runs([exp.experiment_id], "tags.`nanbench.role` = 'child'", max_results=50000)
            runs.sort(key=lambda r: r.info.start_time)  # the first loads the data, builds, traces
            job_rate = float(re.search(r"\(([\d.]+) runs/s\)", stdout).group(1))  # the job's line
            values["loop"][n].append((n - 1) / (n / job_rate - runs[0].data.metrics["wall_s"]))
            values["steady"][n].append((n - 2) / ((runs[-1].info.start_time - runs[1].info.start_time) / 1e3))
            values["wall"][n].append(n / parent.data.metrics["wall_s"])
            shutil.rmtree(d, ignore_errors=True)
    rows = []
    for n in sizes:
        for kind, label in kinds.items():
            v = values[kind][n]
            rows.append({"item": "5", "measure": f"runs/s at {n} runs (doc000_clean, linear, SGD, 5 epochs): {label}; "
                                                 f"{len(v)} reps {min(v):.0f}-{max(v):.0f}",
                         "nanbench": _median(v), "reference": None, "reference_name": "",
                         "ratio": _median(v) / _median(values[kind][sizes[0]]),
                         "goal": "flat" if kind == "steady" else "", "met": None})
    flat = [r for r in rows if r["goal"] == "flat"]
    spread = max(r["nanbench"] for r in flat) / min(r["nanbench"] for r in flat)
    for r in flat:  # flat: medians within 15% of each other (repeated per-step measurements spread 8-16%)
        r["met"] = spread <= 1.15
    return rows


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


def write(rows: list[dict], machine: dict, out: Path, elapsed: float) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "benchmark.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["item", "measure", "nanbench", "reference", "reference_name", "ratio",
                                          "goal", "met"])
        w.writeheader()
        w.writerows(rows)

    def fmt(v):
        return "" if v is None else (f"{v:.3g}" if isinstance(v, float) else str(v))

    lines = ["# nanbench benchmark", "",
             f"Machine: {machine['cpu']}, {machine['cores']} cores; GPU: {machine['gpu']}. "
             f"Python {machine['python']}, TensorFlow {machine['tensorflow']}, Keras {machine['keras']}, "
             f"NumPy {machine['numpy']}, MLflow {machine['mlflow']}.",
             f"Produced by `make bench` in {elapsed:.0f} s. Figures are medians of repeated, interleaved "
             "measurements; ratios are taken within this one run. CPU only: no GPU was available, so no "
             "GPU rows were measured." if machine["gpu"] == "none" else "", "",
             "| # | measure | nanbench | reference | ratio | goal | met |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        ref = f"{fmt(r['reference'])} ({r['reference_name']})" if r["reference"] is not None else ""
        met = {True: "yes", False: "**no**", None: ""}[r["met"]]
        lines.append(f"| {r['item']} | {r['measure']} | {fmt(r['nanbench'])} | {ref} | {fmt(r['ratio'])} | "
                     f"{r['goal']} | {met} |")
    (out / "benchmark.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3, help="repetitions of each measurement (>= 3)")
    parser.add_argument("--out", default=str(ROOT / "results"), help="folder for benchmark.md and .csv")
    parser.add_argument("--quick", action="store_true", help="scaling up to 1,000 runs only")
    parser.add_argument("--per-step-child", type=int, metavar="THREADS", help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if args.per_step_child is not None:
        print(json.dumps(per_step_child(args.per_step_child, args.reps)))
        return
    start = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="nanbench-bench-"))
    try:
        machine = _machine()
        rows = per_step(args.reps)
        print(json.dumps(rows, default=str), flush=True)
        rows += workers(args.reps, tmp)
        print(json.dumps(rows[-1], default=str), flush=True)
        rows += throughput(args.reps, tmp)
        print(json.dumps(rows[-1], default=str), flush=True)
        rows += adhoc(args.reps, tmp)
        print(json.dumps(rows[-2:], default=str), flush=True)
        rows += harness_overhead()
        rows += scaling(tmp, args.reps, (100, 1000) if args.quick else (100, 1000, 10000))
        rows += summary_scale()
        rows.sort(key=lambda r: r["item"])
        write(rows, machine, Path(args.out), time.perf_counter() - start)
        print((Path(args.out) / "benchmark.md").read_text())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
