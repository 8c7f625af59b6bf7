"""The catalogue of single changes a diagnosis tries, and applying a change to a configuration.

A change is a few settings of the composed configuration (dotted keys) after, where it swaps a
whole option (``loss=huber``), that option's group. Which changes apply is read from the run
spec and from what the first run measured (:class:`Evidence`), never from a dataset's or model's
name, so a user's own data and model get the same catalogue as nanbench's built-in ones:

- learning rate / 3, / 10, / 100 (always);
- ``global_clipnorm`` and ``clipnorm`` at two thresholds taken from the measured global gradient
  norms before the first non-finite step: their median (what the brief asks) and their smallest
  value (an exploding run's norms grow geometrically, so their median is already far past a
  healthy step; the smallest is usually step 0's, the scale of a step before anything went wrong);
  and at the usual threshold 1 (conf/clipping's), since a run whose norms are huge from its first
  step on has no healthy norm to take one from; all left out when no finite norm was measured (a run
  non-finite from its first step: clipping acts only after a step's forward pass);
- standard scaling of X, of y (regression), of both, where not already so;
- dropping or imputing non-finite input rows (``preprocess.nonfinite``), when the data hold any;
- Huber instead of MSE (or RMSE); Keras's cross-entropy with ``from_logits=true`` instead of the
  hand-written log loss; float32 instead of mixed precision; Adam (at Keras's default learning
  rate, conf/optimizer/adam.yaml) instead of SGD; a 10x smaller initialisation
  (``model.init_scale``, where the model option has that key);
- the output layer's activation the task asks for (``model.final_activation``): linear for
  regression (and for logits), sigmoid for a binary task, softmax for a multiclass one, where the
  model's output layer has another (an exponential or relu output on a regression: a real bug);
- the hidden layers' activation (``model.activation`` of nanbench's MLPs, ``model.hidden_activation``
  of a user's model): relu, selu, tanh, each where the hidden Dense layers have another;
- cross-entropy instead of a loss that compares values (mse, ...) on a classification target (MSE
  on one-hot labels: a real bug), from logits where the output is linear.

A user's model's activations are read from the model itself (its Dense layers: the last is the
output), as nanbench.user_model builds it.

A change whose configuration nanbench.spec rejects (e.g. y scaling of labels) does not apply;
the runner (nanbench.studies.diagnose.tries) checks that before anything trains.
"""

from __future__ import annotations

import copy
import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from nanbench.spec import CLASSIFICATION_LOSSES, USER_LOSS, USER_MODELS, RunSpec

LR_FACTORS = (3, 10, 100)        # learning rate divided by each
INIT_SHRINK = 0.1                # model.init_scale times this
SQUARED_LOSSES = ("keras.losses.MeanSquaredError", "nanbench.losses.RootMeanSquaredError")
NAIVE_LOG_LOSSES = ("nanbench.losses.LogLossNaive",)


USUAL_THRESHOLD = 1.0  # the clipping options' threshold (conf/clipping/*.yaml)
HIDDEN_ACTIVATIONS = ("relu", "selu", "tanh")  # the hidden activations tried


@dataclass(frozen=True)
class Change:
    """One change of the configuration: option swaps (group -> option), then dotted settings."""

    name: str                                  # what it is, e.g. "lr/10" or "standard scaling of X"
    settings: tuple[tuple[str, Any], ...] = ()  # dotted key -> value, applied after the swaps
    groups: tuple[tuple[str, str], ...] = ()   # config group -> option, the group replaced whole
    why: str = ""                              # how its values were chosen

    @property
    def overrides(self) -> list[str]:
        """The change as Hydra overrides (append them to the diagnosed command line)."""
        return [f"{g}={o}" for g, o in self.groups] + [f"{k}={_text(v)}" for k, v in self.settings]

    @property
    def touches(self) -> set[str]:
        """The groups it swaps and the keys it sets (two changes touching one do not pair)."""
        return {g for g, _ in self.groups} | {k for k, _ in self.settings}

    def __add__(self, other: "Change") -> "Change":
        return Change(name=f"{self.name} + {other.name}", settings=self.settings + other.settings,
                      groups=self.groups + other.groups, why="; ".join(w for w in (self.why, other.why) if w))



def loss_class(spec) -> str:
    """The Keras class of the run's loss: a saved model's compiled loss's own (loss=compiled), else the option's."""
    from nanbench.user_loss import compiled_class
    return compiled_class(spec.loss.compiled) if getattr(spec.loss, "compiled", None) else spec.loss.keras_class()


def loss_name(spec) -> str:
    """The run's loss in a change's name: ``compiled categorical_crossentropy``, else the option's name."""
    from nanbench.user_loss import compiled_label
    return f"compiled {compiled_label(spec.loss.compiled)}" if getattr(spec.loss, "compiled", None) else spec.loss.name

def _text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


@dataclass(frozen=True)
class Evidence:
    """What the diagnosed run showed that the catalogue needs."""

    grad_norms: tuple[float, ...]  # finite global gradient norms before the first non-finite step
    nonfinite_data: bool           # the data as made (before preprocessing) hold NaN or inf
    # the hidden Dense layers' activations and the output layer's (None: read from the spec / model)
    activations: tuple[tuple[str, ...], str | None] | None = None


def model_activations(spec: RunSpec) -> tuple[tuple[str, ...], str | None]:
    """The activations of the model's hidden Dense layers and of its output layer: from the spec
    for nanbench's own models, from the built model for a user's (nanbench.user_model)."""
    m = spec.model
    if m.name in USER_MODELS:
        from nanbench import user_model
        from nanbench.data.generators import make_dataset
        from nanbench.model import build_model
        from nanbench.run import _n_features
        model = build_model(m, _n_features(spec.dataset, make_dataset), seed=spec.train.seed)
        return user_model.activation_names(model)
    hidden = (m.activation,) * m.depth if m.name in ("mlp", "mlp_batchnorm") else ()
    return hidden, m.final_activation or m.output_activation


def _activation_changes(spec: RunSpec, config: dict, activations) -> list[Change]:
    """The output activation the task asks for, other hidden activations, and cross-entropy
    instead of a value loss on classes (see the module's docstring)."""
    hidden, final = activations
    task, keys, user = spec.dataset.problem, config.get("model", {}), spec.model.name in USER_MODELS
    changes = []
    wanted = ("linear" if task == "regression" or spec.loss.from_logits
              else "sigmoid" if task == "binary" else "softmax")
    if final is not None and final != wanted and "final_activation" in keys:
        changes.append(Change(name=f"{wanted} output instead of {final}", settings=(("model.final_activation", wanted),),
                              why=f"the {task} task{' with logits' if spec.loss.from_logits else ''} asks for a "
                                  f"{wanted} output"))
    key = "model.hidden_activation" if user else "model.activation"
    if hidden and key.split(".")[1] in keys:
        now = hidden[0] if len(set(hidden)) == 1 else "mixed"
        changes += [Change(name=f"hidden {a} instead of {now}", settings=((key, a),))
                    for a in HIDDEN_ACTIVATIONS if a != now]
    loss = loss_class(spec)
    if task != "regression" and loss not in CLASSIFICATION_LOSSES and loss != USER_LOSS:
        logits = not user or final == "linear"  # ours turn linear with from_logits; a user's linear output is logits
        changes.append(Change(name=f"cross-entropy{' (from_logits)' if logits else ''} instead of {loss_name(spec)}",
                              groups=(("loss", "crossentropy"),), settings=(("loss.from_logits", logits),),
                              why=f"a {task} target takes a classification loss"))
    return changes


def grad_norms_before(series, first_nonfinite_step: int | None) -> tuple[float, ...]:
    """The finite global gradient norms of the steps before the first non-finite one (every step
    of a run that stayed finite)."""
    if series is None:
        return ()
    norms = np.asarray(series.grad_norm, dtype=np.float64)
    if first_nonfinite_step is not None:
        norms = norms[:first_nonfinite_step]
    return tuple(float(v) for v in norms[np.isfinite(norms)])


@functools.lru_cache(maxsize=None)
def option_node(group: str, option: str) -> dict:
    """The config group `group` as option `option` composes it (its defaults list followed)."""
    from omegaconf import OmegaConf

    from nanbench.config import compose
    return OmegaConf.to_container(compose([f"{group}={option}"])[group], resolve=True)


def apply(config: dict, change: Change) -> dict:
    """A copy of the plain `config` with `change` made: its option swaps, then its settings."""
    out = copy.deepcopy(config)
    for group, option in change.groups:
        out[group] = copy.deepcopy(option_node(group, option))
    for key, value in change.settings:
        node = out
        *path, last = key.split(".")
        for part in path:
            node = node.setdefault(part, {})
        node[last] = value
    return out


def _clip(kind: str, threshold: float, label: str, current, why: str | None = None) -> Change | None:
    if current.kind == kind and current.threshold <= threshold:
        return None  # already clipped at least this tightly
    return Change(name=f"{kind}={threshold:.3g} ({label})",
                  settings=(("clipping.kind", kind), ("clipping.threshold", float(threshold))),
                  why=why or f"threshold: the {label} of the finite gradient norms before the first non-finite step")


def catalogue(spec: RunSpec, config: dict, evidence: Evidence) -> list[Change]:
    """The single changes that apply to `spec` (its plain `config` says which keys its options
    have), gentlest first within each kind."""
    lr = spec.optimizer.lr
    changes = [Change(name=f"lr/{k}", settings=(("optimizer.lr", lr / k),), why=f"optimizer.lr {lr:g} / {k}")
               for k in LR_FACTORS]
    if evidence.grad_norms:
        norms = np.asarray(evidence.grad_norms)
        thresholds = {"median": float(np.median(norms)), "smallest": float(norms.min())}
        for kind in ("global_clipnorm", "clipnorm"):
            for label, t in thresholds.items():
                if t > 0 and math.isfinite(t):
                    changes.append(_clip(kind, t, label, spec.clipping))
            # and the usual threshold, whatever was measured: a run whose norms are huge from
            # its first step on has no healthy norm to take a threshold from
            changes.append(_clip(kind, USUAL_THRESHOLD, "usual", spec.clipping,
                                 why=f"threshold {USUAL_THRESHOLD:g}: conf/clipping's, the usual choice"))
    p = spec.preprocess
    regression = spec.dataset.problem == "regression"
    y_kind = p.scaler if p.target_scaler == "same" else p.target_scaler
    y_standard = p.scale_target and y_kind == "standard"
    y_scaling = (("preprocess.scale_target", True), ("preprocess.target_scaler", "standard"))
    if p.scaler != "standard":
        changes.append(Change(name="standard scaling of X", settings=(("preprocess.scaler", "standard"),)))
    if regression and not y_standard:
        changes.append(Change(name="standard scaling of y", settings=y_scaling))
    if regression and (p.scaler != "standard" or not y_standard):
        changes.append(Change(name="standard scaling of X and y",
                              settings=(("preprocess.scaler", "standard"), *y_scaling)))
    if evidence.nonfinite_data and p.nonfinite == "keep" and "nonfinite" in config.get("preprocess", {}):
        changes.append(Change(name="drop non-finite rows", settings=(("preprocess.nonfinite", "drop"),)))
        changes.append(Change(name="impute non-finite inputs", settings=(("preprocess.nonfinite", "impute"),),
                              why="X's column mean over finite values; rows with a non-finite y dropped"))
    if loss_class(spec) in SQUARED_LOSSES:
        changes.append(Change(name="Huber instead of " + loss_name(spec), groups=(("loss", "huber"),)))
    if loss_class(spec) in NAIVE_LOG_LOSSES:
        changes.append(Change(name="Keras cross-entropy (from_logits) instead of " + loss_name(spec),
                              groups=(("loss", "crossentropy"),), settings=(("loss.from_logits", True),)))
    if spec.train.precision != "float32":
        changes.append(Change(name="float32 instead of " + spec.train.precision,
                              settings=(("train.precision", "float32"),)))
    if spec.optimizer.keras_class() == "keras.optimizers.SGD":
        changes.append(Change(name="Adam instead of " + spec.optimizer.name, groups=(("optimizer", "adam"),),
                              why="Keras's default Adam (conf/optimizer/adam.yaml, lr 0.001)"))
    if "init_scale" in config.get("model", {}):
        scale = (spec.model.init_scale or 1.0) * INIT_SHRINK  # None: Keras's own, 1
        changes.append(Change(name=f"init_scale={scale:g}", settings=(("model.init_scale", scale),),
                              why=f"initial kernels {1 / INIT_SHRINK:g}x smaller"))
    changes += _activation_changes(spec, config, evidence.activations or model_activations(spec))
    return [c for c in changes if c is not None]


def distance(base: RunSpec, changed: RunSpec) -> float:
    """How far a change moves from the original: one per factor it changes, plus the decades a
    numeric factor moves (lr / 100 is farther than lr / 3)."""
    a, b = base.factors(), changed.factors()
    total = 0.0
    for key in set(a) | set(b):
        if a.get(key) == b.get(key):
            continue
        total += 1.0
        x, y = a.get(key), b.get(key)
        if (isinstance(x, (int, float)) and isinstance(y, (int, float)) and not isinstance(x, bool)
                and not isinstance(y, bool) and x > 0 and y > 0):
            total += abs(math.log10(y / x))
    return total
