"""nanbench.tracking: what one run leaves in a real SQLite MLflow store."""

from __future__ import annotations

import math

import pytest
from mlflow.tracking import MlflowClient

from conftest import compose_config
from tools.fault_procs import corrupt
from nanbench.run import execute
from nanbench.spec import ConfigError, from_config
from nanbench.tracking import Tracker, check_uri, run_name, time_ordered_id


def _log(store, *overrides):
    spec = from_config(compose_config([f"tracking.uri={store}", *overrides]))
    result = execute(spec)
    tracker = Tracker(spec.tracking)
    result.run_id = tracker.log(result)
    return result, MlflowClient(store).get_run(result.run_id)


def test_a_nan_run_is_recorded_with_params_tags_metrics_and_series(store):
    result, run = _log(store, "dataset=doc000_outlier", "optimizer=sgd", "train.epochs=30")
    assert run.info.status == "FINISHED"
    params, tags, metrics = run.data.params, run.data.tags, run.data.metrics
    # every factor, as flat dotted keys
    assert params["optimizer.name"] == "sgd" and float(params["optimizer.lr"]) == 0.01
    assert params["dataset.name"] == "doc000_outlier" and params["train.engine"] == "fit"
    assert set(result.spec.factors()) == set(params)
    assert tags["outcome"] == "nan" and tags["first_nonfinite_source"] == "loss"
    assert tags["config_hash"] == result.spec.config_hash()
    for key in ("git_commit", "tensorflow_version", "keras_version", "device", "engine"):
        assert tags[key]
    assert tags["mlflow.runName"] == run_name(result.spec)
    # non-finite values never reach MLflow as metric values; 0/1 flags say what happened
    assert all(math.isfinite(v) for v in metrics.values())
    assert metrics["is_nan"] == 1 and metrics["is_nonfinite"] == 1 and metrics["is_inf"] == 0
    assert metrics["first_nonfinite_step"] == result.verdict.first_nonfinite_step
    assert metrics["first_inf_step"] < metrics["first_nan_step"]
    assert "final_loss" not in metrics  # it was inf
    assert metrics["trained"] == 0 and "steps_to_target" not in metrics and "seconds_to_target" not in metrics
    for key in ("data_s", "build_s", "first_step_s", "train_s", "wall_s", "steps_per_s", "samples_per_s"):
        assert key in metrics
    history = MlflowClient(store).get_metric_history(run.info.run_id, "loss")
    finite_epochs = sum(math.isfinite(v) for v in result.series.epoch_loss)
    assert len(history) == finite_epochs  # the series stops at the first non-finite epoch
    # the per-step series is an artifact, one line per step run
    path = MlflowClient(store).download_artifacts(run.info.run_id, "steps.csv")
    lines = open(path).read().splitlines()
    assert lines[0].startswith("step,epoch,loss,grad_norm,weight_norm,flags")
    assert len(lines) == 1 + result.steps_run


def test_converged_run_logs_final_loss_and_epoch_curves(store):
    result, run = _log(store, "dataset=clean", "preprocess=standard", "optimizer=sgd", "optimizer.lr=0.05",
                       "train.epochs=4", "train.engine=fused")
    assert run.data.tags["outcome"] == "converged" and run.data.tags["first_nonfinite_source"] == "none"
    assert run.data.metrics["final_loss"] == pytest.approx(result.verdict.final_loss)
    assert len(MlflowClient(store).get_metric_history(run.info.run_id, "grad_norm")) == 4
    # it trained, and how fast: steps (epoch resolution) and seconds to 0.1 x L0
    assert run.data.metrics["trained"] == 1 and run.data.metrics["steps_to_target"] == result.steps_to_target
    assert run.data.metrics["seconds_to_target"] == pytest.approx(result.seconds_to_target)


def test_run_name_reads_as_what_the_run_is():
    spec = from_config(compose_config(["dataset=outliers", "model=mlp", "optimizer=sgd", "optimizer.lr=0.1",
                                       "clipping=clipnorm", "loss=mse"]))
    assert run_name(spec) == "outliers/none · mlp-relu · sgd lr=0.1 · clipnorm=1 · mse"


@pytest.mark.parametrize("uri", ["sqlite:////proc/nonexistent/m.db", "http://127.0.0.1:9", "file:///tmp/mlruns",
                                 "/tmp/mlruns"])
def test_unusable_tracking_uris_are_config_errors(uri):
    with pytest.raises(ConfigError, match="tracking.uri"):
        check_uri(uri)


@pytest.mark.parametrize("kind,why", [("folder", "a folder"), ("garbage", "not an SQLite database"),
                                      ("corrupted", "corrupted"), ("missing_folder", "does not exist")])
def test_an_unusable_sqlite_store_is_one_line_at_once_and_nothing_is_created(tmp_path, kind, why):
    path = tmp_path / "m.db"
    if kind == "folder":
        path.mkdir()
    elif kind == "garbage":
        path.write_bytes(b"this is not a database, it only has its name" * 10)
    elif kind == "corrupted":
        corrupt(path)
    else:
        path = tmp_path / "no" / "such" / "m.db"  # absolute, outside the current directory
    before = sorted(p.name for p in tmp_path.rglob("*"))
    with pytest.raises(ConfigError, match=why) as caught:
        check_uri(f"sqlite:///{path}")
    assert "\n" not in str(caught.value) and str(caught.value).startswith("tracking.uri must be")
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # no folder made, no file left


def test_a_new_store_folder_is_created_only_under_the_current_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    check_uri("sqlite:///results/sub/m.db")
    assert (tmp_path / "results" / "sub").is_dir() and not (tmp_path / "results" / "sub" / "m.db").exists()


def _comparable(client, run):
    """What a reader of the store sees of a run, less its id and times."""
    info = run.info
    histories = {key: [(m.step, m.value) for m in client.get_metric_history(info.run_id, key)]
                 for key in run.data.metrics}
    tags = {k: v for k, v in run.data.tags.items()}
    return {"status": info.status, "name": info.run_name, "stage": info.lifecycle_stage,
            "user": info.user_id, "ended": info.end_time >= info.start_time,
            "artifacts": info.artifact_uri.endswith(f"/{info.run_id}/artifacts"),
            "params": run.data.params, "tags": tags, "metrics": run.data.metrics, "histories": histories,
            "files": sorted(f.path for f in client.list_artifacts(info.run_id))}


def test_bulk_transaction_writes_what_mlflows_own_calls_write(store):
    """log_many's one-transaction path and MLflow's create_run/log_batch/set_terminated give runs
    that every reader (get_run, metric history, search, artifacts) sees identically."""
    results = []
    for overrides in (["optimizer=sgd", "optimizer.lr=1.0", "dataset=doc000_outlier"],   # nan
                      ["optimizer=sgd", "optimizer.lr=0.05", "preprocess=standard"],      # converged
                      ["optimizer=adam", "dataset=nan_inputs"]):                          # nan at the input
        spec = from_config(compose_config([f"tracking.uri={store}", "train.engine=fused", "train.epochs=6",
                                           *overrides]))
        results.append(execute(spec))
    tracker = Tracker(results[0].spec.tracking)
    assert tracker.bulk  # an SQLite store takes the one-transaction path
    parent = tracker.client.create_run(tracker.experiment_id("bulk")).info.run_id
    bulk_ids = tracker.log_many([(r, None) for r in results], experiment="bulk", parent_run_id=parent,
                                tags={"sweep": "bulk"})
    tracker.bulk = False
    call_ids = tracker.log_many([(r, None) for r in results], experiment="bulk", parent_run_id=parent,
                                tags={"sweep": "bulk"})
    client = MlflowClient(store)
    for bulk_id, call_id, result in zip(bulk_ids, call_ids, results):
        seen_bulk = _comparable(client, client.get_run(bulk_id))
        assert seen_bulk == _comparable(client, client.get_run(call_id))
        assert seen_bulk["tags"]["outcome"] == result.outcome and seen_bulk["status"] == "FINISHED"
        assert seen_bulk["files"] == ["steps.csv"]
    # the UI's and summary's queries find bulk-written runs like any other
    exp_id = tracker.experiment_id("bulk")
    nan_runs = client.search_runs([exp_id], f"tags.outcome = 'nan' and tags.mlflow.parentRunId = '{parent}'")
    assert sorted(r.info.run_id for r in nan_runs) == sorted(
        [i for i, r in zip(bulk_ids, results) if r.outcome == "nan"]
        + [i for i, r in zip(call_ids, results) if r.outcome == "nan"])
    by_loss = client.search_runs([exp_id], "metrics.final_loss < 1e9", order_by=["metrics.final_loss ASC"])
    assert {r.info.run_id for r in by_loss} >= {bulk_ids[1], call_ids[1]}
    assert bulk_ids == sorted(bulk_ids)  # time-ordered ids: see test_run_ids_grow_with_time


def test_run_ids_grow_with_time_and_read_as_mlflow_run_ids(monkeypatch):
    """The bulk path's run ids are version-7 UUIDs: unique, in creation order, also when many fall
    in one millisecond, so a new run's rows append to MLflow's (key, run id) indexes."""
    import time
    import uuid

    from mlflow.utils.validation import _validate_run_id

    ids = [time_ordered_id() for _ in range(5000)]  # many per millisecond
    stuck = time.time_ns() + 3_600_000_000_000
    monkeypatch.setattr(time, "time_ns", lambda: stuck)  # a clock stuck on one millisecond
    ids += [time_ordered_id() for _ in range(5000)]  # past the 4,096 a millisecond holds
    assert len(set(ids)) == len(ids) and ids[:5000] == sorted(ids[:5000])
    assert ids[5000:] == sorted(ids[5000:])
    for run_id in ids[::997]:
        assert len(run_id) == 32 and uuid.UUID(run_id).version == 7 and uuid.UUID(run_id).hex == run_id
        _validate_run_id(run_id)


def test_a_new_sqlite_store_is_a_copy_of_mlflows_migrated_schema(tmp_path, monkeypatch):
    """A new store starts from the cached template (MLflow's own migrations, run once per version)
    and MLflow opens it as its own: same tables, current revision, its default experiment under
    this store's artifact root. An existing store is never replaced."""
    import sqlalchemy
    from nanbench.tracking import empty_store_template, seed_sqlite_store

    monkeypatch.setenv("NANBENCH_CACHE", str(tmp_path / "cache"))
    template = empty_store_template()
    assert template.parent == tmp_path / "cache" and template.exists()

    seeded = tmp_path / "a" / "seeded.db"
    seeded.parent.mkdir()
    migrated = tmp_path / "migrated.db"
    MlflowClient(f"sqlite:///{migrated}").search_experiments()  # MLflow's migrations, no template
    assert seed_sqlite_store(seeded) is True
    tracker = Tracker(from_config(compose_config([f"tracking.uri=sqlite:///{seeded}"])).tracking)

    def tables(path):
        engine = sqlalchemy.create_engine(f"sqlite:///{path}")
        try:
            inspector = sqlalchemy.inspect(engine)
            return {t: sorted(c["name"] for c in inspector.get_columns(t)) for t in inspector.get_table_names()}
        finally:
            engine.dispose()

    assert tables(seeded) == tables(migrated)
    default = tracker.client.get_experiment("0")
    assert default.name == "Default"
    exp_id = tracker.experiment_id("seeded")
    assert tracker.client.get_experiment(exp_id).artifact_location.startswith((tmp_path / "a").as_uri())
    run = tracker.client.create_run(exp_id)
    assert tracker.client.get_run(run.info.run_id).info.status == "RUNNING"

    assert seed_sqlite_store(seeded) is False  # there already: untouched
    assert MlflowClient(f"sqlite:///{seeded}").get_run(run.info.run_id).info.run_id == run.info.run_id


def test_children_are_counted_by_outcome_alike_by_sql_and_by_search(store):
    """count_children's one grouped query answers what search_runs would: active children of
    this parent only, by outcome tag, "unknown" for a child without one."""
    spec = from_config(compose_config([f"tracking.uri={store}", "train.engine=fused", "train.epochs=3"]))
    results = [execute(spec), execute(from_config(compose_config([
        f"tracking.uri={store}", "train.engine=fused", "train.epochs=3", "dataset=nan_inputs"])))]
    tracker = Tracker(spec.tracking)
    exp_id = tracker.experiment_id("counts")
    parent, other = (tracker.client.create_run(exp_id).info.run_id for _ in range(2))
    ids = tracker.log_many([(r, None) for r in results * 2], experiment="counts", parent_run_id=parent)
    tracker.log_many([(results[0], None)], experiment="counts", parent_run_id=other)
    bare = tracker.client.create_run(exp_id, tags={"mlflow.parentRunId": parent}).info.run_id
    tracker.client.delete_run(ids[0])
    assert results[0].outcome != "nan" and results[1].outcome == "nan"
    expected = {results[0].outcome: 1, "nan": 2, "unknown": 1}  # ids[0] deleted; `other`'s child not counted
    assert tracker.count_children(exp_id, parent) == expected
    tracker.bulk = False  # what search_runs says
    assert tracker.count_children(exp_id, parent) == expected


def test_experiments_open_on_their_training_runs_in_mlflows_ui(store):
    """MLflow's UI opens an experiment whose mlflow.experimentKind tag is custom_model_development
    on its runs ("Model training"); new experiments get it, and older ones when next used."""
    from nanbench.spec import TrackingSpec
    tracker = Tracker(TrackingSpec(uri=store))
    new = tracker.experiment_id("fresh")
    client = MlflowClient(store)
    old = client.create_experiment("older")
    Tracker(TrackingSpec(uri=store)).experiment_id("older")
    for exp_id in (new, old):
        assert client.get_experiment(exp_id).tags["mlflow.experimentKind"] == "custom_model_development"


@pytest.mark.parametrize("overrides, name", [
    (["dataset=sequences", "model=lstm", "model.units=16", "optimizer=sgd", "optimizer.lr=1.0"],
     "sequences/none · lstm16 · sgd lr=1 · noclip · mse"),
    (["dataset=digits", "model=mlp_batchnorm", "loss=crossentropy", "loss.from_logits=true", "optimizer.lr=0.01"],
     "digits/none · mlp_batchnorm-relux2 · adam lr=0.01 · noclip · crossentropy-logits"),
    (["dataset=token_sequences", "model=embedding", "optimizer.lr=0.001"],
     "token_sequences/none · embedding16 · adam lr=0.001 · noclip · mse"),
])
def test_run_names_of_the_sequence_and_batchnorm_models_say_what_they_are(overrides, name):
    assert run_name(from_config(compose_config(overrides))) == name


def test_finished_training_runs_are_read_alike_by_sql_and_by_search(store):
    """finished_hashes and finished_count (resume, the grid's "nothing to do" mark) answer from a
    database store's tables what search_runs answers: active FINISHED training runs only."""
    spec = from_config(compose_config([f"tracking.uri={store}", "train.engine=fused", "train.epochs=2"]))
    other = from_config(compose_config([f"tracking.uri={store}", "train.engine=fused", "train.epochs=2",
                                        "optimizer.lr=0.1"]))
    results = [execute(spec), execute(other)]
    tracker = Tracker(spec.tracking)
    exp_id = tracker.experiment_id("finished")
    parent = tracker.client.create_run(exp_id).info.run_id
    ids = tracker.log_many([(r, None) for r in results * 2], experiment="finished", parent_run_id=parent,
                           tags={"nanbench.role": "child"})
    tracker.client.delete_run(ids[3])
    running = tracker.client.create_run(exp_id, tags={"nanbench.role": "child", "config_hash": "x"}).info.run_id
    assert tracker.client.get_run(running).info.status == "RUNNING"
    expected = {spec.config_hash(), other.config_hash()}
    assert tracker.finished_hashes(exp_id) == expected and tracker.finished_count(exp_id) == 3
    tracker.bulk = False  # what search_runs says
    assert tracker.finished_hashes(exp_id) == expected and tracker.finished_count(exp_id) == 3
    # the grid's "nothing to do" mark: the runs are compared, the distinct configurations said
    # (3 FINISHED runs of 2 configurations, as after sweep.redo=true)
    from omegaconf import OmegaConf
    from nanbench.sweep.bookkeeping import completed, finish_parent
    tracker.bulk = True
    finish_parent(tracker, parent, complete="fingerprint", exp_id=exp_id)
    cfg = OmegaConf.create({"tracking": {"uri": store, "experiment": "finished"}, "sweep": {"name": None}})
    assert completed(cfg, "fingerprint") == 2 and completed(cfg, "another grid") is None


def test_no_run_is_finished_without_its_steps_csv(tmp_path):
    """Artifacts first, rows after: a batch whose steps.csv cannot be written (here the artifact
    folder is a file) leaves no run and no file. A FINISHED run whose steps.csv is gone (an older
    version's, or deleted) is marked KILLED at the next sweep's start, so resume trains it again."""
    store = f"sqlite:///{tmp_path / 'm.db'}"
    (tmp_path / "not_a_folder").write_text("")
    spec = from_config(compose_config([f"tracking.uri={store}", "train.engine=fused", "train.epochs=2",
                                       f"tracking.artifacts={tmp_path / 'not_a_folder'}"]))
    result = execute(spec)
    tracker = Tracker(spec.tracking)
    with pytest.raises(OSError):
        tracker.log_many([(result, None)] * 2, experiment="full", tags={"nanbench.role": "child"})
    exp_id = tracker.experiment_id("full")
    assert tracker.client.search_runs([exp_id]) == []

    good = Tracker(from_config(compose_config([f"tracking.uri={store}", f"tracking.artifacts={tmp_path / 'a'}"])).tracking)
    ids = good.log_many([(result, None)] * 2, experiment="kept", tags={"nanbench.role": "child"})
    exp_id = good.experiment_id("kept")
    assert good.mark_incomplete(exp_id) == 0
    steps = sorted((tmp_path / "a").rglob("steps.csv"))
    assert len(steps) == 2 and not list((tmp_path / "a").rglob("*.tmp"))
    steps[0].unlink()
    assert good.mark_incomplete(exp_id) == 1
    statuses = sorted(good.client.get_run(i).info.status for i in ids)
    assert statuses == ["FINISHED", "KILLED"] and good.finished_count(exp_id) == 1
    (tmp_path / "a").rename(tmp_path / "moved")  # the artifacts moved away whole: not judged
    assert good.mark_incomplete(exp_id) == 0 and good.finished_count(exp_id) == 1
