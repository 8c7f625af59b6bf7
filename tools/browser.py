"""What the screenshot tour drives: the system Chromium (Playwright never downloads one), an
MLflow UI over a smoke sweep's store, and what that store holds (the truth each page is checked
against)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from nanbench.config import ROOT


SWEEP = "smoke"


# Chromium in a closed network: without the background-networking flags its start-up connections
# are refused and slow it down; Playwright adds --headless and a fresh temporary --user-data-dir.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")


VIEWPORT = {"width": 1600, "height": 1000}


TIMEOUT_MS = 60_000  # first render of MLflow's React app is slow on a busy 2-core machine


# The UI as a person using nanbench wants it: the "Model training" layout (runs first, not GenAI
# traces) and the assistant panel closed. Plain local-storage preferences of MLflow's UI; if a later
# UI renames them, pages merely look different. Sandboxed frames (an HTML artifact's preview) have
# no localStorage: only the top frame sets them.
UI_PREFERENCES = """
if (window === window.top) {
  try {
    localStorage.setItem('mlflow.workflowType_v1', JSON.stringify('machine_learning'));
    localStorage.setItem('mlflow.assistant.panelOpen_v1', 'false');
    localStorage.setItem('mlflow.assistant.fab.autoOpenedOnFirstLoad_v1', 'true');
  } catch (e) {}
}
"""


# What MLflow's UI shows when a page or a section fails (its error boundaries and loaders).
ERROR_TEXT = re.compile(r"Something went wrong|Oops|Error while loading|couldn't load|Page not found",
                        re.IGNORECASE)


# Requests that fail on every page of a server without authentication: not errors of the data.
BENIGN_HTTP = ("/ajax-api/2.0/mlflow/users/current",)


class TourError(AssertionError):
    """A page did not show what it should; the message names the step and its screenshot."""


def find_chromium() -> str | None:
    """The Chromium to drive: $NANBENCH_CHROMIUM, else the first of CHROMIUM_NAMES on PATH."""
    explicit = os.environ.get("NANBENCH_CHROMIUM")
    if explicit:
        return explicit if Path(explicit).exists() else None
    return next((path for name in CHROMIUM_NAMES if (path := shutil.which(name))), None)


def missing_requirements() -> list[str]:
    """What the browser tour needs and this machine lacks, each with how to install it."""
    missing = []
    try:
        import playwright  # noqa: F401
    except ImportError:
        missing.append("the playwright package (pip install -e '.[dev]')")
    if find_chromium() is None:
        missing.append("Chromium (apt-get install chromium, or set NANBENCH_CHROMIUM=/path/to/chrome)")
    return missing


def run_smoke_sweep(workdir: Path, timeout: float = 900) -> tuple[str, Path]:
    """Run sweeps/smoke.yaml into `workdir`; return its store URI and the HTML report's path."""
    workdir = workdir.resolve()
    store = f"sqlite:///{workdir / 'mlflow.db'}"
    cmd = [sys.executable, "-m", "nanbench", "-m", "--config-dir", str(ROOT / "sweeps"), "--config-name", SWEEP,
           f"tracking.uri={store}", f"sweep.results_dir={workdir}", f"hydra.sweep.dir={workdir}/hydra"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"the {SWEEP} sweep failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return store, workdir / SWEEP / "summary.html"


@dataclass(frozen=True)
class Expected:
    """What the store holds, read with MlflowClient: the truth each page is checked against."""
    experiment: str
    experiment_id: str
    parent_id: str
    parent_name: str
    children: dict[str, str]        # run id -> run name
    summary_files: list[str]        # artifact paths under summary/
    bad_id: str                     # a NaN run, else an inf run
    bad_name: str
    bad_outcome: str
    bad_metrics: dict[str, float]
    bad_loss_points: int            # finite per-epoch loss values logged
    filter: str                     # the search box's text
    filtered: dict[str, str]        # run id -> name of the runs the filter matches


def expected_from_store(store: str, experiment: str = SWEEP) -> Expected:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(store)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        raise TourError(f"no experiment {experiment!r} in {store}")
    runs = client.search_runs([exp.experiment_id], max_results=10_000)
    parents = [r for r in runs if r.data.tags.get("nanbench.role") == "parent"]
    if not parents:
        raise TourError(f"experiment {experiment!r} has no parent run (tag nanbench.role=parent)")
    parent = max(parents, key=lambda r: r.info.start_time)
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    bad = ([r for r in children if r.data.tags.get("outcome") == "nan"]
           or [r for r in children if r.data.tags.get("outcome") == "inf"])
    if not bad:
        raise TourError(f"no child run of {parent.info.run_id} has outcome nan or inf")
    bad_run = bad[0]
    outcome = bad_run.data.tags["outcome"]
    optimizer = bad_run.data.params["optimizer.name"]
    # the README's example: outcome and a factor; a dotted param name is quoted with backticks
    text = f"tags.outcome = '{outcome}' and params.`optimizer.name` = '{optimizer}'"
    filtered = client.search_runs([exp.experiment_id], text, max_results=10_000)
    files = [a.path for a in client.list_artifacts(parent.info.run_id, "summary")]
    return Expected(
        experiment=experiment, experiment_id=exp.experiment_id,
        parent_id=parent.info.run_id, parent_name=parent.info.run_name,
        children={r.info.run_id: r.info.run_name for r in children}, summary_files=files,
        bad_id=bad_run.info.run_id, bad_name=bad_run.info.run_name, bad_outcome=outcome,
        bad_metrics=dict(bad_run.data.metrics),
        bad_loss_points=len(client.get_metric_history(bad_run.info.run_id, "loss")),
        filter=text, filtered={r.info.run_id: r.info.run_name for r in filtered})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def mlflow_ui(store: str, port: int | None = None, timeout: float = 180) -> Iterator[str]:
    """`mlflow ui` over `store` on 127.0.0.1; yields its base URL; always shut down on exit.

    The server runs in its own process group (it starts uvicorn as a child), which is signalled
    as a whole: TERM, then KILL if it has not exited 15 s later."""
    port = port or free_port()
    base = f"http://127.0.0.1:{port}"
    # no usage telemetry (nowhere to send it); no server job runner (GenAI scorers and trace
    # rollups, unused by nanbench: it is 8 more processes and 5 s more start-up on 2 cores)
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", store,
                             "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while True:  # poll the health endpoint until it answers (or the server dies)
            if proc.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"mlflow ui exited with {proc.returncode}:\n"
                                   + log.read().decode(errors="replace")[-3000:])
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=2) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"mlflow ui did not answer on {base} within {timeout:.0f} s")
            time.sleep(0.25)
        yield base
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()


@contextmanager
def chromium(executable: str | None = None) -> Iterator[object]:
    """Headless Chromium (the system's, never a downloaded one) driven by Playwright."""
    from playwright.sync_api import sync_playwright

    executable = executable or find_chromium()
    if executable is None:
        raise RuntimeError("no Chromium found: " + "; ".join(missing_requirements()))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
