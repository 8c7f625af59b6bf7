"""MLflow: one MLflow run per training run, written in as few calls as possible.

A run is recorded once it has finished: ``create_run`` (with the real start time), one
``log_batch`` with params, tags and metrics, the per-step series as a CSV artifact, and
``set_terminated``. Non-finite numbers never reach MLflow as metric values (its UI fails on
them); they are recorded as the outcome tag, 0/1 metrics and the first-non-finite steps.
"""

from __future__ import annotations

import functools
import io
import logging
import os
import subprocess
import time
import urllib.request
from pathlib import Path

import numpy as np

from nanbench.result import RunResult
from nanbench.spec import ConfigError, TrackingSpec
from nanbench.forensics import INF_BIT, NAN_BIT, SKIPPED_BIT, SOURCES

DB_SCHEMES = ("postgresql", "mysql", "mssql")
MAX_EPOCH_POINTS = 100  # per-epoch curves longer than this are thinned; steps.csv keeps everything


def _quiet() -> None:
    """MLflow logs schema migrations of a new SQLite store at INFO: keep them off the terminal."""
    for name in ("alembic", "mlflow", "mlflow.store.db.utils"):
        logging.getLogger(name).setLevel(logging.WARNING)


_pragmas_installed = False


def _fast_sqlite() -> None:
    """Open SQLite stores in WAL mode with synchronous=NORMAL (once per process).

    MLflow commits every call in its own transaction; with SQLite's default rollback journal each
    commit is several fsyncs, and readers block the writer. WAL keeps commits durable against a
    crash of the process (not of the machine) at a fraction of the cost, and lets parallel
    workers read while one writes. The setting is SQLite's own and stays with the file.
    """
    global _pragmas_installed
    if _pragmas_installed:
        return
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    @event.listens_for(Engine, "connect")
    def _on_connect(dbapi_connection, _record):  # noqa: ANN001 - SQLAlchemy's signature
        if type(dbapi_connection).__module__.startswith("sqlite3"):
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=30000")  # wait for a parallel writer, don't fail
            cursor.close()

    _pragmas_installed = True


def sqlite_path(uri: str) -> Path | None:
    return Path(uri[len("sqlite:///"):]) if uri.startswith("sqlite:///") else None


def check_uri(uri: str) -> None:
    """Fail early, with one line naming tracking.uri, when the store cannot be used."""
    path = sqlite_path(uri)
    if path is not None:
        parent = path.parent if str(path.parent) else Path(".")
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError("tracking.uri", "an SQLite file in a writable directory",
                              f"{uri}: {exc.strerror}") from None
        if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
            raise ConfigError("tracking.uri", "an SQLite file in a writable directory",
                              f"{uri}: not writable")
        return
    if uri.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=5) as reply:
                reply.read()
        except Exception as exc:  # noqa: BLE001 - any failure means unreachable
            raise ConfigError("tracking.uri", "a reachable MLflow tracking server",
                              f"{uri}: {exc}") from None
        return
    if uri.split(":", 1)[0].split("+", 1)[0] in DB_SCHEMES:
        return
    raise ConfigError("tracking.uri", "sqlite:///PATH, http(s)://HOST:PORT or a database URI "
                      "(MLflow 3's file store is deprecated)", uri)


@functools.lru_cache(maxsize=1)
def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, timeout=5).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


@functools.lru_cache(maxsize=1)
def versions() -> dict[str, str]:
    import keras
    import tensorflow as tf
    return {"tensorflow_version": tf.__version__, "keras_version": keras.__version__,
            "numpy_version": np.__version__}


def run_name(spec) -> str:
    """A name a person can read, e.g. ``outliers/none · mlp-relu · sgd lr=0.1 · clipnorm=1 · mse``."""
    model = spec.model.name if spec.model.name == "linear" else (
        f"mlp-{spec.model.activation}" + (f"x{spec.model.depth}" if spec.model.depth > 1 else ""))
    clip = "noclip" if spec.clipping.kind == "none" else f"{spec.clipping.kind}={spec.clipping.threshold:g}"
    parts = [f"{spec.dataset.name}/{spec.preprocess.scaler}", model,
             f"{spec.optimizer.name} lr={spec.optimizer.lr:g}", clip, spec.loss.name]
    if spec.train.precision != "float32":
        parts.append(spec.train.precision)
    return " · ".join(parts)


def steps_csv(result: RunResult) -> str:
    """The per-step series as CSV: step, epoch, loss, grad_norm, weight_norm, flags, source bits."""
    s = result.series
    buf = io.StringIO()
    cols = ["step", "epoch", "loss", "grad_norm", "weight_norm", "flags"]
    cols += [f"{src}_{kind}" for src in SOURCES for kind in ("inf", "nan")] + ["skipped"]
    buf.write(",".join(cols) + "\n")
    flags = np.asarray(s.flags, dtype=np.int64)
    for i in range(s.steps):
        f = int(flags[i])
        bits = [int(bool(f & b)) for src in SOURCES for b in (INF_BIT[src], NAN_BIT[src])]
        values = ",".join(repr(float(v)) for v in (s.loss[i], s.grad_norm[i], s.weight_norm[i]))
        buf.write(f"{i},{i // s.steps_per_epoch},{values},{f},"
                  + ",".join(map(str, bits)) + f",{int(bool(f & SKIPPED_BIT))}\n")
    return buf.getvalue()


def _epoch_metrics(result: RunResult, log_steps: bool) -> list[tuple[str, float, int]]:
    """Per-epoch loss and largest gradient norm, finite values only (the UI's charts).

    The weight norm and every per-step value are in the steps.csv artifact: each metric costs
    a row in MLflow's store, and rows are most of the cost of recording a run."""
    s = result.series
    out: list[tuple[str, float, int]] = []
    # at most ~MAX_EPOCH_POINTS points per curve: long runs are thinned evenly (last epoch kept)
    stride = max(1, -(-len(s.epoch_loss) // MAX_EPOCH_POINTS))
    keep = set(range(0, len(s.epoch_loss), stride)) | {len(s.epoch_loss) - 1}
    for epoch, value in enumerate(s.epoch_loss):
        if epoch in keep and np.isfinite(value):
            out.append(("loss", float(value), epoch))
    for epoch, start in enumerate(range(0, s.steps, s.steps_per_epoch)):
        if epoch not in keep:
            continue
        grad = s.grad_norm[start:start + s.steps_per_epoch]
        grad = grad[np.isfinite(grad)]
        if grad.size:
            out.append(("grad_norm", float(grad.max()), epoch))
    if log_steps:
        for name, values in (("step_loss", s.loss), ("step_grad_norm", s.grad_norm)):
            out += [(name, float(v), i) for i, v in enumerate(values) if np.isfinite(v)]
    return out


class Tracker:
    """Writes RunResults to one MLflow tracking store."""

    def __init__(self, spec: TrackingSpec):
        check_uri(spec.uri)
        from mlflow.tracking import MlflowClient
        _quiet()
        if sqlite_path(spec.uri) is not None:
            _fast_sqlite()
        self.spec = spec
        self.client = MlflowClient(tracking_uri=spec.uri)
        self._experiments: dict[str, str] = {}

    def artifact_root(self) -> Path | None:
        if self.spec.artifacts:
            return Path(self.spec.artifacts).resolve()
        path = sqlite_path(self.spec.uri)
        return path.resolve().parent / "mlartifacts" if path is not None else None

    def experiment_id(self, name: str) -> str:
        """The id of experiment `name`, created (with a local artifact root for SQLite) if missing."""
        if name not in self._experiments:
            exp = self.client.get_experiment_by_name(name)
            if exp is None:
                root = self.artifact_root()
                location = (root / name).as_uri() if root is not None else None
                try:
                    exp_id = self.client.create_experiment(name, artifact_location=location)
                except Exception:  # noqa: BLE001 - created meanwhile by another worker
                    exp = self.client.get_experiment_by_name(name)
                    if exp is None:
                        raise
                    exp_id = exp.experiment_id
            else:
                exp_id = exp.experiment_id
            self._experiments[name] = exp_id
        return self._experiments[name]

    def _write_artifact(self, run, name: str, text: str) -> None:
        """A local artifact store is a folder: write the file in place (what log_text would copy
        there through a temporary file); any other store goes through MLflow's API."""
        uri = run.info.artifact_uri
        if uri.startswith("file://"):
            folder = Path(urllib.request.url2pathname(uri[len("file://"):]))
            folder.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(text)
        else:
            self.client.log_text(run.info.run_id, text, name)

    def log(self, result: RunResult, *, experiment: str | None = None, parent_run_id: str | None = None,
            tags: dict[str, str] | None = None, start_time: float | None = None) -> str:
        """Record one finished run; returns its run id."""
        from mlflow.entities import Metric, Param

        spec = result.spec
        exp_id = self.experiment_id(experiment or spec.tracking.experiment)
        v = result.verdict
        all_tags = {
            "outcome": result.outcome,
            "first_nonfinite_source": (v.first_nonfinite_source if v else None) or "none",
            "device": result.device,
            "engine": spec.train.engine,
            "config_hash": spec.config_hash(),
            "git_commit": git_commit(),
            **versions(),
            **(tags or {}),
        }
        if result.error:
            all_tags["error"] = result.error[:5000]
        if parent_run_id:
            all_tags["mlflow.parentRunId"] = parent_run_id
        now_ms = int(time.time() * 1000)
        start_ms = int((start_time if start_time is not None else time.time() - result.wall_s) * 1000)
        # tags go in with the run itself: log_batch would merge them one SELECT at a time
        name = all_tags["mlflow.runName"] = run_name(spec)
        run = self.client.create_run(exp_id, start_time=start_ms, run_name=name,
                                     tags={k: str(v) for k, v in all_tags.items()})
        run_id = run.info.run_id
        metrics: list[Metric] = []

        def add(name: str, value, step: int = 0) -> None:
            if value is not None and np.isfinite(value):
                metrics.append(Metric(name, float(value), now_ms, step))

        flags = {"is_nan": result.outcome == "nan", "is_inf": result.outcome == "inf",
                 "is_nonfinite": result.outcome in ("nan", "inf"),
                 "is_diverged": result.outcome == "diverged", "is_error": result.outcome == "error"}
        for name, flag in flags.items():
            add(name, int(flag))
        for name in ("data_s", "build_s", "first_step_s", "train_s", "wall_s", "steps_per_s",
                     "samples_per_s", "steps_run", "n_samples"):
            add(name, getattr(result, name))
        if v is not None:
            for name in ("initial_loss", "final_loss", "min_loss", "first_nonfinite_step",
                         "first_inf_step", "first_nan_step"):
                add(name, getattr(v, name))
        if result.series is not None:
            metrics += [Metric(n, val, now_ms, step) for n, val, step in
                        _epoch_metrics(result, self.spec.log_steps)]
        params = [Param(k, str(val)) for k, val in spec.factors().items()]
        self.client.log_batch(run_id, metrics=metrics[:1000], params=params)
        for start in range(1000, len(metrics), 1000):
            self.client.log_batch(run_id, metrics=metrics[start:start + 1000])
        if result.series is not None:
            self._write_artifact(run, "steps.csv", steps_csv(result))
        self.client.set_terminated(run_id, status="FAILED" if result.outcome == "error" else "FINISHED")
        return run_id
