"""The SQLite fast path: how nanbench makes MLflow's database store cheap to open and to write.

New stores start as a copy of an empty-store template instead of MLflow's migrations; stores
are opened in WAL mode; a batch of finished runs is inserted in one transaction as the rows
MLflow's own ``create_run`` + ``log_batch`` + ``set_terminated`` would write, under run ids that
grow with time (so a write's cost does not grow with the store).
"""

from __future__ import annotations

import logging
import os
import shutil
import time
import uuid
from pathlib import Path


def quiet_mlflow() -> None:
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


def fast_sqlite() -> None:
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
    a new database: some 60 alembic migrations)."""
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


def is_sql_store(store) -> bool:
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
    return isinstance(store, SqlAlchemyStore)


def insert_records(store, exp_id: str, records: list) -> None:
    """Insert finished runs (nanbench.tracking.record.Record) into an MLflow database store in one
    transaction.

    The rows are exactly those MLflow's SqlAlchemyStore writes for ``create_run`` (a ``runs``
    row, RUNNING, and its tags), ``log_batch`` (``params``, ``metrics``, and ``latest_metrics``:
    per key the value of the largest (step, timestamp, value)) and ``set_terminated`` (status and
    end time), through MLflow's own table models and session, so the UI, ``search_runs`` and
    ``get_metric_history`` read them as any other run. What MLflow's per-call path costs here is
    its Python work per call; one executemany per table for a whole batch of runs costs a
    fraction of it (results/benchmark.md).
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


def retry(fn, attempts: int = 8):
    """SQLite allows one writer at a time: retry 'database is locked' with backoff."""
    for i in range(attempts):
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001
            if "locked" not in str(exc) or i == attempts - 1:
                raise
            time.sleep(0.05 * 2 ** i)
