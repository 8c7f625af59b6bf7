"""The naive peer of `make bench`: how a sweep is usually written.

One Hydra job per run (basic launcher, `-m` over every factor, learning rate included), a fresh
Keras model trained with plain `model.fit`, and MLflow's fluent API called per value. It trains
the same data, model, optimizer and loss as nanbench (nanbench's builders), so the outcomes can be
compared run for run; what differs is the harness.

    python bench/naive_peer.py -m dataset=clean,outliers optimizer=sgd,adam optimizer.lr=0.01,0.1
"""

from __future__ import annotations

import math
from pathlib import Path

import hydra
from omegaconf import DictConfig

CONF = str(Path(__file__).resolve().parent.parent / "conf")


def outcome_from_history(first_loss: float, epoch_loss: list[float], spec) -> str:
    """nanbench's thresholds, applied to what fit reports (the first batch and the epoch means)."""
    if any(math.isnan(v) for v in epoch_loss):
        return "nan"
    if any(math.isinf(v) for v in epoch_loss):
        return "inf"
    final = epoch_loss[-1]
    if final > spec.outcome.diverge_factor * first_loss:
        return "diverged"
    if final <= spec.outcome.converge_ratio * first_loss or final <= spec.outcome.converge_abs:
        return "converged"
    return "stalled"


@hydra.main(version_base="1.3", config_path=CONF, config_name="config")
def main(cfg: DictConfig) -> None:
    import keras
    import mlflow

    from nanbench.data import load
    from nanbench.model import build_loss, build_model, build_optimizer
    from nanbench.spec import from_config

    spec = from_config(cfg)
    data = load(spec.dataset, spec.preprocess)
    keras.utils.set_random_seed(spec.train.seed)
    model = build_model(spec.model, data.n_features, seed=spec.train.seed)
    model.compile(optimizer=build_optimizer(spec.optimizer, spec.clipping), loss=build_loss(spec.loss))
    first: list[float] = []
    record_first = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: first.append(float(logs["loss"])) if not first else None)
    history = model.fit(data.X, data.y, epochs=spec.train.epochs, batch_size=spec.train.batch_size,
                        shuffle=spec.train.shuffle, verbose=0, callbacks=[record_first])
    losses = [float(v) for v in history.history["loss"]]
    outcome = outcome_from_history(first[0], losses, spec)
    mlflow.set_tracking_uri(spec.tracking.uri)
    mlflow.set_experiment(spec.tracking.experiment)
    with mlflow.start_run():
        mlflow.log_params(spec.factors())
        for epoch, value in enumerate(losses):
            if math.isfinite(value):
                mlflow.log_metric("loss", value, step=epoch)
        mlflow.set_tag("outcome", outcome)
        mlflow.set_tag("config_hash", spec.config_hash())


if __name__ == "__main__":
    main()
