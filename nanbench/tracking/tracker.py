"""The Tracker: every MLflow write nanbench makes goes through one of its methods.

Training runs are recorded once finished, with their real start and end time; into a database
store a batch goes in one transaction (nanbench.tracking.sqlite), an MLflow server gets
``create_run``, ``log_batch`` and ``set_terminated`` per run. Parent runs (a sweep's, a boundary
search's, a study's) are started and finished here too, so there is one way to make each.
"""

from __future__ import annotations

import functools
import time
import urllib.request
from pathlib import Path

from nanbench import vocab
from nanbench.result import RunResult
from nanbench.spec import TrackingSpec
from nanbench.tracking.record import build_record, steps_csv
from nanbench.tracking.sqlite import (fast_sqlite, insert_records, is_sql_store, quiet_mlflow,
                                      retry, seed_sqlite_store, time_ordered_id)
from nanbench.tracking.uri import EXPERIMENT_KIND, MODEL_TRAINING, check_uri, sqlite_path


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
        quiet_mlflow()
        if sqlite_path(spec.uri) is not None:
            fast_sqlite()
            seed_sqlite_store(sqlite_path(spec.uri))
        self.spec = spec
        self.client = MlflowClient(tracking_uri=spec.uri)
        self._experiments: dict[str, str] = {}
        self._locations: dict[str, str] = {}
        # database stores take whole batches of runs in one transaction; False: MLflow's calls
        self.bulk = is_sql_store(self.client._tracking_client.store)

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
        MLflow's own table models (see :func:`insert_records`). Any other store (an MLflow
        server) gets the client calls, one run at a time."""
        if not items:
            return []
        exp_id = self.experiment_id(experiment or items[0][0].spec.tracking.experiment)
        records = [build_record(result, start, parent_run_id, tags, self.spec.log_steps) for result, start in items]
        if self.bulk:
            location = self._artifact_location(exp_id)
            for rec in records:
                rec.run_id = time_ordered_id()
                rec.artifact_uri = f"{location.rstrip('/')}/{rec.run_id}/artifacts"
            insert_records(self.client._tracking_client.store, exp_id, records)
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

    def start_parent(self, experiment: str, name: str, *, role: str = vocab.PARENT,
                     tags: dict[str, str] | None = None, params: dict | None = None) -> str:
        """A RUNNING run that groups others (a sweep's, a boundary search's): tagged with its
        `role`, named `name`, with `params` when given; its id. Children name it as their parent."""
        from mlflow.entities import Param, RunTag

        exp_id = self.experiment_id(experiment)
        all_tags = {vocab.ROLE: role, "mlflow.runName": name, **(tags or {})}
        run = self.client.create_run(exp_id, run_name=name, tags={k: str(v) for k, v in all_tags.items()})
        if params:
            items = [Param(k, str(v)) for k, v in params.items()]
            for start in range(0, len(items), 100):  # MLflow takes at most 100 params a batch
                self.client.log_batch(run.info.run_id, params=items[start:start + 100])
        return run.info.run_id

    def annotate(self, run_id: str, *, tags: dict | None = None, metrics: dict | None = None,
                 texts: dict[str, str] | None = None) -> None:
        """Add tags, metrics (finite values only) and text artifacts (file name -> text) to a run."""
        import math

        from mlflow.entities import Metric, RunTag

        now = int(time.time() * 1000)
        finite = [Metric(k, float(v), now, 0) for k, v in (metrics or {}).items()
                  if v is not None and math.isfinite(float(v))]
        tag_list = [RunTag(k, str(v)) for k, v in (tags or {}).items()]
        if finite or tag_list:
            self.client.log_batch(run_id, metrics=finite, tags=tag_list)
        for name, text in (texts or {}).items():
            self.client.log_text(run_id, text, name)

    def finish_parent(self, run_id: str, *, failure: str | None = None, tags: dict | None = None,
                      metrics: dict | None = None, texts: dict[str, str] | None = None,
                      status: str | None = None) -> None:
        """A parent run's end: its last tags, metrics and artifacts, then FINISHED, or FAILED with
        the reason as its ``error`` tag (or an explicit MLflow `status`, e.g. KILLED); then the
        store's write-ahead log is folded into its file (copying mlflow.db alone then loses nothing)."""
        tags = dict(tags or {})
        if failure:
            tags[vocab.ERROR] = failure[:5000]
        self.annotate(run_id, tags=tags, metrics=metrics, texts=texts)
        self.client.set_terminated(run_id, status=status or ("FAILED" if failure else "FINISHED"))
        self.checkpoint()

    def finished_runs(self, exp_id: str) -> list:
        """The experiment's FINISHED training runs (MLflow Run objects)."""
        return list(all_runs(self.client, exp_id,
                             f"attributes.status = 'FINISHED' and tags.`{vocab.ROLE}` = '{vocab.CHILD}'"))

    def finished_hashes(self, exp_id: str) -> set[str]:
        """Configuration hashes that already have a FINISHED training run in the experiment."""
        if self.bulk:
            return set(self._finished_tags(exp_id, vocab.CONFIG_HASH))
        return {run.data.tags.get(vocab.CONFIG_HASH) for run in self.finished_runs(exp_id)} - {None}

    def finished_count(self, exp_id: str) -> int:
        """The experiment's FINISHED training runs, counted."""
        if self.bulk:
            return len(self._finished_tags(exp_id, vocab.ROLE))
        return len(self.finished_runs(exp_id))

    def _finished_tags(self, exp_id: str, key: str) -> list[str]:
        """Tag `key` of each active FINISHED training run, in one query over a database store's
        tables (search_runs loads every run whole: seconds for thousands of runs)."""
        import sqlalchemy as sa
        from mlflow.store.tracking.dbmodels.models import SqlRun, SqlTag

        role, tag = sa.orm.aliased(SqlTag), sa.orm.aliased(SqlTag)
        query = (sa.select(tag.value)
                 .select_from(SqlRun)
                 .join(role, sa.and_(role.run_uuid == SqlRun.run_uuid, role.key == vocab.ROLE,
                                     role.value == vocab.CHILD))
                 .join(tag, sa.and_(tag.run_uuid == SqlRun.run_uuid, tag.key == key))
                 .where(SqlRun.experiment_id == int(exp_id), SqlRun.lifecycle_stage == "active",
                        SqlRun.status == "FINISHED"))
        with self.client._tracking_client.store.ManagedSessionMaker() as session:
            return [value for (value,) in session.execute(query)]

    def mark_interrupted(self, exp_id: str) -> int:
        """Runs left RUNNING by an earlier, interrupted invocation become KILLED (never FINISHED)."""
        n = 0
        for run in all_runs(self.client, exp_id, "attributes.status = 'RUNNING'"):
            self.client.set_terminated(run.info.run_id, status="KILLED")
            n += 1
        return n

    def log_invalid(self, experiment: str, parent_run_id: str | None, params: dict, message: str,
                    tags: dict) -> str:
        """A configuration rejected by validation, as a FAILED run carrying its message; its id."""
        from mlflow.entities import Param, RunTag

        exp_id = self.experiment_id(experiment)
        all_tags = {**tags, vocab.OUTCOME: "error", vocab.ERROR: message[:5000],
                    "mlflow.runName": "invalid: " + message[:200]}
        if parent_run_id:
            all_tags[vocab.PARENT_RUN_ID] = parent_run_id
        created = retry(lambda: self.client.create_run(exp_id, run_name=all_tags["mlflow.runName"]))
        run_id = created.info.run_id
        retry(lambda: self.client.log_batch(
            run_id, params=[Param(k, str(v)[:6000]) for k, v in list(params.items())[:100]],
            tags=[RunTag(k, str(v)) for k, v in all_tags.items()]))
        retry(lambda: self.client.set_terminated(run_id, status="FAILED"))
        return run_id

    def count_children(self, exp_id: str, parent_run_id: str) -> dict[str, int]:
        """The active child runs of a parent, counted by their ``outcome`` tag ("unknown" if none).

        A database store answers with one grouped query over MLflow's tables; any other store
        through ``search_runs`` (which loads every run whole)."""
        if not self.bulk:
            counts: dict[str, int] = {}
            for run in all_runs(self.client, exp_id, f"tags.mlflow.parentRunId = '{parent_run_id}'"):
                outcome = run.data.tags.get(vocab.OUTCOME, "unknown")
                counts[outcome] = counts.get(outcome, 0) + 1
            return counts
        import sqlalchemy as sa
        from mlflow.store.tracking.dbmodels.models import SqlRun, SqlTag

        parent, outcome = sa.orm.aliased(SqlTag), sa.orm.aliased(SqlTag)
        # grouped by the tag's value itself ("unknown" for none is added here): PostgreSQL refuses
        # GROUP BY coalesce(value, $2) beside SELECT coalesce(value, $1), the literal bound twice
        query = (sa.select(outcome.value, sa.func.count())
                 .select_from(SqlRun)
                 .join(parent, sa.and_(parent.run_uuid == SqlRun.run_uuid, parent.key == vocab.PARENT_RUN_ID,
                                       parent.value == parent_run_id))
                 .outerjoin(outcome, sa.and_(outcome.run_uuid == SqlRun.run_uuid, outcome.key == vocab.OUTCOME))
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
