"""`python -m nanbench.diagnose [hydra overrides]` (`make diagnose ARGS="..."`): conf/diagnose.yaml
composed with the overrides as the main CLI composes conf/config.yaml, validated before anything
trains or is recorded (a bad override: one line naming the key, exit 2), then diagnosed; the last
stdout line is the diagnosis's JSON summary."""

from __future__ import annotations

import shlex
import sys

from nanbench.spec import ConfigError
from nanbench.studies.diagnose.spec import CONFIG_NAME, fail, prepare


def _compose(overrides: list[str]):
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from nanbench.config import compose
    try:
        return compose(overrides, config_name=CONFIG_NAME)
    except (HydraException, OmegaConfBaseException) as exc:
        fail(" ".join(str(exc).split("\n")[0].split()))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__)
        return 0
    if any(a.startswith("-") for a in argv):
        fail(f"arguments must be Hydra overrides key=value (got {next(a for a in argv if a.startswith('-'))!r})")
    cfg = _compose(argv)
    try:
        spec, config, settings = prepare(cfg)
        import nanbench.run
        check_user_model = getattr(nanbench.run, "check_user_model", None)  # issue 22's own models (helper A)
        if check_user_model is not None:
            check_user_model(spec)  # a user's model against the data: before any store
        from nanbench.validate import check_device
        check_device(spec.train.device)
        from nanbench.tracking import Tracker, check_uri
        check_uri(spec.tracking.uri)
        from nanbench.run import resolve_device
        device = resolve_device(spec.train.device)
        tracker = Tracker(spec.tracking)
    except ConfigError as exc:
        fail(str(exc))
    from nanbench.studies.diagnose.report import write
    from nanbench.studies.diagnose.run import diagnose

    side_by_side = int(config.get("sweep", {}).get("side_by_side", 64) or 1)
    diagnosis = diagnose(spec, config, settings, tracker=tracker, device=device, side_by_side=side_by_side)
    summary = diagnosis.summary()
    folder = f"{settings.out}/{diagnosis.name}"
    summary["report"] = f"{folder}/report.md"
    command = "python -m nanbench.diagnose " + " ".join(shlex.quote(a) for a in argv)
    for path in write(summary, folder, command.strip()):
        print(f"wrote {path}", flush=True)
    print(diagnosis_json(summary), flush=True)
    return 0


def diagnosis_json(summary: dict) -> str:
    import json
    return json.dumps(summary, allow_nan=False)
