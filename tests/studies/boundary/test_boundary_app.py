"""nanbench.studies.boundary.app: the multirun callback writes the table of every job's search."""

from __future__ import annotations

import json

from nanbench.config import compose
from nanbench.studies.boundary.app import BoundaryCallback


def test_multirun_callback_writes_the_table_into_the_sweep_folder(tmp_path, summary):
    from hydra.core.utils import JobReturn, JobStatus
    from omegaconf import OmegaConf

    callback = BoundaryCallback()
    for i, status in enumerate(["bracketed", "stable_everywhere"]):
        ret = JobReturn(overrides=[f"optimizer={'sgd' if i == 0 else 'adam'}"], status=JobStatus.COMPLETED)
        ret.return_value = summary(status, "sgd" if i == 0 else "adam")
        callback.on_job_end(config=None, job_return=ret)
    failed = JobReturn(overrides=["optimizer=rmsprop"], status=JobStatus.FAILED)
    failed.return_value = RuntimeError("a bug")
    callback.on_job_end(config=None, job_return=failed)  # a crashed job is not a row
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path / "sweep")},
                                         "job": {"config_name": "boundaries"}}})
    callback.on_multirun_end(config=config)
    rows = json.loads((tmp_path / "sweep" / "boundaries.json").read_text())
    assert [r["overrides"] for r in rows] == [["optimizer=sgd"], ["optimizer=adam"]]
    assert (tmp_path / "sweep" / "boundaries.md").exists() and (tmp_path / "sweep" / "boundaries.png").exists()


def test_conf_boundary_names_this_callback():
    """conf/boundary.yaml's hydra.callbacks.nanbench is what `-m` instantiates: this class."""
    from hydra.utils import instantiate

    cfg = compose([], config_name="boundary", hydra_config=True)
    assert isinstance(instantiate(cfg.hydra.callbacks.nanbench), BoundaryCallback)
