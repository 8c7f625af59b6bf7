"""Runs/s an MLflow server on PostgreSQL records, by server workers and writer processes.

What a cluster sweep's recording costs: every worker process of every machine is a writer that
records its finished runs as nanbench does for an MLflow server (``Tracker.log_many`` ->
``create_run``, ``log_batch``, the steps.csv artifact uploaded to the server, ``set_terminated``:
four HTTP requests a run). The runs are real RunResults of synthetic step series
(nanbench.synthetic: nothing trains), so the figure is the recording path alone. For each number
of ``mlflow server --workers`` W, N writer processes start together (a barrier after each has
opened its client and recorded one run) and each records its share of the runs; the rate is all
runs over the time from the first writer's start to the last one's end.

``--direct`` adds the same writers pointed at the PostgreSQL database itself
(``postgresql+psycopg://``, the tracking URI a worker can use instead of the server): nanbench's
bulk path, each batch of runs one transaction (artifacts in a local folder).

    .venv/bin/python -m tools.server_rate --server-workers 1,2,4 --writers 1,2,4,8 --runs 96 --direct

Everything runs on this machine: the writers share its cores with the server and PostgreSQL,
which is what a loopback test can measure; on a real cluster the writers' CPU is elsewhere.
Prints a Markdown table and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from nanbench.cluster import server
from nanbench.cluster.check import free_port

BATCH = 24  # runs handed to log_many at once (a smoke job's worth; the client path goes run by run)


def _writer(uri: str, experiment: str, specs_slice: tuple[int, int], n_total: int, barrier, results,
            artifacts: str | None) -> None:
    from nanbench.spec import TrackingSpec
    from nanbench.synthetic import PLANTED_GRID, grid_specs, synthetic_result
    from nanbench.tracking import Tracker

    lo, hi = specs_slice
    specs = grid_specs(PLANTED_GRID, n_runs=n_total + 1)
    items = [synthetic_result(s) for s in specs[lo:hi]]
    tracker = Tracker(TrackingSpec(uri=uri, experiment=experiment, artifacts=artifacts))
    tracker.log_many([(synthetic_result(specs[-1]), time.time())], experiment=experiment,
                     tags={"warm": "1"})  # the client, its connections and the experiment, before the clock
    barrier.wait()
    t0 = time.time()
    for i in range(0, len(items), BATCH):
        tracker.log_many([(r, time.time()) for r in items[i:i + BATCH]], experiment=experiment,
                         tags={"nanbench.role": "child"})
    results.put((t0, time.time(), len(items)))


def measure(uri: str, experiment: str, writers: int, runs: int, artifacts: str | None = None) -> float:
    ctx = multiprocessing.get_context("spawn")  # each writer opens its own client after it starts
    barrier, results = ctx.Barrier(writers), ctx.Queue()
    share = [runs // writers + (1 if i < runs % writers else 0) for i in range(writers)]
    bounds, lo = [], 0
    for n in share:
        bounds.append((lo, lo + n))
        lo += n
    procs = [ctx.Process(target=_writer, args=(uri, experiment, b, runs, barrier, results, artifacts))
             for b in bounds]
    for p in procs:
        p.start()
    got = [results.get(timeout=900) for _ in procs]
    for p in procs:
        p.join()
    t0, t1, n = min(g[0] for g in got), max(g[1] for g in got), sum(g[2] for g in got)
    return n / (t1 - t0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--server-workers", default="1,2,4")
    parser.add_argument("--writers", default="1,4,8")
    parser.add_argument("--runs", type=int, default=96, help="runs recorded per measurement (all writers)")
    parser.add_argument("--direct", action="store_true", help="also the writers straight into PostgreSQL")
    args = parser.parse_args(argv)
    workers = [int(w) for w in args.server_workers.split(",") if w]
    writers = [int(w) for w in args.writers.split(",") if w]
    folder = Path(tempfile.mkdtemp(prefix="nb-rate-"))
    os.chmod(folder, 0o755)  # as root, PostgreSQL runs as postgres
    rows = []
    port, pg_port = free_port(), free_port()
    try:
        for w in workers:
            srv = server.start(folder / "server", port=port, pg_port=pg_port, workers=w, quiet=True)
            for n in writers:
                rate = measure(srv.url, f"rate_w{w}_n{n}", n, args.runs)
                rows.append({"path": "mlflow server", "server_workers": w, "writers": n, "runs": args.runs,
                             "runs_per_s": round(rate, 1)})
                print(f"server workers {w}, writers {n}: {rate:.1f} runs/s", file=sys.stderr, flush=True)
            server.stop(folder / "server", quiet=True)
        if args.direct:
            server.start_postgres(folder / "server", pg_port)
            os.environ["PGPASSWORD"] = server._secret(folder / "server")
            uri = f"postgresql+psycopg://{server.ROLE}@127.0.0.1:{pg_port}/{server.DATABASE}"
            for n in writers:
                rate = measure(uri, f"direct_n{n}", n, args.runs, artifacts=str(folder / "direct-artifacts"))
                rows.append({"path": "PostgreSQL directly (bulk)", "server_workers": 0, "writers": n,
                             "runs": args.runs, "runs_per_s": round(rate, 1)})
                print(f"direct, writers {n}: {rate:.1f} runs/s", file=sys.stderr, flush=True)
    finally:
        server.stop(folder / "server", quiet=True)
        shutil.rmtree(folder, ignore_errors=True)
    print("| path | server workers | writers | runs | runs/s |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['path']} | {r['server_workers'] or '-'} | {r['writers']} | {r['runs']} | {r['runs_per_s']} |")
    print(json.dumps({"cpus": os.cpu_count(), "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
