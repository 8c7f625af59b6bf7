"""nanbench.tracking.store: the forked store process, driven the way a sweep drives it.

The fork must happen before TensorFlow or MLflow are loaded, which pytest's process already has,
so the store is driven from a fresh interpreter running SCRIPT; it prints what it saw as JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from mlflow.tracking import MlflowClient

from conftest import ROOT

SCRIPT = r"""
import json, os, sys
from nanbench.spec import ConfigError, TrackingSpec, from_config
from nanbench.tracking.store import ProcessStore, can_fork

def experiment(tracker, name):
    return tracker.experiment_id(name)

def whereabouts(tracker):
    return {"pid": os.getpid(), "tensorflow": "tensorflow" in sys.modules, "mlflow": "mlflow" in sys.modules}

def refuse(tracker):
    raise ConfigError("sweep.name", "a name", "")

seen = {"can_fork": can_fork(), "pid": os.getpid()}
store = ProcessStore(TrackingSpec(uri=sys.argv[1]))
exp_id = store.submit(experiment, "store")   # answered later: the child works meanwhile
from nanbench.config import compose as compose_config  # the parent imports TensorFlow and trains
from nanbench.run import execute
results = [execute(from_config(compose_config([f"tracking.uri={sys.argv[1]}", "train.engine=fused",
                                               "train.epochs=3", f"train.seed={seed}"]))) for seed in range(5)]
seen["exp_id"] = exp_id()
writer = store.writer("store", None, {"sweep": "store"})
for result in results:
    writer.put(result, None)
writer.close()
seen["child"] = store.call(whereabouts)
seen["parent_mlflow"] = "mlflow" in sys.modules
try:
    store.call(refuse)
except ConfigError as exc:
    seen["refused"] = str(exc)
store.close()
try:
    os.kill(seen["child"]["pid"], 0)
    seen["child_alive"] = True
except ProcessLookupError:
    seen["child_alive"] = False

bad = ProcessStore(TrackingSpec(uri="sqlite:////proc/nonexistent/m.db"))
try:
    bad.call(experiment, "store")
except ConfigError as exc:
    seen["bad_call"] = str(exc)
writer = bad.writer("store", None, {})
writer.put(results[0], None)
try:
    writer.close()
except RuntimeError as exc:
    seen["bad_writer"] = str(exc)
bad.close()
print(json.dumps(seen))
"""


def test_a_forked_store_process_records_runs_and_answers_calls(tmp_path, store):
    proc = subprocess.run([sys.executable, "-c", SCRIPT, store, str(ROOT)], capture_output=True, text=True,
                          cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen["can_fork"]
    # MLflow lives in the child only; the child never loads TensorFlow
    assert seen["child"]["pid"] != seen["pid"] and seen["child"]["mlflow"]
    assert not seen["child"]["tensorflow"] and not seen["parent_mlflow"]
    # the writer's runs are in the store, and a call's exception comes back as itself
    client = MlflowClient(store)
    runs = client.search_runs([seen["exp_id"]], "tags.sweep = 'store'")
    assert sorted(int(r.data.params["train.seed"]) for r in runs) == list(range(5))
    assert all(r.info.status == "FINISHED" and r.data.tags["tensorflow_version"] != "unknown" for r in runs)
    assert seen["refused"].startswith("sweep.name must be")
    assert seen["child_alive"] is False  # close() ends the child
    # a store that cannot be opened says so, with the key, to every request
    assert seen["bad_call"].startswith("tracking.uri must be")
    assert "could not be recorded" in seen["bad_writer"] and "tracking.uri" in seen["bad_writer"]


def _experiment(tracker, name):
    return tracker.experiment_id(name)


def test_a_served_store_records_runs_from_other_connections_and_refuses_a_wrong_key(store):
    """What joblib's workers do (nanbench.sweep._job_store): send their runs to the launching
    process's store. Here the connections are this process's own."""
    import multiprocessing
    import os

    import pytest

    from conftest import compose_config
    from nanbench.run import execute
    from nanbench.spec import TrackingSpec, from_config
    from nanbench.tracking.server import RemoteStore, StoreServer

    server = StoreServer(TrackingSpec(uri=store), calls=(_experiment,))
    results = [execute(from_config(compose_config([f"tracking.uri={store}", "train.engine=fused", "train.epochs=2",
                                                   f"train.seed={seed}"]))) for seed in range(4)]
    with pytest.raises(multiprocessing.AuthenticationError):
        RemoteStore(server.address["address"], "00" * 16)
    workers = [RemoteStore(**server.address) for _ in range(2)]
    for i, worker in enumerate(workers):
        writer = worker.writer("served", None, {"sweep": "served"})
        for result in results[i::2]:
            writer.put(result, None)
        writer.close()  # answered once this connection's runs are recorded
    exp_id = workers[1].call(_experiment, "served")
    for worker in workers:
        worker.close()
    server.close()
    assert not os.path.exists(server.address["address"])
    runs = MlflowClient(store).search_runs([exp_id], "tags.sweep = 'served'")
    assert sorted(int(r.data.params["train.seed"]) for r in runs) == list(range(4))
    assert all(r.info.status == "FINISHED" for r in runs)


def _anything(tracker):
    return "called"


def test_a_served_store_keeps_accepting_after_a_failed_handshake_and_serves_only_its_calls(store):
    """A caller that connects and hangs up (or sends garbage) must not stop the server: workers
    that connect later are served. The socket's folder is private to this user, and a caller
    may ask only for the functions the server was given."""
    import socket
    import stat

    import pytest

    from nanbench.spec import TrackingSpec
    from nanbench.tracking.server import RemoteStore, StoreServer

    server = StoreServer(TrackingSpec(uri=store), calls=(_experiment,))
    path = server.address["address"]
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
    for payload in (b"", b"garbage that is no handshake"):
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(path)
            s.sendall(payload)
    worker = RemoteStore(**server.address)  # before the fix: blocks for ever in the handshake
    assert worker.call(_experiment, "served")
    with pytest.raises(PermissionError, match="_anything"):
        worker.call(_anything)
    worker.close()
    # a pickle that would call a function of the caller's choosing is refused unread
    import pickle
    evil = RemoteStore(**server.address)
    evil.conn.send_bytes(pickle.dumps(("call", os.system, ("true",))))
    ok, refused = pickle.loads(evil.conn.recv_bytes())
    assert not ok and "posix.system" in str(refused)
    evil.close()
    server.close()
