"""A boundary search as a Hydra app: `python -m nanbench.studies.boundary [overrides]` runs one
search and prints its JSON summary last; under ``-m`` each job is one search and
:class:`BoundaryCallback` (named in conf/boundary.yaml) writes the table of all of them.
"""

from __future__ import annotations

import json
from pathlib import Path

from nanbench.config import CONF_DIR
from nanbench.spec import ConfigError
from nanbench.studies.boundary.report import write_plot, write_table
from nanbench.studies.boundary.run import find_boundary
from nanbench.studies.boundary.spec import CONFIG_NAME, fail, prepare


def run_one(cfg) -> dict:
    """`python -m nanbench.studies.boundary [overrides]`: one search; prints its JSON summary last."""
    from nanbench.run import resolve_device
    from nanbench.tracking import Tracker

    try:
        spec, bs = prepare(cfg)
        tracker = Tracker(spec.tracking)
        device = resolve_device(spec.train.device)
    except ConfigError as exc:
        fail(str(exc))
    result = find_boundary(spec, bs, tracker=tracker, device=device)
    print(result.to_json(), flush=True)
    return result.summary()


def hydra_app():
    """The Hydra entry point over conf/boundary.yaml (made on call, so importing needs no Hydra app)."""
    import hydra

    @hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name=CONFIG_NAME)
    def app(cfg) -> dict:
        return run_one(cfg)  # under -m, BoundaryCallback collects the returned summaries

    return app


from hydra.experimental.callback import Callback as _Callback


class BoundaryCallback(_Callback):
    """Under `python -m nanbench.studies.boundary -m ...`: collects each job's search summary and writes
    boundaries.{json,md,png} into Hydra's sweep folder when the multirun ends.

    It takes the place of nanbench.sweep.SweepCallback (conf/boundary.yaml), whose per-run parent
    and resume logic are for single training runs, not searches. Jobs report through their return
    value, so the table needs the basic (in-process) launcher; `--grid` needs no launcher at all.
    """

    def __init__(self) -> None:
        self.summaries: list[dict] = []

    def on_job_end(self, config, job_return, **kwargs) -> None:
        from hydra.core.utils import JobStatus

        value = job_return.return_value if job_return.status == JobStatus.COMPLETED else None
        if isinstance(value, dict) and "lr_max_stable" in value:
            self.summaries.append({**value, "overrides": list(job_return.overrides or [])})

    def on_multirun_end(self, config, **kwargs) -> None:
        if not self.summaries:
            return
        out = Path(str(config.hydra.sweep.dir))
        out.mkdir(parents=True, exist_ok=True)
        (out / "boundaries.json").write_text(json.dumps(self.summaries, indent=1, allow_nan=False) + "\n")
        name = str(config.hydra.job.config_name)
        write_table(self.summaries, out / "boundaries.md",
                    command=f"python -m nanbench.studies.boundary -m --config-name {name} ...")
        write_plot(self.summaries, out / "boundaries.png")
        print(f"nanbench.studies.boundary: {len(self.summaries)} searches; table {out / 'boundaries.md'}", flush=True)
