"""A user's own loss: ``loss=builder``'s keys, and the loss a saved ``.keras`` model was compiled
with (``loss=auto``, the default, and ``loss=compiled``), read from the file's config without
running any of its code. The model half of a user's own work is nanbench.user_model.
"""

from __future__ import annotations

from nanbench.user_model import builder_digest, check_keras_file
from nanbench.validate import ConfigError


def check_loss_keys(lo: dict, builder: bool) -> None:
    """loss=builder's builder (package.module:function of a module that is there) and its digest
    (computed here), in place in the loss group `lo`; loss.builder on another loss (`builder`
    false) is an error. Whether the function imports and returns a loss is checked with Keras
    (nanbench.losses.user_loss, through nanbench.run.check_user_model)."""
    if not builder:
        for key in ("builder", "digest"):
            if lo.get(key) is not None:
                raise ConfigError(f"loss.{key}", f"left out for loss {lo.get('name', 'mse')} (it belongs to "
                                  "loss=builder)", lo[key])
        return
    digest = builder_digest(lo.get("builder"), "loss.builder")
    if lo.get("digest") not in (None, digest):
        raise ConfigError("loss.digest", f"left out (nanbench takes it from the module: {digest})", lo["digest"])
    lo["digest"] = digest


# ---- the loss a saved model was compiled with (loss=auto, the default; loss=compiled) ----

_LOSS_ALIASES = {"mse": "MeanSquaredError", "mae": "MeanAbsoluteError", "mape": "MeanAbsolutePercentageError",
                 "msle": "MeanSquaredLogarithmicError", "kld": "KLDivergence", "kl_divergence": "KLDivergence",
                 "logcosh": "LogCosh", "log_cosh": "LogCosh"}


def compiled_loss(path: str) -> str | None:
    """The loss (and loss weights) a .keras file was compiled with, as Keras saved them in the
    archive's config.json (``compile_config``), canonical JSON ``{"loss": ..., "loss_weights": ...}``;
    None for a model saved uncompiled. Read without Keras (nothing of the file is run)."""
    import json
    import zipfile
    check_keras_file(path)
    try:
        config = json.loads(zipfile.ZipFile(path).read("config.json"))
    except (KeyError, ValueError, OSError):
        return None
    compiled = (config.get("compile_config") or {}) if isinstance(config, dict) else {}
    if not isinstance(compiled, dict) or compiled.get("loss") is None:
        return None
    return json.dumps({"loss": compiled["loss"], "loss_weights": compiled.get("loss_weights")}, sort_keys=True,
                      separators=(",", ":"))


def compiled_class(compiled: str) -> str:
    """The Keras class (``keras.losses.CategoricalCrossentropy``) of a compiled loss (:func:`compiled_loss`):
    a dict's class_name, a string's name in CamelCase (``categorical_crossentropy``), Keras's aliases
    (mse, mae, ...) spelled out; "" for a loss that is not one class (a list or dict per output)."""
    import json
    loss = json.loads(compiled)["loss"]
    if isinstance(loss, dict) and "class_name" in loss:
        return f"{loss.get('module') or 'keras.losses'}.{loss['class_name']}"
    if isinstance(loss, str):
        return "keras.losses." + _LOSS_ALIASES.get(loss, "".join(p.capitalize() for p in loss.split("_")))
    return ""


def compiled_label(compiled: str) -> str:
    """A compiled loss in a few words for reports and run names: its Keras name, with
    from_logits and a loss weight other than 1 where set (``categorical_crossentropy``)."""
    import json
    value = json.loads(compiled)
    loss, weights = value["loss"], value.get("loss_weights")
    name = loss if isinstance(loss, str) else (loss.get("config", {}).get("name") or loss.get("class_name", "loss")
                                               if isinstance(loss, dict) else json.dumps(loss))
    if isinstance(loss, dict) and loss.get("config", {}).get("from_logits"):
        name += " (from_logits)"
    weight = weights[0] if isinstance(weights, list) and len(weights) == 1 else weights
    return name + (f" x {weight:g}" if isinstance(weight, (int, float)) and weight != 1 else "")


def resolve_loss(lo: dict, model) -> dict:
    """The loss group for loss=auto (conf/config.yaml's default) and loss=compiled: a saved model
    (model=keras) trains with the loss it was compiled with (``loss.compiled``, the JSON of
    :func:`compiled_loss`), as the user wrote it; every other model, and a model saved
    uncompiled, with auto's mse. loss=compiled on a model without a compiled loss is the
    ConfigError naming loss.name."""
    compiled = compiled_loss(model.path) if model.name == "keras" and model.path else None
    rest = {k: v for k, v in lo.items() if k not in ("name", "class", "compiled")}  # checked as any loss's keys
    if compiled is not None:
        if lo.get("compiled") not in (None, compiled):
            raise ConfigError("loss.compiled", "left out (nanbench reads it from model.path)", lo["compiled"])
        return {**rest, "name": "compiled", "compiled": compiled}
    if lo.get("name") == "compiled":
        raise ConfigError("loss.name", "a loss option (mse, crossentropy, ...; compiled takes the loss of a "
                          "model=keras file saved compiled)",
                          f"compiled ({model.path or model.name}: no compiled loss)")
    return {**rest, "name": "mse"}
