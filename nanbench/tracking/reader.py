"""A sweep's runs read back from MLflow as a :class:`RunTable`: one pandas row per run.

The RunTable is the one type the summary reads; MLflow's schema stays inside nanbench.tracking.
MLflow is the source of truth. For SQLite stores, a read-only SQL query of MLflow's own tables
(experiments, runs, tags, params, latest_metrics) is the fast path: ``search_runs`` builds Python
objects for every run, param and metric, which takes far longer at 10,000 runs. Every other tracking URI (an http(s) server, another database) goes through
MlflowClient, and both paths hand the same long tables to the same frame builder.
"""

from __future__ import annotations

import io
import shutil
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import pandas as pd

from nanbench import spec as specmod
from nanbench import vocab
from nanbench.forensics import csv_float
from nanbench.tracking.uri import sqlite_path

NOT_APPLICABLE = "n/a"  # a factor a run does not take (e.g. outlier_fraction of clean data)
# Known orders of categorical levels, so tables read none, standard, minmax, robust (the options
# conf/ ships, in the order the README lists them); a level not listed follows, sorted.
LEVEL_ORDER = {
    "dataset.name": ("clean", "outliers", "unscaled", "nan_inputs", "doc000_outlier", "doc000_clean",
                     "doc003_outlier", "diabetes", "breast_cancer", "digits", "separable", "constant_feature",
                     "sequences", "token_sequences"),
    "preprocess.scaler": specmod.SCALERS,
    "preprocess.outliers": specmod.OUTLIER_HANDLING, "model.name": specmod.MODELS,
    "model.activation": specmod.ACTIVATIONS, "optimizer.name": ("sgd", "momentum", "adam", "rmsprop"),
    "clipping.kind": specmod.CLIPPING, "loss.name": ("mse", "mae", "huber", "rmse", "msle", "crossentropy", "log_loss_naive", "builder"),
    "train.precision": specmod.PRECISIONS, "train.device": specmod.DEVICES,
    "train.engine": specmod.ENGINES, "preprocess.scale_target": ("False", "True"),
    "train.shuffle": ("False", "True"),
}


class SummaryError(RuntimeError):
    """The sweep cannot be summarized (no such experiment, no runs). One line for the user."""


class NoRunsError(SummaryError):
    """The experiment, or the parent run asked for, has no runs to summarize."""


@dataclass
class RunTable:
    """A sweep's child runs and where they came from."""

    experiment: str
    experiment_id: str
    tracking_uri: str
    parent_run_id: str | None       # None: the experiment has no parent run, all runs were read
    parent_artifact_uri: str | None
    runs: pd.DataFrame              # one row per run: run_id, run_name, status, artifact_uri, factors, tags, metrics
    factors: list[str]              # the factor (param) columns, in RunSpec order
    scope: str = "parent"           # "parent": one invocation's children; "experiment": all, latest per config
    other_runs: int | None = None   # child runs of the experiment outside this summary (SQLite only)
    # e.g. git_commit -> {sha: runs}, over the runs of this summary (`runs`), not the experiment
    software: dict[str, dict[str, int]] = field(default_factory=dict)


def factor_order() -> list[str]:
    """Every factor key RunSpec.factors() can produce, in its order (dataset.name first)."""
    return specmod.factor_keys()


def _file_path(uri: str | None) -> Path | None:
    if not uri:
        return None
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    return Path(uri) if parsed.scheme == "" else None


# ---------------------------------------------------------------------------------------------
# Fast path: SQL on an SQLite store, read-only


def _connect(uri: str) -> sqlite3.Connection:
    path = sqlite_path(uri)
    if path is None or not path.exists():
        raise SummaryError(f"no MLflow store at {uri}")
    return sqlite3.connect(f"file:{path.resolve()}?mode=ro", uri=True)


def _sql_experiment_id(con: sqlite3.Connection, experiment: str) -> str:
    cols = {row[1] for row in con.execute("PRAGMA table_info(experiments)")}
    order = "ORDER BY workspace = 'default' DESC" if "workspace" in cols else ""
    row = con.execute("SELECT experiment_id FROM experiments WHERE name = ? AND lifecycle_stage = 'active' "
                      + order, (experiment,)).fetchone()
    if row is None:
        raise SummaryError(f"no MLflow experiment named {experiment!r}")
    return str(row[0])


def _long(con: sqlite3.Connection, sql: str, args: tuple, numeric: bool = False) -> pd.DataFrame:
    # object dtype: pandas 3 would otherwise build Arrow strings first, three times slower
    long = pd.DataFrame(con.execute(sql, args).fetchall(), columns=["run_id", "key", "value"], dtype=object)
    if numeric:
        long["value"] = long["value"].astype(float)
    return long


NOT_PARENT = (f"run_uuid NOT IN (SELECT run_uuid FROM tags WHERE key = '{vocab.ROLE}' "
              f"AND value = '{vocab.PARENT}')")


def _sql_load(uri: str, experiment: str, parent_run_id: str | None, scope: str):
    with _connect(uri) as con:
        exp_id = _sql_experiment_id(con, experiment)
        if parent_run_id is None:
            row = con.execute(
                "SELECT r.run_uuid FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid "
                "WHERE r.experiment_id = ? AND r.lifecycle_stage = 'active' AND t.key = ? AND t.value = ? "
                "ORDER BY r.start_time DESC LIMIT 1", (exp_id, vocab.ROLE, vocab.PARENT)).fetchone()
            parent_run_id = row[0] if row else None
        parent_uri = None
        if parent_run_id is not None:
            row = con.execute("SELECT artifact_uri FROM runs WHERE run_uuid = ?", (parent_run_id,)).fetchone()
            if row is None:
                raise SummaryError(f"no run {parent_run_id} in {uri}")
            parent_uri = row[0]
        if parent_run_id is not None and scope == "parent":
            selected = ("SELECT r.run_uuid FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid "
                        "WHERE r.experiment_id = ? AND r.lifecycle_stage = 'active' "
                        "AND t.key = 'mlflow.parentRunId' AND t.value = ?")
            args: tuple = (exp_id, parent_run_id)
        else:  # every run of the experiment that is not a parent (nor killed, in experiment scope)
            killed = " AND status != 'KILLED'" if scope == "experiment" else ""
            selected = ("SELECT run_uuid FROM runs WHERE experiment_id = ? AND lifecycle_stage = 'active' "
                        f"AND {NOT_PARENT}{killed}")
            args = (exp_id,)
        info = pd.DataFrame(con.execute(
            "SELECT run_uuid, name, status, start_time, artifact_uri FROM runs "
            f"WHERE run_uuid IN ({selected})", args).fetchall(),
            columns=["run_id", "run_name", "status", "start_time", "artifact_uri"], dtype=object)
        # `+key` keeps SQLite on the run_uuid index: the (key, run_uuid) index is twice as slow here
        params = _long(con, f"SELECT run_uuid, key, value FROM params WHERE run_uuid IN ({selected})", args)
        tags = _long(con, f"SELECT run_uuid, key, value FROM tags WHERE run_uuid IN ({selected}) "
                          f"AND +key IN ({','.join('?' * len(vocab.RUN_TAGS))})", args + vocab.RUN_TAGS)
        metrics = _long(con, f"SELECT run_uuid, key, value FROM latest_metrics WHERE run_uuid IN ({selected}) "
                             f"AND +key IN ({','.join('?' * len(vocab.SUMMARY_METRICS))}) AND is_nan = 0", args + vocab.SUMMARY_METRICS,
                        numeric=True)
        all_children = con.execute(
            "SELECT COUNT(*) FROM runs WHERE experiment_id = ? AND lifecycle_stage = 'active' "
            f"AND {NOT_PARENT}", (exp_id,)).fetchone()[0]
    return dict(exp_id=exp_id, parent=parent_run_id, parent_uri=parent_uri, info=info, params=params,
                tags=tags, metrics=metrics, all_children=all_children)


# ---------------------------------------------------------------------------------------------
# Any tracking URI: MlflowClient


def _client(uri: str):
    import logging

    from mlflow.tracking import MlflowClient
    for name in ("alembic", "mlflow"):
        logging.getLogger(name).setLevel(logging.WARNING)
    return MlflowClient(tracking_uri=uri)


def _api_load(uri: str, experiment: str, parent_run_id: str | None, scope: str):
    client = _client(uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        raise SummaryError(f"no MLflow experiment named {experiment!r} at {uri}")
    exp_id = exp.experiment_id
    parent_filter = f"tags.`{vocab.ROLE}` = '{vocab.PARENT}'"
    if parent_run_id is None:
        found = client.search_runs([exp_id], parent_filter, order_by=["attributes.start_time DESC"],
                                   max_results=1)
        parent_run_id = found[0].info.run_id if found else None
    parent_uri = client.get_run(parent_run_id).info.artifact_uri if parent_run_id else None
    runs, token = [], None
    by_parent = parent_run_id is not None and scope == "parent"
    query = f"tags.`{vocab.PARENT_RUN_ID}` = '{parent_run_id}'" if by_parent else ""
    while True:
        page = client.search_runs([exp_id], query, max_results=1000, page_token=token)
        runs += [r for r in page if by_parent or (
            r.data.tags.get(vocab.ROLE) != vocab.PARENT
            and not (scope == "experiment" and r.info.status == "KILLED"))]
        token = page.token
        if not token:
            break
    info = pd.DataFrame([(r.info.run_id, r.info.run_name, r.info.status, r.info.start_time,
                          r.info.artifact_uri) for r in runs],
                        columns=["run_id", "run_name", "status", "start_time", "artifact_uri"], dtype=object)

    def long(rows):
        return pd.DataFrame(rows, columns=["run_id", "key", "value"], dtype=object)

    params = long([(r.info.run_id, k, v) for r in runs for k, v in r.data.params.items()])
    tags = long([(r.info.run_id, k, v) for r in runs for k, v in r.data.tags.items() if k in vocab.RUN_TAGS])
    metrics = long([(r.info.run_id, k, v) for r in runs for k, v in r.data.metrics.items()
                    if k in vocab.SUMMARY_METRICS and np.isfinite(v)])
    metrics["value"] = metrics["value"].astype(float)
    return dict(exp_id=exp_id, parent=parent_run_id, parent_uri=parent_uri, info=info, params=params,
                tags=tags, metrics=metrics, all_children=None)


# ---------------------------------------------------------------------------------------------
# One frame from the long tables


def _factor_column(key: str, values: np.ndarray, trained: np.ndarray) -> np.ndarray | pd.Categorical:
    """Numbers stay numbers (so lr splits read `optimizer.lr >= 0.1`); the rest become ordered
    categories. A factor some trained runs do not take is categorical, with the level 'n/a'.
    Values of runs that did not train (a combination rejected by validation is recorded with its
    raw config) do not make a numeric factor categorical: what does not parse becomes NaN there."""
    codes, uniques = pd.factorize(values)  # parse each distinct value once, not every row
    missing = codes < 0
    parsed = pd.to_numeric(pd.Series(uniques, dtype=object), errors="coerce").to_numpy(float)
    numeric = np.where(missing, np.nan, parsed[codes])
    numeric_factor = bool(trained.any()) and bool((~np.isnan(numeric) | missing)[trained].all())
    if numeric_factor and not missing[trained].any():
        return numeric
    if numeric_factor:  # numbers that some runs do not take: labels, in number order
        values_ = np.unique(numeric[~np.isnan(numeric)])
        levels = [f"{v:g}" for v in values_]
        codes = np.where(np.isnan(numeric), -1, np.searchsorted(values_, numeric))
    else:
        labels = [str(u) for u in uniques]
        known = LEVEL_ORDER.get(key, ())
        levels = [v for v in known if v in labels] + sorted(set(labels) - set(known))
        position = np.array([levels.index(label) for label in labels] + [-1], dtype=np.int64)
        codes = position[codes]  # -1 (missing) picks the trailing -1
    if (codes < 0).any():
        levels.append(NOT_APPLICABLE)
        codes = np.where(codes < 0, len(levels) - 1, codes)
    return pd.Categorical.from_codes(codes, categories=levels, ordered=True)


def _wide(long: pd.DataFrame, index: pd.Index, dtype) -> dict[str, np.ndarray]:
    """The long (run_id, key, value) table as one array per key, aligned on `index` (run ids);
    a run without the key gets None (object) or NaN (float)."""
    if long.empty:
        return {}
    rows = index.get_indexer(long["run_id"])
    keep = rows >= 0
    cols, keys = pd.factorize(long["key"].to_numpy()[keep])
    table = np.full((len(index), len(keys)), None if dtype is object else np.nan, dtype=dtype)
    table[rows[keep], cols] = long["value"].to_numpy()[keep]
    return {key: table[:, j] for j, key in enumerate(keys)}


def build_frame(info: pd.DataFrame, params: pd.DataFrame, tags: pd.DataFrame,
                metrics: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Put the long (run_id, key, value) params/tags/metrics tables side by side with `info`, one
    row per run; returns the frame and the factor (param) keys in RunSpec order."""
    index = pd.Index(info["run_id"])
    p, t, m = _wide(params, index, object), _wide(tags, index, object), _wide(metrics, index, float)
    order = {k: i for i, k in enumerate(factor_order())}
    factors = sorted(p, key=lambda k: (order.get(k, len(order)), k))
    outcome = t.get("outcome", np.full(len(index), None, dtype=object))
    trained = np.array([o is not None and o != "error" for o in outcome])
    columns: dict[str, object] = {c: info[c].to_numpy() for c in info.columns}
    columns.update({k: _factor_column(k, p[k], trained) for k in factors})
    nothing = np.full(len(index), None, dtype=object)
    columns.update({name: t.get(name, nothing) for name in vocab.RUN_TAGS})
    # absent metric: not logged, i.e. none (no NaN step, say) or not finite
    columns.update({name: m.get(name, np.full(len(index), np.nan)) for name in vocab.SUMMARY_METRICS})
    out = pd.DataFrame(columns)
    out["start_time"] = pd.to_numeric(out["start_time"])
    out["outcome"] = out["outcome"].fillna("unknown")
    for tag in (vocab.SOURCE, vocab.LAYER, vocab.LAYER_PART):  # runs recorded before a tag existed: none
        out[tag] = out[tag].fillna(vocab.NO_SOURCE)
    out = out.sort_values("start_time", kind="stable", ignore_index=True)
    return out, factors


def load_runs(experiment: str, tracking_uri: str, parent_run_id: str | None = None, *,
              scope: str = "parent", fast: bool = True) -> RunTable:
    """The runs of one sweep.

    scope "parent": the children of `parent_run_id`, by default of the latest run tagged
    nanbench.role=parent in `experiment` (every run of it when it has no parent run).
    scope "experiment": every run of the experiment that is not a parent and was not KILLED,
    the latest per configuration (config_hash): a sweep resumed by several invocations, whole.
    `fast` reads SQLite stores with SQL; other URIs, or fast=False, go through MlflowClient.
    """
    if scope not in ("parent", "experiment"):
        raise ValueError(f"scope must be 'parent' or 'experiment', not {scope!r}")
    loaded = None
    if fast and sqlite_path(tracking_uri) is not None:
        try:
            loaded = _sql_load(tracking_uri, experiment, parent_run_id, scope)
        except sqlite3.OperationalError:  # e.g. a WAL store in a folder we may not write: MLflow's way
            loaded = None
    if loaded is None:
        loaded = _api_load(tracking_uri, experiment, parent_run_id, scope)
    parent, all_children = loaded["parent"], loaded["all_children"]
    if loaded["info"].empty:
        where = f"under parent run {parent}" if parent and scope == "parent" else "in it"
        raise NoRunsError(f"experiment {experiment!r} has no runs {where}")
    runs, factors = build_frame(loaded["info"], loaded["params"], loaded["tags"], loaded["metrics"])
    if scope == "experiment":  # latest run per configuration; runs without a hash are kept
        keep = runs["config_hash"].isna() | ~runs.duplicated("config_hash", keep="last")
        runs = runs.loc[keep].reset_index(drop=True)
    # one order whatever the order runs were recorded in (job order, folding, JOBS=N): the factors'
    # levels, then the hash, so that every table and the attribution fitted on them are the same
    runs = runs.sort_values([*factors, "config_hash"], kind="stable", ignore_index=True, na_position="last")
    other = None if all_children is None else max(0, int(all_children) - len(runs))
    software = {key: {str(v): int(n) for v, n in runs[key].value_counts().items()}
                for key in vocab.SOFTWARE if runs[key].notna().any()}
    return RunTable(experiment=experiment, experiment_id=loaded["exp_id"], tracking_uri=tracking_uri,
                     parent_run_id=parent, parent_artifact_uri=loaded["parent_uri"], runs=runs,
                     factors=factors, scope=scope, other_runs=other, software=software)


# ---------------------------------------------------------------------------------------------
# Curves of single runs, and the summary's own artifacts


def csv_floats(values: pd.Series) -> pd.Series:
    """Floats from a steps.csv column: plain numbers, 'nan', 'inf', or NumPy 2 reprs such as
    'np.float32(1.5)' (older artifacts): nanbench.forensics.csv_float on each."""
    if pd.api.types.is_numeric_dtype(values):
        return values.astype(float)
    return values.fillna("").astype(str).map(csv_float).astype(float)


def load_curve(sweep: RunTable, run_id: str, artifact_uri: str | None) -> pd.DataFrame | None:
    """Loss and gradient norm of one run per step, from its steps.csv artifact (NaN and inf kept,
    as written); else per epoch from its metric history; None when neither exists."""
    text = None
    local = _file_path(artifact_uri)
    if local is not None:
        path = local / "steps.csv"
        text = path.read_text() if path.exists() else None
    else:
        try:
            import tempfile
            with tempfile.TemporaryDirectory() as tmp:
                path = _client(sweep.tracking_uri).download_artifacts(run_id, "steps.csv", tmp)
                text = Path(path).read_text()
        except Exception:  # noqa: BLE001 - no such artifact: fall back to the metric history
            text = None
    if text is not None:
        steps = pd.read_csv(io.StringIO(text))[["step", "loss", "grad_norm"]]
        for column in ("loss", "grad_norm"):
            steps[column] = csv_floats(steps[column])
        return steps.assign(unit="step")
    series = {}
    if sqlite_path(sweep.tracking_uri) is not None:
        with _connect(sweep.tracking_uri) as con:
            hist = pd.read_sql_query("SELECT key, step, value FROM metrics WHERE run_uuid = ? "
                                     "AND key IN ('loss', 'grad_norm')", con, params=(run_id,))
        for key, part in hist.groupby("key"):
            series[key] = part.set_index("step")["value"]
    else:
        client = _client(sweep.tracking_uri)
        for key in ("loss", "grad_norm"):
            hist = client.get_metric_history(run_id, key)
            series[key] = pd.Series({m.step: m.value for m in hist}, dtype=float)
    if not series:
        return None
    curve = pd.DataFrame(series).sort_index()
    curve.index.name = "step"
    return curve.reindex(columns=["loss", "grad_norm"]).reset_index().assign(unit="epoch")


def log_summary_artifacts(sweep: RunTable, files: list[Path], artifact_path: str = "summary") -> bool:
    """Attach `files` to the parent run under `artifact_path`; False when there is no parent.

    A local (file://) artifact root gets a plain copy, which is what MLflow's local artifact
    repository does; anything else goes through MlflowClient.log_artifact."""
    if sweep.parent_run_id is None:
        return False
    local = _file_path(sweep.parent_artifact_uri)
    if local is not None:
        dest = local / artifact_path
        dest.mkdir(parents=True, exist_ok=True)
        for path in files:
            shutil.copyfile(path, dest / Path(path).name)
    else:
        client = _client(sweep.tracking_uri)
        for path in files:
            client.log_artifact(sweep.parent_run_id, str(path), artifact_path)
    return True
