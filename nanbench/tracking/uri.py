"""Tracking URIs: which stores nanbench accepts, checked before anything is recorded, and the
MLflow UI's addresses of an experiment.

A bad store fails in well under a second with one line naming ``tracking.uri`` (MLflow itself
would retry for minutes, then raise).
"""

from __future__ import annotations

import os
import urllib.request
import uuid
from pathlib import Path

from nanbench.spec import ConfigError


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


def local_folder(artifact_uri: str) -> Path | None:
    """The folder of a local (file://) artifact location; None for any other store's."""
    if not artifact_uri.startswith("file://"):
        return None
    return Path(urllib.request.url2pathname(artifact_uri[len("file://"):]))


def steps_missing(artifact_uri: str) -> bool:
    """Whether a run's local steps.csv is missing where its experiment's artifact folder is: not
    judged (False) for a served artifact store, nor when the experiment's folder is gone too (a
    store moved or copied without its artifacts: its runs are not the ones to train again)."""
    folder = local_folder(artifact_uri)
    if folder is None or not folder.parent.parent.is_dir():  # <experiment>/<run id>/artifacts
        return False
    return not (folder / "steps.csv").is_file()


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

    # MLflow's SQLAlchemy reads a query (?mode=ro) and :memory:, where nanbench's own checks, lock
    # and readers would take them for a file's name: a file "q.db?mode=ro" beside MLflow's q.db, or
    # a run that is printed and lost with the process (and a file named ":memory:" left behind)
    if "?" in uri or "#" in uri:
        raise bad("a query or fragment after the path (?mode=..., #...); nanbench takes a plain "
                  "file path, opened read-write")
    if path.name == ":memory:" or str(path).startswith(":memory:") or uri.startswith("sqlite:///file:"):
        raise bad("an in-memory or URI-style database (its runs would be lost when the command ends); "
                  "name a file, e.g. sqlite:///results/mlflow.db")
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
        inside = parent.resolve().is_relative_to(Path.cwd().resolve())  # "../x" is not
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
