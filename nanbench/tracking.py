"""MLflow: one MLflow run per training run, written in as few transactions as possible.

A run is recorded once it has finished, with its real start and end time: params, tags, metrics
and the per-step series as a CSV artifact. Into a database store (SQLite by default) a batch of
finished runs goes in one transaction, as the rows MLflow's own calls would write; an MLflow
server gets ``create_run``, ``log_batch`` and ``set_terminated`` per run. Non-finite numbers never
reach MLflow as metric values (its UI fails on them); they are recorded as the outcome tag, 0/1
metrics and the first-non-finite steps.
"""

from __future__ import annotations

import functools
import io
import logging
import os
import shutil
import subprocess
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nanbench.result import RunResult
from nanbench.spec import ConfigError, TrackingSpec
from nanbench.forensics import INF_BIT, NAN_BIT, SKIPPED_BIT, SOURCES

DB_SCHEMES = ("postgresql", "mysql", "mssql")
# The experiment tag MLflow's UI reads to choose an experiment's view where its workflow selector
# is off: "custom_model_development" opens it on its training runs ("Model training"). Where the
# selector is on (MLflow 3.17's UI), the view comes from the browser's choice or from the URL's
# `workflowType` parameter instead: ui_runs_url gives an experiment's runs in that view.
EXPERIMENT_KIND, MODEL_TRAINING = "mlflow.experimentKind", "custom_model_development"


def ui_runs_url(base: str, experiment_id: str) -> str:
    """The MLflow UI's page of an experiment's training runs, in the "Model training" view
    whatever the browser chose before (the workflowType parameter overrides it)."""
    return f"{base}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"


def experiments(uri: str) -> list[tuple[str, str]]:
    """(id, name) of a SQLite store's active experiments, read-only and without MLflow (empty for
    other stores, a missing file, or one MLflow has not migrated yet)."""
    import sqlite3
    path = sqlite_path(uri)
    if path is None or not path.is_file():
        return []
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as conn:
            return [(str(i), n) for i, n in conn.execute(
                "select experiment_id, name from experiments where lifecycle_stage = 'active' "
                "and name != 'Default' order by experiment_id")]
    except sqlite3.Error:
        return []
MAX_EPOCH_POINTS = 100  # per-epoch curves longer than this are thinned; steps.csv keeps everything


def _quiet() -> None:
    """MLflow logs schema migrations of a new SQLite store at INFO, and database errors with
    their tracebacks, and prints a link per run to an MLflow server: keep them off the terminal."""
    # an MLflow server's client prints two links per run it terminates ("View run ... at"): a
    # sweep's line per job says what happened
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    for name in ("alembic", "mlflow", "mlflow.store.db.utils"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # a database error (a full disk, a locked or broken file) is logged there with its traceback
    # before MLflow raises it; nanbench reports the raised error itself, in one line
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)


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


def cache_dir() -> Path:
    """Where nanbench keeps what it can rebuild: $NANBENCH_CACHE, else $XDG_CACHE_HOME/nanbench
    (~/.cache/nanbench)."""
    if os.environ.get("NANBENCH_CACHE"):
        return Path(os.environ["NANBENCH_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "nanbench"


def empty_store_template() -> Path:
    """An SQLite file holding MLflow's tables and nothing else, built once per MLflow and
    SQLAlchemy version by MLflow's own migrations (``_initialize_tables``, what its store runs on
    a new database: some 60 alembic migrations, about 2 s on the project machine)."""
    import mlflow
    import sqlalchemy
    from mlflow.store.db.utils import _initialize_tables

    template = cache_dir() / f"mlflow-{mlflow.__version__}-sqlalchemy-{sqlalchemy.__version__}-empty.db"
    if not template.exists():
        template.parent.mkdir(parents=True, exist_ok=True)
        tmp = template.with_name(f"{template.name}.{uuid.uuid4().hex}.tmp")
        try:
            engine = sqlalchemy.create_engine(f"sqlite:///{tmp}")
            try:
                _initialize_tables(engine)
            finally:
                engine.dispose()
            os.replace(tmp, template)  # whole or not at all, whoever builds it too
        finally:
            for leftover in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
                leftover.unlink(missing_ok=True)
    return template


def seed_sqlite_store(path: Path) -> bool:
    """Start a new SQLite store as a copy of the empty-store template instead of migrating it.

    MLflow then opens it as it would any store of its schema (it checks the revision, and creates
    the default experiment with this store's artifact root). An existing file is never touched:
    the copy is linked into place only if nothing is there. Any failure leaves the work to
    MLflow's own migrations. Returns whether the store was seeded."""
    if path.exists():
        return False
    try:
        template = empty_store_template()
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        try:
            shutil.copyfile(template, tmp)
            os.link(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return True
    except Exception:  # noqa: BLE001 - an optimization only; MLflow builds the store itself
        return False


def sqlite_path(uri: str) -> Path | None:
    return Path(uri[len("sqlite:///"):]) if uri.startswith("sqlite:///") else None


def check_uri(uri: str) -> None:
    """Fail early, in well under a second and with one line naming tracking.uri, when the store
    cannot be used (MLflow itself would retry for minutes, then raise)."""
    path = sqlite_path(uri)
    if path is not None:
        check_sqlite(uri, path)
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


SQLITE_ALLOWED = "an SQLite file in an existing, writable folder"


def check_sqlite(uri: str, path: Path) -> None:
    """An SQLite store's file: an existing one must be a regular, writable SQLite database that
    passes ``PRAGMA quick_check`` (a corrupted store would otherwise take new runs, or fail in
    MLflow's retries); a new one is created only as a file in an existing folder (a missing
    folder is created only under the current directory, e.g. results/), and the folder must
    take a new file."""
    import sqlite3

    def bad(why: str) -> ConfigError:
        return ConfigError("tracking.uri", SQLITE_ALLOWED, f"{uri}: {why}")

    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise bad("a folder, not a file")
    if path.exists():
        if not path.is_file():
            raise bad("not a regular file")
        if not os.access(path, os.R_OK | os.W_OK):
            raise bad("not writable")
        if path.stat().st_size:
            try:
                with open(path, "rb") as f:
                    header = f.read(16)
                if header != b"SQLite format 3\x00":
                    raise bad("not an SQLite database")
                conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
                try:
                    verdict = [row[0] for row in conn.execute("PRAGMA quick_check(1)")]
                finally:
                    conn.close()
            except sqlite3.DatabaseError as exc:
                raise bad(f"unreadable ({exc})") from None
            except OSError as exc:
                raise bad(exc.strerror or str(exc)) from None
            if verdict != ["ok"]:
                raise bad(f"corrupted (PRAGMA quick_check: {' '.join(' '.join(verdict).split())[:200]}); "
                          "restore a copy or point tracking.uri at a new file")
        return
    if not parent.is_dir():
        inside = not parent.is_absolute() or parent.resolve().is_relative_to(Path.cwd().resolve())
        if parent.exists() or not inside:
            raise bad(f"the folder {parent} does not exist (nanbench creates only the file, "
                      "and folders under the current directory)")
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise bad(exc.strerror or str(exc)) from None
    probe = parent / f".{path.name}.{uuid.uuid4().hex}.probe"
    try:
        probe.touch(exist_ok=False)
        probe.unlink()
    except OSError as exc:
        raise bad(f"the folder {parent} does not take a new file ({exc.strerror or exc})") from None


@functools.lru_cache(maxsize=1)
def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, timeout=5).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


@functools.lru_cache(maxsize=1)
def versions() -> dict[str, str]:
    """The versions of TensorFlow, Keras and NumPy, without importing TensorFlow to learn them (a
    store process records runs without ever loading it): the loaded module's, else the installed
    distribution's."""
    import sys
    from importlib import metadata

    def version(module: str, *distributions: str) -> str:
        loaded = sys.modules.get(module)
        if loaded is not None and getattr(loaded, "__version__", None):
            return loaded.__version__
        for name in distributions:
            try:
                return metadata.version(name)
            except metadata.PackageNotFoundError:
                continue
        return "unknown"

    return {"tensorflow_version": version("tensorflow", "tensorflow", "tensorflow-cpu", "tensorflow-macos"),
            "keras_version": version("keras", "keras"), "numpy_version": np.__version__}


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


def all_runs(client, exp_id: str, filter_string: str, view=None):
    """Every run of an experiment matching filter_string, page by page (active runs by default)."""
    from mlflow.entities import ViewType
    token = None
    while True:
        page = client.search_runs([exp_id], filter_string=filter_string, max_results=5000,
                                  page_token=token, run_view_type=view or ViewType.ACTIVE_ONLY)
        yield from page
        token = page.token
        if not token:
            return


@functools.lru_cache(maxsize=8)
def tracker_for(spec: TrackingSpec) -> "Tracker":
    """One Tracker per store and process: a sweep's jobs share its client, engine and caches."""
    return Tracker(spec)


class Tracker:
    """Writes RunResults to one MLflow tracking store."""

    def __init__(self, spec: TrackingSpec):
        check_uri(spec.uri)
        from mlflow.tracking import MlflowClient
        _quiet()
        if sqlite_path(spec.uri) is not None:
            _fast_sqlite()
            seed_sqlite_store(sqlite_path(spec.uri))
        self.spec = spec
        self.client = MlflowClient(tracking_uri=spec.uri)
        self._experiments: dict[str, str] = {}
        self._locations: dict[str, str] = {}
        # database stores take whole batches of runs in one transaction; False: MLflow's calls
        self.bulk = _is_sql_store(self.client._tracking_client.store)

    def checkpoint(self) -> None:
        """Fold an SQLite store's write-ahead log into the database file (at a sweep's or run's
        end): the .db file then holds every run by itself, whoever copies it. Best effort: a
        reader holding the log open only postpones the fold to the next writer."""
        if sqlite_path(self.spec.uri) is None or not self.bulk:
            return
        try:
            with self.client._tracking_client.store.engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        except Exception:  # noqa: BLE001 - the runs are safe in the log either way
            pass

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
                    exp_id = self.client.create_experiment(name, artifact_location=location,
                                                           tags={EXPERIMENT_KIND: MODEL_TRAINING})
                except Exception:  # noqa: BLE001 - created meanwhile by another worker
                    exp = self.client.get_experiment_by_name(name)
                    if exp is None:
                        raise
                    exp_id = exp.experiment_id
            else:
                exp_id = exp.experiment_id
                if exp.lifecycle_stage == "active" and EXPERIMENT_KIND not in exp.tags:  # an older store's
                    self.client.set_experiment_tag(exp_id, EXPERIMENT_KIND, MODEL_TRAINING)
            self._experiments[name] = exp_id
        return self._experiments[name]

    def _write_artifact(self, run_id: str, artifact_uri: str, name: str, text: str) -> None:
        """A local artifact store is a folder: write the file in place (what log_text would copy
        there through a temporary file); any other store goes through MLflow's API."""
        if artifact_uri.startswith("file://"):
            folder = Path(urllib.request.url2pathname(artifact_uri[len("file://"):]))
            folder.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(text)
        else:
            self.client.log_text(run_id, text, name)

    def log(self, result: RunResult, *, experiment: str | None = None, parent_run_id: str | None = None,
            tags: dict[str, str] | None = None, start_time: float | None = None) -> str:
        """Record one finished run; returns its run id."""
        return self.log_many([(result, start_time)], experiment=experiment, parent_run_id=parent_run_id,
                             tags=tags)[0]

    def log_many(self, items: list[tuple[RunResult, float | None]], *, experiment: str | None = None,
                 parent_run_id: str | None = None, tags: dict[str, str] | None = None) -> list[str]:
        """Record finished runs, given as (result, start time in s); returns their run ids.

        A database store (SQLite, PostgreSQL, ...) gets all of them in one transaction: the rows
        MLflow's own ``create_run`` + ``log_batch`` + ``set_terminated`` would write, inserted with
        MLflow's own table models (see :func:`_insert_records`). Any other store (an MLflow
        server) gets the client calls, one run at a time."""
        if not items:
            return []
        exp_id = self.experiment_id(experiment or items[0][0].spec.tracking.experiment)
        records = [_record(result, start, parent_run_id, tags, self.spec.log_steps) for result, start in items]
        if self.bulk:
            location = self._artifact_location(exp_id)
            for rec in records:
                rec.run_id = time_ordered_id()
                rec.artifact_uri = f"{location.rstrip('/')}/{rec.run_id}/artifacts"
            _insert_records(self.client._tracking_client.store, exp_id, records)
        else:
            for rec in records:
                run = self.client.create_run(exp_id, start_time=rec.start_ms, run_name=rec.name, tags=rec.tags)
                rec.run_id, rec.artifact_uri = run.info.run_id, run.info.artifact_uri
                for start in range(0, max(len(rec.metrics), 1), 1000):
                    self.client.log_batch(rec.run_id, metrics=rec.metrics[start:start + 1000],
                                          params=rec.params if start == 0 else [])
        for (result, _), rec in zip(items, records):
            if result.series is not None:
                self._write_artifact(rec.run_id, rec.artifact_uri, "steps.csv", steps_csv(result))
            if not self.bulk:
                self.client.set_terminated(rec.run_id, status=rec.status, end_time=rec.end_ms)
        return [rec.run_id for rec in records]

    def count_children(self, exp_id: str, parent_run_id: str) -> dict[str, int]:
        """The active child runs of a parent, counted by their ``outcome`` tag ("unknown" if none).

        A database store answers with one grouped query over MLflow's tables; any other store
        through ``search_runs`` (which loads every run whole: ~4 ms a run on SQLite)."""
        if not self.bulk:
            counts: dict[str, int] = {}
            for run in all_runs(self.client, exp_id, f"tags.mlflow.parentRunId = '{parent_run_id}'"):
                outcome = run.data.tags.get("outcome", "unknown")
                counts[outcome] = counts.get(outcome, 0) + 1
            return counts
        import sqlalchemy as sa
        from mlflow.store.tracking.dbmodels.models import SqlRun, SqlTag

        parent, outcome = sa.orm.aliased(SqlTag), sa.orm.aliased(SqlTag)
        # grouped by the tag's value itself ("unknown" for none is added here): PostgreSQL refuses
        # GROUP BY coalesce(value, $2) beside SELECT coalesce(value, $1), the literal bound twice
        query = (sa.select(outcome.value, sa.func.count())
                 .select_from(SqlRun)
                 .join(parent, sa.and_(parent.run_uuid == SqlRun.run_uuid, parent.key == "mlflow.parentRunId",
                                       parent.value == parent_run_id))
                 .outerjoin(outcome, sa.and_(outcome.run_uuid == SqlRun.run_uuid, outcome.key == "outcome"))
                 .where(SqlRun.experiment_id == int(exp_id), SqlRun.lifecycle_stage == "active")
                 .group_by(outcome.value))
        counts: dict[str, int] = {}
        with self.client._tracking_client.store.ManagedSessionMaker() as session:
            for value, n in session.execute(query):
                key = "unknown" if value is None else value
                counts[key] = counts.get(key, 0) + int(n)
        return counts

    def _artifact_location(self, exp_id: str) -> str:
        if exp_id not in self._locations:
            self._locations[exp_id] = self.client.get_experiment(exp_id).artifact_location
        return self._locations[exp_id]


@dataclass
class _Record:
    """What MLflow keeps of one finished run, before it is written."""
    name: str
    tags: dict[str, str]
    params: list            # mlflow.entities.Param
    metrics: list           # mlflow.entities.Metric, finite values only
    status: str             # FINISHED or FAILED
    start_ms: int
    end_ms: int
    run_id: str = ""
    artifact_uri: str = ""


def _record(result: RunResult, start_time: float | None, parent_run_id: str | None,
            extra_tags: dict[str, str] | None, log_steps: bool) -> _Record:
    from mlflow.entities import Metric, Param

    spec = result.spec
    v = result.verdict
    all_tags = {
        "outcome": result.outcome,
        "first_nonfinite_source": (v.first_nonfinite_source if v else None) or "none",
        "device": result.device,
        "engine": spec.train.engine,
        "config_hash": spec.config_hash(),
        "git_commit": git_commit(),
        **versions(),
        **(extra_tags or {}),
    }
    if result.error:
        all_tags["error"] = result.error[:5000]
    if parent_run_id:
        all_tags["mlflow.parentRunId"] = parent_run_id
    now_ms = int(time.time() * 1000)
    start_ms = int((start_time if start_time is not None else time.time() - result.wall_s) * 1000)
    name = all_tags["mlflow.runName"] = run_name(spec)
    metrics: list[Metric] = []

    def add(key: str, value, step: int = 0) -> None:
        if value is not None and np.isfinite(value):
            metrics.append(Metric(key, float(value), now_ms, step))

    flags = {"is_nan": result.outcome == "nan", "is_inf": result.outcome == "inf",
             "is_nonfinite": result.outcome in ("nan", "inf"),
             "is_diverged": result.outcome == "diverged", "is_error": result.outcome == "error"}
    for key, flag in flags.items():
        add(key, int(flag))
    for key in ("data_s", "build_s", "first_step_s", "train_s", "wall_s", "steps_per_s",
                "samples_per_s", "steps_run", "n_samples", "dead_fraction", "dead_fraction_at_nonfinite"):
        add(key, getattr(result, key))
    if v is not None:
        for key in ("initial_loss", "final_loss", "min_loss", "first_nonfinite_step",
                    "first_inf_step", "first_nan_step"):
            add(key, getattr(v, key))
    if result.series is not None:
        metrics += [Metric(n, val, now_ms, step) for n, val, step in _epoch_metrics(result, log_steps)]
    params = [Param(k, str(val)) for k, val in spec.factors().items()]
    return _Record(name=name, tags={k: str(val) for k, val in all_tags.items()}, params=params,
                   metrics=metrics, status="FAILED" if result.outcome == "error" else "FINISHED",
                   start_ms=start_ms, end_ms=now_ms)


_last_id_ms = 0
_id_seq = 0


def time_ordered_id() -> str:
    """A run id as MLflow writes them (32 hex digits, a version-7 UUID) that sorts by creation time.

    MLflow's tags, params and latest_metrics tables are keyed by (key, run id), so with random ids
    (uuid4) every new run lands on a random leaf page of each key's index: a batch of runs dirties
    a page per row once the store holds thousands of runs, and the cost of a write grows with the
    store. Ids that grow with time append at the end of each key's range instead. 48 bits of
    milliseconds, a 12-bit sequence within the millisecond, 62 random bits (RFC 9562, method 1)."""
    global _last_id_ms, _id_seq
    ms = time.time_ns() // 1_000_000
    if ms > _last_id_ms:
        _last_id_ms, _id_seq = ms, int.from_bytes(os.urandom(1), "big")  # room for 3,840 more this ms
    else:
        _id_seq += 1
        if _id_seq > 0xFFF:  # more than the sequence holds: borrow the next millisecond
            _last_id_ms, _id_seq = _last_id_ms + 1, 0
    rand = int.from_bytes(os.urandom(8), "big") & (2 ** 62 - 1)
    value = (_last_id_ms << 80) | (0x7 << 76) | (_id_seq << 64) | (0b10 << 62) | rand
    return f"{value:032x}"


def _is_sql_store(store) -> bool:
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
    return isinstance(store, SqlAlchemyStore)


def _insert_records(store, exp_id: str, records: list[_Record]) -> None:
    """Insert finished runs into an MLflow database store in one transaction.

    The rows are exactly those MLflow's SqlAlchemyStore writes for ``create_run`` (a ``runs``
    row, RUNNING, and its tags), ``log_batch`` (``params``, ``metrics``, and ``latest_metrics``:
    per key the value of the largest (step, timestamp, value)) and ``set_terminated`` (status and
    end time), through MLflow's own table models and session, so the UI, ``search_runs`` and
    ``get_metric_history`` read them as any other run. What MLflow's per-call path costs here is
    its Python work per call (about 28 ms a run on the 2-core project machine); one executemany
    per table for a whole batch of runs costs about 2 ms a run.
    """
    from mlflow.store.tracking.dbmodels.models import SqlLatestMetric, SqlMetric, SqlParam, SqlRun, SqlTag

    runs, tags, params, metrics, latest = [], [], [], [], []
    for rec in records:
        runs.append({"run_uuid": rec.run_id, "name": rec.name[:250], "source_type": "UNKNOWN",
                     "source_name": "", "entry_point_name": "", "user_id": rec.tags.get("mlflow.user", "unknown"),
                     "status": rec.status, "start_time": rec.start_ms, "end_time": rec.end_ms,
                     "deleted_time": None, "source_version": "", "lifecycle_stage": "active",
                     "artifact_uri": rec.artifact_uri, "experiment_id": int(exp_id)})
        tags += [{"key": k, "value": val[:8000], "run_uuid": rec.run_id} for k, val in rec.tags.items()]
        params += [{"key": p.key, "value": p.value[:6000], "run_uuid": rec.run_id} for p in rec.params]
        newest: dict[str, tuple] = {}
        for m in dict.fromkeys(rec.metrics):  # MLflow drops exact duplicates the same way
            row = {"key": m.key, "value": m.value, "timestamp": m.timestamp, "step": m.step,
                   "is_nan": False, "run_uuid": rec.run_id}
            metrics.append(row)
            order = (m.step, m.timestamp, m.value)
            if m.key not in newest or order > newest[m.key][0]:
                newest[m.key] = (order, row)
        latest += [row for _, row in newest.values()]
    with store.ManagedSessionMaker(read_only=False) as session:
        for model, rows in ((SqlRun, runs), (SqlTag, tags), (SqlParam, params), (SqlMetric, metrics),
                            (SqlLatestMetric, latest)):
            if rows:
                session.execute(model.__table__.insert(), rows)
