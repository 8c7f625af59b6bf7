"""What MLflow keeps of one finished run: its name, tags, params, metrics and steps.csv.

Non-finite numbers never reach MLflow as metric values (its UI fails on them); they are recorded
as the outcome tag, 0/1 metrics and the first-non-finite steps.
"""

from __future__ import annotations

import functools
import io
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nanbench import vocab
from nanbench.forensics import INF_BIT, LAYER_COLUMN, NAN_BIT, SKIPPED_BIT
from nanbench.result import RunResult
from nanbench.vocab import SOURCES


MAX_EPOCH_POINTS = 100  # per-epoch curves longer than this are thinned; steps.csv keeps everything


@functools.lru_cache(maxsize=1)
def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, timeout=5).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


@functools.lru_cache(maxsize=1)
def versions() -> dict[str, str]:
    """The versions of TensorFlow, Keras and NumPy, without importing TensorFlow to learn them (a
    store process records runs without ever loading it): the loaded module's, else the installed
    distribution's."""
    import sys
    from importlib import metadata

    def version(module: str, *distributions: str) -> str:
        loaded = sys.modules.get(module)
        if loaded is not None and getattr(loaded, "__version__", None):
            return loaded.__version__
        for name in distributions:
            try:
                return metadata.version(name)
            except metadata.PackageNotFoundError:
                continue
        return "unknown"

    return {"tensorflow_version": version("tensorflow", "tensorflow", "tensorflow-cpu", "tensorflow-macos"),
            "keras_version": version("keras", "keras"), "numpy_version": np.__version__}


def run_name(spec) -> str:
    """A name a person can read, e.g. ``outliers/none · mlp-relu · sgd lr=0.1 · clipnorm=1 · mse``,
    ``sequences/none · lstm16 · sgd lr=1 · noclip · mse`` or ``digits/none · mlp_batchnorm-relux2 · adam
    lr=0.01 · noclip · crossentropy-logits``."""
    m = spec.model
    if m.name == "linear":
        model = "linear"
    elif m.name in ("lstm", "gru", "embedding"):  # no hidden Dense layers: the layer and its units
        model = f"{m.name}{m.units or ''}"
    else:  # mlp and its variants, mlp_batchnorm
        model = (f"{'mlp' if m.name != 'mlp_batchnorm' else m.name}-{m.activation}"
                 + (f"x{m.depth}" if m.depth > 1 else ""))
    clip = "noclip" if spec.clipping.kind == "none" else f"{spec.clipping.kind}={spec.clipping.threshold:g}"
    loss = spec.loss.name + ("-logits" if getattr(spec.loss, "from_logits", False) else "")
    if getattr(spec.loss, "compiled", None):  # model=keras's own loss: which one (compiled categorical_crossentropy)
        from nanbench.user_loss import compiled_label
        loss = f"compiled {compiled_label(spec.loss.compiled)}"
    parts = [f"{spec.dataset.name}/{spec.preprocess.scaler}", model,
             f"{spec.optimizer.name} lr={spec.optimizer.lr:g}", clip, loss]
    if spec.train.precision != "float32":
        parts.append(spec.train.precision)
    return " · ".join(parts)


def steps_csv(result: RunResult) -> str:
    """The per-step series as CSV: step, epoch, loss, grad_norm, weight_norm, flags, source bits,
    on each epoch's last step its Keras epoch loss and the whole data's loss at the epoch's end
    (``full_loss``, what time to target reads; empty elsewhere), then one gradient norm per
    layer with weights (``grad_norm:<layer>``, before clipping). With the run's initial_loss and
    final_loss metrics, everything nanbench.forensics.classify reads, so a run's outcome can be
    re-derived from its artifact (forensics.series_from_steps_csv)."""
    s = result.series
    buf = io.StringIO()
    cols = ["step", "epoch", "loss", "grad_norm", "weight_norm", "flags"]
    cols += [f"{src}_{kind}" for src in SOURCES for kind in ("inf", "nan")] + ["skipped", "epoch_loss", "full_loss"]
    layers = list(s.layer_grad_norm.items())
    cols += [f"{LAYER_COLUMN}{name}" for name, _ in layers]
    buf.write(",".join(cols) + "\n")
    flags = np.asarray(s.flags, dtype=np.int64)
    for i in range(s.steps):
        f = int(flags[i])
        bits = [int(bool(f & b)) for src in SOURCES for b in (INF_BIT[src], NAN_BIT[src])]
        values = ",".join(repr(float(v)) for v in (s.loss[i], s.grad_norm[i], s.weight_norm[i]))
        epoch = i // s.steps_per_epoch
        last = i == min((epoch + 1) * s.steps_per_epoch, s.steps) - 1 and epoch < len(s.epoch_loss)
        buf.write(f"{i},{epoch},{values},{f},"
                  + ",".join(map(str, bits)) + f",{int(bool(f & SKIPPED_BIT))},"
                  + (repr(float(s.epoch_loss[epoch])) if last else "") + ","
                  + (repr(float(s.epoch_full_loss[epoch])) if last and epoch < len(s.epoch_full_loss) else "")
                  + "".join("," + repr(float(norms[i])) for _, norms in layers) + "\n")
    return buf.getvalue()


def epoch_metrics(result: RunResult, log_steps: bool) -> list[tuple[str, float, int]]:
    """Per-epoch loss and largest gradient norm, finite values only (the UI's charts).

    The weight norm and every per-step value are in the steps.csv artifact: each metric costs
    a row in MLflow's store, and rows are most of the cost of recording a run."""
    s = result.series
    out: list[tuple[str, float, int]] = []
    # at most ~MAX_EPOCH_POINTS points per curve: long runs are thinned evenly (last epoch kept)
    stride = max(1, -(-len(s.epoch_loss) // MAX_EPOCH_POINTS))
    keep = set(range(0, len(s.epoch_loss), stride)) | {len(s.epoch_loss) - 1}
    for epoch, value in enumerate(s.epoch_loss):
        if epoch in keep and np.isfinite(value):
            out.append((vocab.EPOCH_METRICS[0], float(value), epoch))
    for epoch, start in enumerate(range(0, s.steps, s.steps_per_epoch)):
        if epoch not in keep:
            continue
        grad = s.grad_norm[start:start + s.steps_per_epoch]
        grad = grad[np.isfinite(grad)]
        if grad.size:
            out.append((vocab.EPOCH_METRICS[1], float(grad.max()), epoch))
    if log_steps:
        for name, values in zip(vocab.STEP_METRICS, (s.loss, s.grad_norm)):
            out += [(name, float(v), i) for i, v in enumerate(values) if np.isfinite(v)]
    return out


@dataclass
class Record:
    """What MLflow keeps of one finished run, before it is written."""
    name: str
    tags: dict[str, str]
    params: list            # mlflow.entities.Param
    metrics: list           # mlflow.entities.Metric, finite values only
    status: str             # FINISHED or FAILED
    start_ms: int
    end_ms: int
    run_id: str = ""
    artifact_uri: str = ""


def build_record(result: RunResult, start_time: float | None, parent_run_id: str | None,
            extra_tags: dict[str, str] | None, log_steps: bool) -> Record:
    from mlflow.entities import Metric, Param

    spec = result.spec
    v = result.verdict
    all_tags = {
        vocab.OUTCOME: result.outcome,
        vocab.SOURCE: (v.first_nonfinite_source if v else None) or vocab.NO_SOURCE,
        vocab.LAYER: result.first_nonfinite_layer or vocab.NO_SOURCE,
        vocab.LAYER_PART: result.first_nonfinite_part or vocab.NO_SOURCE,
        vocab.DEVICE: result.device,
        vocab.MACHINE: result.machine,
        vocab.ENGINE: result.engine,
        vocab.SIDE_BY_SIDE: str(result.side_by_side),
        vocab.CONFIG_HASH: spec.config_hash(),
        "git_commit": git_commit(),
        **versions(),
        **(extra_tags or {}),
    }
    if result.error:
        all_tags[vocab.ERROR] = result.error[:5000]
    if parent_run_id:
        all_tags[vocab.PARENT_RUN_ID] = parent_run_id
    now_ms = int(time.time() * 1000)
    start_ms = int((start_time if start_time is not None else time.time() - result.wall_s) * 1000)
    name = all_tags["mlflow.runName"] = run_name(spec)
    metrics: list[Metric] = []

    def add(key: str, value, step: int = 0) -> None:
        if value is not None and np.isfinite(value):
            metrics.append(Metric(key, float(value), now_ms, step))

    for key, outcomes in vocab.OUTCOME_FLAGS.items():
        add(key, int(result.outcome in outcomes))
    for key in vocab.RUN_METRICS:
        add(key, getattr(result, key))
    if v is not None:
        for key in vocab.VERDICT_METRICS:
            add(key, getattr(v, key))
    if result.series is not None:
        metrics += [Metric(n, val, now_ms, step) for n, val, step in epoch_metrics(result, log_steps)]
    params = [Param(k, str(val)) for k, val in spec.factors().items()]
    return Record(name=name, tags={k: str(val) for k, val in all_tags.items()}, params=params,
                   metrics=metrics, status="FAILED" if result.outcome == "error" else "FINISHED",
                   start_ms=start_ms, end_ms=now_ms)
