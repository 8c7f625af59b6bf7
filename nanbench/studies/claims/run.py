"""`make examples`' claims half: each sweep the claims name trained once, then every claim judged."""

from __future__ import annotations

from pathlib import Path

from nanbench.config import SWEEPS_DIR
from nanbench.spec import TrackingSpec
from nanbench.studies.claims.definitions import CLAIMS, Claim
from nanbench.studies.claims.judging import Judged, judge
from nanbench.studies.claims.probes import PROBES
from nanbench.studies.claims.sweeps import RunRecord, Sweep, load_sweep, run_sweep


def run_claims(*, tracking_uri: str, epochs_cap: int | None = None, claims: tuple[Claim, ...] = CLAIMS,
               sweeps_dir: Path = SWEEPS_DIR) -> list[Judged]:
    """Run each sweep the claims name once (in-process, fused engine), then judge every claim."""
    from nanbench.run import configure_tensorflow
    from nanbench.tracking import Tracker

    configure_tensorflow()
    tracker = Tracker(TrackingSpec(uri=tracking_uri))
    by_sweep: dict[str, tuple[Sweep, list[RunRecord]]] = {}
    for claim in claims:
        if claim.sweep not in by_sweep:
            sweep = load_sweep(claim.sweep, sweeps_dir)
            ids = tuple(c.id for c in claims if c.sweep == claim.sweep)
            by_sweep[claim.sweep] = (sweep, run_sweep(sweep, tracker=tracker, tracking_uri=tracking_uri,
                                                      epochs_cap=epochs_cap, claim_ids=ids))
    judged = []
    for claim in claims:
        sweep, records = by_sweep[claim.sweep]
        j = judge(claim, sweep, records)
        if claim.probe:
            j.probe = PROBES[claim.probe]()
        judged.append(j)
    return judged
