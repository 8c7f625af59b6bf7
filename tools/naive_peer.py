"""The naive peer of `make bench`: how a sweep is usually written.

One Hydra job per run (basic launcher, `-m` over every factor, learning rate included), a fresh
Keras model trained with plain `model.fit`, and MLflow's fluent API called per value. It trains
the same data, model, optimizer and loss as nanbench (nanbench's builders), so the outcomes can be
compared run for run; what differs is the harness.

    python tools/naive_peer.py -m dataset=clean,outliers optimizer=sgd,adam optimizer.lr=0.01,0.1
"""

from __future__ import annotations

import math

import hydra
from omegaconf import DictConfig

from nanbench.config import CONF_DIR

CONF = str(CONF_DIR)


def outcome_from_losses(initial: float, final: float, epoch_loss: list[float], spec) -> str:
    """nanbench's thresholds, applied to what a user's script sees: fit's epoch means for NaN/inf,
    and `evaluate` on the whole training set before and after training for the rest."""
    if any(math.isnan(v) for v in epoch_loss) or math.isnan(final):
        return "nan"
    if any(math.isinf(v) for v in epoch_loss) or math.isinf(final):
        return "inf"
    o = spec.outcome
    if final > o.diverge_factor * initial:
        return "diverged"
    if final <= o.converge_ratio * initial or final <= o.converge_abs:
        return "converged"
    if final <= (1 - o.improve_fraction) * initial:
        return "improving"
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
    whole = dict(batch_size=data.n_samples, verbose=0)
    initial = float(model.evaluate(data.X, data.y, **whole))
    history = model.fit(data.X, data.y, epochs=spec.train.epochs_for(data.n_samples),
                        batch_size=spec.train.batch_size, shuffle=spec.train.shuffle, verbose=0)
    losses = [float(v) for v in history.history["loss"]]
    outcome = outcome_from_losses(initial, float(model.evaluate(data.X, data.y, **whole)), losses, spec)
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
