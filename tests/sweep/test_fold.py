"""nanbench.sweep.fold: an ad-hoc multirun folds into one Hydra job per structure, every run kept."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys

import pytest
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient

from omegaconf import OmegaConf

from conftest import ROOT
from nanbench.config import CONF_DIR, SWEEPS_DIR, compose
from nanbench.spec import from_config
from nanbench.sweep.fold import FOLDS_FILE, data_nodes, fold, rows
from nanbench.sweep.grid import expand


def _grid(**params) -> list[list[str]]:
    keys = list(params)
    return [[f"{k}={v}" for k, v in zip(keys, combo)] for combo in itertools.product(*params.values())]


def test_jobs_that_differ_only_in_runtime_numbers_become_one_job():
    jobs = _grid(optimizer=["sgd", "adam"], **{"optimizer.lr": ["0.001", "0.1"], "train.seed": ["0", "1", "2"]})
    folded, table = fold(jobs)
    assert folded == [["optimizer=sgd", "sweep.fold=0"], ["optimizer=adam", "sweep.fold=1"]]
    assert [len(t) for t in table] == [6, 6]
    # every replaced job is one row, with its values typed as Hydra reads them
    assert table[0][0] == {"optimizer.lr": 0.001, "train.seed": 0}
    assert {(r["optimizer.lr"], r["train.seed"]) for r in table[1]} == set(itertools.product([0.001, 0.1], [0, 1, 2]))


def test_structural_keys_and_group_choices_are_never_folded():
    jobs = _grid(**{"dataset.n_features": ["4", "10"], "loss.delta": ["0.5", "2"], "optimizer.lr": ["0.1"]})
    folded, table = fold(jobs)
    assert len(folded) == 4 and all(len(t) == 1 for t in table)
    plain = _grid(optimizer=["sgd", "adam"])  # nothing to fold: the jobs stay as they are
    assert fold(plain) == (plain, [])


def test_a_job_reads_its_rows_from_the_sweep_folder(tmp_path):
    (tmp_path / FOLDS_FILE).write_text(json.dumps([[{"optimizer.lr": 0.1}], [{"optimizer.lr": 1.0}, {"optimizer.lr": 2.0}]]))
    assert rows(tmp_path, 1) == [{"optimizer.lr": 1.0}, {"optimizer.lr": 2.0}]
    assert rows(tmp_path, None) == [{}]


def _adhoc_cmd(store, tmp_path, *grid):
    return [sys.executable, "-m", "nanbench", "-m", *grid, f"tracking.uri={store}", "sweep.name=adhoc",
            "sweep.summarize=false", f"sweep.results_dir={tmp_path}", f"hydra.sweep.dir={tmp_path}/hydra"]


def _children(store, status=None):
    client = MlflowClient(store)
    exp = client.get_experiment_by_name("adhoc")
    runs = client.search_runs([exp.experiment_id], "tags.`nanbench.role` = 'child'", ViewType.ALL, 10000)
    return [r for r in runs if status is None or r.info.status == status]


def test_a_clipping_choice_folds_as_its_option_files_values_and_a_key_override_wins():
    jobs = _grid(clipping=["none", "global_clipnorm"], **{"clipping.threshold": ["0.5"], "optimizer.lr": ["0.1"]})
    folded, table = fold(jobs)
    assert folded == [["sweep.fold=0"]]
    assert table[0] == [{"clipping.kind": "none", "clipping.threshold": 0.5, "optimizer.lr": 0.1},
                        {"clipping.kind": "global_clipnorm", "clipping.threshold": 0.5, "optimizer.lr": 0.1}]
    unknown = [["clipping=no_such_option", "optimizer.lr=0.1"]]  # no file: Hydra's own error, unfolded
    assert fold(unknown)[0] == [["clipping=no_such_option", "sweep.fold=0"]]


def _repository():
    """Hydra's config repository over conf/ and sweeps/, as `python -m nanbench --config-dir sweeps` has it."""
    from hydra._internal.config_repository import ConfigRepository
    from hydra._internal.config_search_path_impl import ConfigSearchPathImpl
    from hydra.core.plugins import Plugins
    Plugins.instance()  # registers Hydra's config sources (file://, pkg://)
    path = ConfigSearchPathImpl()
    path.append("main", f"file://{CONF_DIR}")
    path.append("sweeps", f"file://{SWEEPS_DIR}")
    return ConfigRepository(path)


def _composed(override, job):
    return compose(list(job))


def _run_config(cfg) -> dict:
    run = OmegaConf.to_container(cfg, resolve=True)
    run.pop("sweep")
    return run


def test_a_data_groups_choice_folds_as_its_composed_node_and_each_run_is_its_jobs_config():
    jobs = _grid(dataset=["clean", "outliers", "unscaled"], preprocess=["none", "standard"],
                 optimizer=["sgd", "adam"], **{"dataset.noise": ["0.5"], "optimizer.lr": ["0.1", "1.0"]})
    nodes = data_nodes(jobs, _composed, _repository())
    assert set(nodes) == {"dataset=clean", "dataset=outliers", "dataset=unscaled", "preprocess=none",
                          "preprocess=standard"}
    assert nodes["dataset=outliers"] == OmegaConf.to_container(compose(["dataset=outliers", "dataset.noise=0.5"]).dataset)
    folded, table = fold(jobs, nodes)
    # one job per optimizer: it keeps its first member's data choices, so that Hydra composes a real config
    assert folded == [["optimizer=sgd", "dataset=clean", "preprocess=none", "sweep.fold=0"],
                      ["optimizer=adam", "dataset=clean", "preprocess=none", "sweep.fold=1"]]
    assert [len(t) for t in table] == [12, 12]
    assert table[0][2] == {"dataset": nodes["dataset=clean"], "preprocess": nodes["preprocess=standard"],
                           "dataset.noise": 0.5, "optimizer.lr": 0.1}
    # every run of a folded job is exactly the config Hydra composes for the job it replaced
    for job, optimizer in zip(folded, ("sgd", "adam")):
        members = [j for j in jobs if f"optimizer={optimizer}" in j]
        runs = expand(compose(job), table[int(job[-1].split("=")[1])])
        assert len(runs) == len(members)
        for run, member in zip(runs, members):
            expected = compose(member)
            assert {k: v for k, v in run.items() if k != "sweep"} == _run_config(expected)
            hashes = (from_config(c, multirun=True).config_hash() for c in (run, expected))
            assert len(set(hashes)) == 1


def test_a_data_group_stays_a_hydra_job_where_something_else_on_the_grid_writes_into_it():
    def never(override, job):
        raise AssertionError("nothing to compose")
    repo = _repository()
    # a key of the group swept on its own: the node of a dataset depends on the other axis
    shaped = _grid(dataset=["clean", "outliers"], **{"dataset.n_features": ["4", "10"]})
    assert data_nodes(shaped, never, repo) == {}
    assert fold(shaped, data_nodes(shaped, never, repo))[0] == shaped
    # a case file of `# @package _global_` that chooses the dataset (sweeps/realworld/)
    cases = _grid(realworld=["digits-mlp-crossentropy", "sequences-lstm-mse"], preprocess=["none", "standard"])
    assert data_nodes(cases, never, repo) == {}
    # an option that inherits from its own group (mlp_deep: mlp) writes only into it: the data folds
    deep = _grid(model=["mlp", "mlp_deep"], dataset=["clean", "token_sequences"])
    assert set(data_nodes(deep, _composed, repo)) == {"dataset=clean", "dataset=token_sequences"}
    assert data_nodes(_grid(optimizer=["sgd", "adam"]), never, repo) == {}  # no data group swept


@pytest.mark.slow
def test_an_adhoc_grid_runs_as_one_job_per_structure_on_the_fused_engine(tmp_path, store):
    grid = ["dataset=doc000_clean", "optimizer=sgd,adam", "optimizer.lr=0.01,0.1", "train.seed=0,1", "train.epochs=2",
            "clipping=none,global_clipnorm"]
    proc = subprocess.run(_adhoc_cmd(store, tmp_path, *grid), capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = [line for line in proc.stdout.splitlines() if line.startswith("[job ")]
    assert len(jobs) == 2 and all("/2]" in line for line in jobs), proc.stdout
    counts = [line.split(": ", 1)[1].rsplit(" (", 1)[0] for line in jobs]  # "2 converged, 2 stalled"
    assert [sum(int(part.split()[0]) for part in c.split(", ")) for c in counts] == [8, 8]
    runs = _children(store)
    assert len(runs) == 16 and {r.info.status for r in runs} == {"FINISHED"}
    assert len({r.data.tags["config_hash"] for r in runs}) == 16  # every run once, each its own config
    assert {r.data.tags["engine"] for r in runs} == {"fused"}  # -m defaults to the fused engine
    assert {r.data.tags["side_by_side"] for r in runs} == {"8"}  # each job's 8 runs in one call
    assert {(r.data.params["optimizer.name"], float(r.data.params["optimizer.lr"]), int(r.data.params["train.seed"]),
             r.data.params["clipping.kind"]) for r in runs} == set(
        itertools.product(["sgd", "adam"], [0.01, 0.1], [0, 1], ["none", "global_clipnorm"]))
    again = subprocess.run(_adhoc_cmd(store, tmp_path, *grid), capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert again.returncode == 0 and len(_children(store)) == 16  # resume: nothing trained twice


@pytest.mark.slow
def test_a_copy_of_adam_yaml_naming_nadam_trains_side_by_side_like_adam(tmp_path, store):
    # a new optimizer is one file (here in a config dir of the user's, on Hydra's search path):
    # under -m its runs train side by side as Adam's do (nanbench.engines.updates)
    (tmp_path / "conf" / "optimizer").mkdir(parents=True)
    adam = (CONF_DIR / "optimizer" / "adam.yaml").read_text()
    (tmp_path / "conf" / "optimizer" / "nadam.yaml").write_text(
        adam.replace("name: adam ", "name: nadam").replace("keras.optimizers.Adam", "keras.optimizers.Nadam"))
    grid = ["dataset=doc000_clean", "optimizer=nadam,adam", "optimizer.lr=0.001,0.01", "train.seed=0,1",
            "train.epochs=2", f"hydra.searchpath=[file://{tmp_path / 'conf'}]"]
    proc = subprocess.run(_adhoc_cmd(store, tmp_path, *grid), capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = _children(store)
    assert sorted((r.data.params["optimizer.name"], r.data.tags["side_by_side"]) for r in runs) == (
        [("adam", "4")] * 4 + [("nadam", "4")] * 4)


@pytest.mark.slow
def test_an_adhoc_grid_over_datasets_and_preprocessing_is_one_job_per_optimizer(tmp_path, store):
    # a glob axis (Hydra lists the group's options: the sweep's checks parse it with the config loader)
    datasets, preprocessing, optimizers, lrs = ["doc000_clean", "doc000_outlier", "doc003_outlier"], \
        ["none", "standard"], ["sgd", "adam"], ["0.01", "0.1"]
    grid = ["dataset=glob(doc*)", f"preprocess={','.join(preprocessing)}", f"optimizer={','.join(optimizers)}",
            f"optimizer.lr={','.join(lrs)}", "train.steps=20"]
    proc = subprocess.run(_adhoc_cmd(store, tmp_path, *grid), capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = [line for line in proc.stdout.splitlines() if line.startswith("[job ")]
    assert len(jobs) == 2 and "dataset=" not in jobs[0] and "optimizer=sgd" in jobs[0], proc.stdout
    runs = _children(store)
    assert len(runs) == 24 and {r.info.status for r in runs} == {"FINISHED"}
    # each run is the configuration Hydra composes for the job it replaced: same hash, same data
    expected = {from_config(compose([f"dataset={d}", f"preprocess={p}", f"optimizer={o}", f"optimizer.lr={lr}",
                                     "train.steps=20"]), multirun=True).config_hash(): (d, p)
                for d, p, o, lr in itertools.product(datasets, preprocessing, optimizers, lrs)}
    assert {r.data.tags["config_hash"]: (r.data.params["dataset.name"], r.data.params["preprocess.scaler"])
            for r in runs} == expected
    # runs of one structure train side by side across the datasets of one shape: doc000's two sets
    # (4 rows, 1 feature) 8 at a time, doc003's (4 rows, 2 features) 4
    assert {(r.data.params["dataset.name"][:6], r.data.tags["side_by_side"]) for r in runs} == {
        ("doc000", "8"), ("doc003", "4")}


@pytest.mark.slow
def test_a_folded_job_killed_midway_resumes_to_exactly_once(tmp_path, store):
    lrs = ",".join(f"{v:g}" for v in [1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 0.1, 0.2, 0.5])
    # calls of 4 runs side by side; the kill hook (nanbench.tracking.protocol._FaultHook) SIGKILLs
    # the sweep once 5 runs are recorded: inside the one folded job, inside its second call
    grid = ["dataset=clean", "optimizer=sgd", f"optimizer.lr={lrs}", "train.epochs=3", "sweep.side_by_side=4"]
    cmd = _adhoc_cmd(store, tmp_path, *grid)
    proc = subprocess.run(cmd, capture_output=True, cwd=ROOT, start_new_session=True, timeout=600,
                          env={**os.environ, "NANBENCH_TEST_KILL_AFTER": "5"})
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    recorded = len(_children(store, "FINISHED"))
    assert recorded == 5, "the kill must land inside the one folded job"
    rerun = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    hashes = [r.data.tags["config_hash"] for r in _children(store, "FINISHED")]
    assert len(hashes) == 12 and len(set(hashes)) == 12
    assert not _children(store, "RUNNING")


@pytest.mark.parametrize("value", ["1", "-5", "+3", "0", "007", "0.1", "1e-3", "1E5", "-2.5e+3", ".5", "5.",
                                   "1_000", "inf", "nan", "00.5", "05e1", "0e5", "1.e3", ".e3", "1.5e", "-0",
                                   "true", "null", "abc", "0x10", "1.5.5", "12345", "0.50", "1.5e-07"])
def test_a_value_is_read_as_hydras_parser_reads_it(value):
    """fold reads a range's numbers without Hydra's parser (10^5 values took 79 s through it):
    the same type and value as the parser gives, for every spelling."""
    import math

    from hydra.core.override_parser.overrides_parser import OverridesParser
    from nanbench.sweep.fold import _parsed
    hydra = OverridesParser.create().parse_override(f"k={value}").value()
    _parsed.cache_clear()
    ours = _parsed(f"k={value}")
    assert type(ours) is type(hydra)
    assert ours == hydra or (isinstance(hydra, float) and math.isnan(hydra) and math.isnan(ours))
