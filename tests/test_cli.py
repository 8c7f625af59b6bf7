"""`python -m nanbench`: one run through the real CLI; bad input exits clearly with nothing written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from conftest import ROOT


def nanbench(*args, cwd):
    return subprocess.run([sys.executable, "-m", "nanbench", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def test_one_run_prints_json_last_and_logs_one_mlflow_run(tmp_path):
    store = f"sqlite:///{tmp_path / 'm.db'}"
    proc = nanbench("dataset=outliers", "optimizer=sgd", "optimizer.lr=0.1", "train.epochs=3",
                    f"tracking.uri={store}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    for key in ("outcome", "first_nonfinite_step", "first_nonfinite_source", "final_loss", "steps_run",
                "steps_per_s", "run_id"):
        assert key in summary
    runs = MlflowClient(store).search_runs([MlflowClient(store).get_experiment_by_name("nanbench").experiment_id])
    assert [r.info.run_id for r in runs] == [summary["run_id"]]
    assert runs[0].data.tags["outcome"] == summary["outcome"]
    assert not (tmp_path / "outputs").exists()  # a single run writes only to its store


@pytest.mark.parametrize("override,key", [
    ("optimizer.lr=0", "optimizer.lr"),
    ("train.epochs=0", "train.epochs"),
    ("train.batch_size=0", "train.batch_size"),
    ("clipping.threshold=-1", "clipping.threshold"),
    ("dataset=nan_inputs dataset.nan_fraction=1.5", "dataset.nan_fraction"),
    ("tracking.uri=http://127.0.0.1:9", "tracking.uri"),
    ("tracking.uri=sqlite:////proc/nonexistent/m.db", "tracking.uri"),
    ("train.device=gpu", "train.device"),  # on a machine without a GPU (skipped elsewhere)
])
def test_bad_input_is_one_line_nonzero_exit_and_no_run(tmp_path, override, key):
    if key == "train.device" and any(Path("/dev").glob("nvidia[0-9]*")):
        pytest.skip("this machine has a GPU device")
    store = tmp_path / "m.db"
    args = override.split()
    if not override.startswith("tracking.uri"):
        args.append(f"tracking.uri=sqlite:///{store}")
    proc = nanbench(*args, cwd=tmp_path)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.startswith("nanbench:")]
    assert len(lines) == 1 and key in lines[0] and "must be" in lines[0]
    assert proc.stdout == ""
    assert not store.exists()  # no MLflow run, not even a store
    assert sorted(p.name for p in tmp_path.iterdir()) == (["m.db"] if store.exists() else [])


def test_unknown_option_lists_the_allowed_ones(tmp_path):
    proc = nanbench("optimizer=adagrad", cwd=tmp_path)
    assert proc.returncode != 0
    assert "optimizer/adagrad" in proc.stderr and "sgd" in proc.stderr and "rmsprop" in proc.stderr


def test_ci_runs_make_test_and_make_test_runs_every_test():
    assert any(line.strip() == "make test" for line in (ROOT / ".ci" / "run").read_text().splitlines())
    dry = subprocess.run(["make", "-n", "-W", "pyproject.toml", "test"], capture_output=True, text=True,
                         cwd=ROOT, timeout=60)
    assert dry.returncode == 0
    pytest_line = [line for line in dry.stdout.splitlines() if "-m pytest" in line]
    assert len(pytest_line) == 1 and "not slow" not in pytest_line[0]  # slow tests included


@pytest.mark.parametrize("kind", ["folder", "garbage", "missing_folder"])
def test_an_unusable_store_file_is_one_line_and_exit_2(tmp_path, kind):
    path = tmp_path / "m.db"
    if kind == "folder":
        path.mkdir()
    elif kind == "garbage":
        path.write_bytes(b"not a database " * 100)
    else:
        path = tmp_path / "missing" / "m.db"
    proc = nanbench("train.epochs=1", f"tracking.uri=sqlite:///{path}", cwd=ROOT)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nanbench: error: tracking.uri must be"), proc.stderr
    assert not (tmp_path / "missing").exists()


def test_ui_on_a_busy_port_is_one_line_and_exit_2(tmp_path):
    import socket
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = subprocess.run([sys.executable, "-m", "nanbench.cli", "ui", "--port", str(port),
                               "--store", f"sqlite:///{tmp_path / 'm.db'}"], capture_output=True, text=True,
                              cwd=ROOT, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and f"{port}" in lines[0] and "in use" in lines[0], proc.stderr
    assert "MLflow UI" not in proc.stdout and not (tmp_path / "m.db").exists()
