"""`hydra/sweeper=nanbench`: Hydra's basic sweeper without composing every job twice.

The basic sweeper composes each job's config once to validate the batch and the launcher
composes it again to run it: about 0.1 s per job on a small machine, which is more than a fast
training run. This sweeper validates the first job of each batch (a composition error in a grid
shows up there) and leaves the rest to the launcher, which composes each job exactly once. It
also records the number of jobs in the sweep directory, for nanbench's progress display.
Everything else, grid syntax included, is the basic sweeper's.
"""


import json
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.types import Override

JOBS_FILE = "nanbench_jobs.json"


@dataclass
class NanbenchSweeperConf:
    _target_: str = "hydra_plugins.nanbench_sweeper.nanbench_sweeper.NanbenchSweeper"
    max_batch_size: Optional[int] = None  # jobs handed to the launcher at once (None: all)
    params: Optional[Dict[str, str]] = None  # the grid: config key -> comma-separated options


ConfigStore.instance().store(group="hydra/sweeper", name="nanbench", node=NanbenchSweeperConf,
                             provider="nanbench")


class NanbenchSweeper(BasicSweeper):
    def split_arguments(self, overrides: List[Override], max_batch_size: Optional[int]) -> List[List[List[str]]]:
        batches = BasicSweeper.split_arguments(overrides, max_batch_size)
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        (sweep_dir / JOBS_FILE).write_text(json.dumps({"jobs": sum(len(b) for b in batches)}))
        return batches

    def validate_batch_is_legal(self, batch: Sequence[Sequence[str]]) -> None:
        super().validate_batch_is_legal(batch[:1])
