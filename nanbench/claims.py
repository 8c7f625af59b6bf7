"""The documents' prose claims, each judged by counts from a sweep that isolates its factor.

Each claim names one factor (a config key), the levels the documents blame or recommend
(``treatment``), the levels they contrast them with (``control``), and whether the treatment is
said to make non-finite runs more common (``raises``: "outliers cause NaN") or less common
(``lowers``: "clipping prevents it"). Its grid is a sweep file ``sweeps/<sweep>.yaml`` in Hydra's
sweeper format (``hydra.sweeper.params``: comma-separated values per key, product over keys).

Runs are grouped into *cells*: runs that agree on every swept key except the factor and
``train.seed``. In each cell every treatment level is compared with the control levels, as the
fraction of runs that ended inf or NaN. A comparison *holds* when the treatment's fraction is
higher (raises) or lower (lowers) than the control's; for ``lowers`` it is only *testable* when the
control has something to prevent (a non-finite run) or the treatment made things worse. Verdict:

- ``supported``: holds in every testable comparison;
- ``supported under conditions``: holds in some and not in others (the conditions are listed);
- ``refuted``: holds in none;
- ``not testable``: no comparison was testable (nothing non-finite to prevent anywhere).

Two op-level probes back the activation claims: Keras's sigmoid, softmax and ReLU applied to
extreme finite inputs, values and gradients checked for inf/NaN.
"""

from __future__ import annotations

import copy
import itertools
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from nanbench.spec import TrackingSpec

ROOT = Path(__file__).resolve().parent.parent
SWEEPS = ROOT / "sweeps"
CONF = ROOT / "conf"
NONFINITE = ("nan", "inf")


@dataclass(frozen=True)
class Claim:
    id: str
    quote: str                 # the documents' wording, shortened
    source: str                # which document and section
    sweep: str                 # sweeps/<sweep>.yaml
    factor: str                # the swept key the claim is about
    control: tuple[str, ...]   # levels without the blamed cause / the recommended remedy
    treatment: tuple[str, ...]  # levels with it
    effect: str                # "raises" or "lowers" the fraction of inf/NaN runs
    probe: str | None = None   # an op-level probe that also bears on the claim


CLAIMS: tuple[Claim, ...] = (
    Claim("outliers", '"Extreme values in the input features or target variables can easily lead to '
          'numerical overflow ... resulting in NaN loss"', "doc000 §1, doc003 §1", "claim_outliers",
          "dataset", ("clean",), ("outliers",), "raises"),
    Claim("scaling", '"Robust scaling techniques like standardization (z-score normalization) or min-max '
          'scaling should be applied" / "is crucial to prevent these issues"', "doc000 §1, doc003 §1",
          "claim_scaling", "preprocess", ("none",), ("standard", "minmax", "robust"), "lowers"),
    Claim("learning_rate", '"A learning rate that\'s too high can contribute to gradient explosion ... '
          'Even with well-scaled data"', "doc000 §2, doc003 §2", "claim_learning_rate",
          "optimizer.lr", ("0.001",), ("1.0", "10.0"), "raises"),
    Claim("clipping", '"implement gradient clipping ... This prevents the weight updates from becoming '
          'excessively large"', "doc000 §2, doc003 §3", "claim_clipping", "clipping", ("none",),
          ("clipnorm", "clipvalue", "global_clipnorm"), "lowers"),
    Claim("adaptive_optimizers", '"Experiment with adaptive learning rate optimizers like Adam or RMSprop" / '
          '"Adam ... is generally more robust than simple gradient descent"', "doc000 §2, doc003 §3",
          "claim_optimizer", "optimizer", ("sgd",), ("adam", "rmsprop"), "lowers"),
    Claim("huber", '"using mean squared error with data containing significant outliers can potentially lead '
          'to NaN values" / Huber "less sensitive to outliers"', "doc003 §3 and example 3", "claim_loss",
          "loss", ("mse",), ("huber",), "lowers"),
    Claim("relu_negative", '"using a ReLU activation in a layer that might receive significantly negative '
          'inputs can cause vanishing gradients or even produce NaN values"', "doc003 §2", "claim_relu",
          "model.activation", ("tanh", "linear"), ("relu",), "raises", probe="relu"),
    Claim("nan_inputs", '"NaNs in the input data will almost certainly propagate through the model, leading '
          'to NaN outputs"', "doc003 §1", "claim_nan_inputs", "dataset.nan_fraction", ("0.0",),
          ("0.01", "0.1"), "raises"),
    Claim("complexity_depth", '"an overly complex model with a large number of layers and neurons can lead '
          'to ... unstable training dynamics, which can manifest as NaN outputs" (layers)', "doc003 §2",
          "claim_complexity", "model.depth", ("1",), ("8",), "raises"),
    Claim("complexity_width", '(same sentence, neurons per layer)', "doc003 §2", "claim_complexity",
          "model.width", ("16",), ("256",), "raises"),
    Claim("dropout", '"Regularization techniques like dropout and weight decay help alleviate this" '
          '(dropout)', "doc003 §2", "claim_regularization", "model.dropout", ("0.0",), ("0.5",), "lowers"),
    Claim("weight_decay", '(same sentence, weight decay)', "doc003 §2", "claim_regularization",
          "model.weight_decay", ("0.0",), ("0.01",), "lowers"),
    Claim("sigmoid_overflow", '"extreme outliers ... can lead to numerical overflow during calculations within '
          'the activation functions (like sigmoid or softmax)"', "doc003 §1", "claim_sigmoid",
          "model.activation", ("tanh", "linear"), ("sigmoid",), "raises", probe="sigmoid_softmax"),
)


# --- sweeps: a Hydra sweep file expanded into override lists ------------------------------------

@dataclass(frozen=True)
class Sweep:
    name: str
    groups: tuple[str, ...]            # fixed group choices from the defaults list ("model=mlp")
    body: dict                         # the file's own values, merged after /config (its _self_)
    params: dict[str, list[str]]       # hydra.sweeper.params, each value list in order

    def runs(self) -> list[dict[str, str]]:
        """Every point of the grid, as {key: value string}, in Hydra's basic-sweeper order."""
        keys = list(self.params)
        return [dict(zip(keys, values)) for values in itertools.product(*(self.params[k] for k in keys))]


def load_sweep(name: str, sweeps_dir: Path = SWEEPS) -> Sweep:
    """Read sweeps/<name>.yaml: defaults [/config, optional `override /group: option`, _self_],
    top-level values, and ``hydra.sweeper.params`` parsed with Hydra's own override grammar."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    raw = OmegaConf.to_container(OmegaConf.load(sweeps_dir / f"{name}.yaml"), resolve=False)
    defaults = raw.pop("defaults", [])
    if not defaults or defaults[0] != "/config":
        raise ValueError(f"sweeps/{name}.yaml: the defaults list must start with /config")
    groups = []
    for entry in defaults[1:]:
        if isinstance(entry, dict):
            for key, option in entry.items():
                groups.append(f"{key.removeprefix('override ').strip().lstrip('/')}={option}")
    params_raw = (raw.pop("hydra", {}) or {}).get("sweeper", {}).get("params", {}) or {}
    parser = OverridesParser.create()
    params: dict[str, list[str]] = {}
    for key, value in params_raw.items():
        override = parser.parse_override(f"{key}={value}")
        params[key] = (list(override.sweep_string_iterator()) if override.is_sweep_override()
                       else [override.get_value_element_as_str()])
    return Sweep(name=name, groups=tuple(groups), body=raw, params=params)


class Composer:
    """Composed configs for many override sets: Hydra composes once per set of group choices, the
    sweep file's body is merged (its ``_self_``), then each run's key=value overrides are applied.
    Same result as composing each run from scratch, at a fraction of the cost."""

    def __init__(self, conf_dir: Path = CONF):
        self.conf_dir = conf_dir
        self.group_names = {p.name for p in conf_dir.iterdir() if p.is_dir()}
        self._cache: dict[tuple, object] = {}

    def is_group(self, key: str) -> bool:
        return key in self.group_names

    def compose(self, sweep: Sweep, point: dict[str, str]):
        from hydra import compose, initialize_config_dir
        from hydra.core.global_hydra import GlobalHydra
        from hydra.core.override_parser.overrides_parser import OverridesParser
        from omegaconf import OmegaConf, open_dict

        groups = tuple(sweep.groups) + tuple(f"{k}={v}" for k, v in point.items() if self.is_group(k))
        if groups not in self._cache:
            GlobalHydra.instance().clear()
            with initialize_config_dir(config_dir=str(self.conf_dir), version_base="1.3"):
                cfg = compose(config_name="config", overrides=list(groups))
            GlobalHydra.instance().clear()
            with open_dict(cfg):
                cfg.pop("hydra", None)
            self._cache[groups] = OmegaConf.merge(cfg, sweep.body)  # struct: unknown keys fail
        cfg = copy.deepcopy(self._cache[groups])
        parser = OverridesParser.create()
        for key, value in point.items():
            if not self.is_group(key):
                OmegaConf.update(cfg, key, parser.parse_override(f"{key}={value}").value(), merge=False)
        return cfg


# --- running ------------------------------------------------------------------------------------

@dataclass
class RunRecord:
    point: dict[str, str]       # the swept values of this run
    outcome: str
    source: str | None          # first_nonfinite_source
    run_id: str | None


def run_sweep(sweep: Sweep, *, tracker=None, tracking_uri: str | None = None, epochs_cap: int | None = None,
              composer: Composer | None = None, claim_ids: tuple[str, ...] = ()) -> list[RunRecord]:
    """Train every run of the sweep in this process (nanbench.run.execute) and log each to MLflow
    in the experiment named after the sweep."""
    from nanbench.run import execute
    from nanbench.spec import from_config

    composer = composer or Composer()
    records = []
    for point in sweep.runs():
        spec = from_config(composer.compose(sweep, point))
        if epochs_cap is not None and spec.train.epochs > epochs_cap:
            spec = spec.replace(train={"epochs": epochs_cap})
        spec = replace(spec, tracking=TrackingSpec(uri=tracking_uri or spec.tracking.uri, experiment=sweep.name))
        start = time.time()
        result = execute(spec)
        if tracker is not None:
            tags = {"sweep": sweep.name, "claims": ",".join(claim_ids),
                    "overrides": " ".join(f"{k}={v}" for k, v in point.items())}
            result.run_id = tracker.log(result, experiment=sweep.name, tags=tags, start_time=start)
        v = result.verdict
        records.append(RunRecord(point=point, outcome=result.outcome,
                                 source=v.first_nonfinite_source if v else None, run_id=result.run_id))
    return records


# --- judging ------------------------------------------------------------------------------------

@dataclass
class Tally:
    runs: int = 0
    outcomes: Counter = field(default_factory=Counter)
    sources: Counter = field(default_factory=Counter)

    @property
    def nonfinite(self) -> int:
        return sum(self.outcomes[o] for o in NONFINITE)

    @property
    def rate(self) -> float:
        return self.nonfinite / self.runs if self.runs else float("nan")

    def add(self, record: RunRecord) -> None:
        self.runs += 1
        self.outcomes[record.outcome] += 1
        if record.source and record.outcome in NONFINITE:
            self.sources[record.source] += 1

    def __str__(self) -> str:
        return f"{self.nonfinite}/{self.runs}"


@dataclass
class Comparison:
    cell: tuple[tuple[str, str], ...]    # the other swept keys' values
    level: str                           # the treatment level compared with the control
    control: Tally
    treatment: Tally
    status: str                          # holds | does not hold | reversed | untestable


@dataclass
class Judged:
    claim: Claim
    sweep: Sweep
    records: list[RunRecord]
    cells: dict[tuple, dict[str, Tally]]   # cell -> level -> tally
    comparisons: list[Comparison]
    verdict: str
    conditions: str
    probe: list[dict] | None = None

    def totals(self, levels: tuple[str, ...]) -> Tally:
        out = Tally()
        for r in self.records:
            if r.point[self.claim.factor] in levels:
                out.add(r)
        return out


def _compare(effect: str, control: Tally, treatment: Tally) -> str:
    c, t = control.rate, treatment.rate
    if effect == "raises":
        return "holds" if t > c else ("reversed" if t < c else "does not hold")
    if control.nonfinite == 0 and treatment.nonfinite == 0:
        return "untestable"  # nothing to prevent
    return "holds" if t < c else ("reversed" if t > c else "does not hold")


def _cell_text(cell) -> str:
    return ", ".join(f"{k}={v}" for k, v in cell) or "all runs"


def _conditions(claim: Claim, comparisons: list[Comparison], keys: list[str]) -> str:
    """Where the claim holds and where not, per swept key, from the testable comparisons."""
    testable = [c for c in comparisons if c.status != "untestable"]
    if not testable:
        return "nothing non-finite to prevent in any cell"
    parts = []
    if len(claim.treatment) > 1:
        keys = [claim.factor, *keys]
    for key in keys:
        values: dict[str, list[int]] = {}
        for c in testable:
            value = c.level if key == claim.factor else dict(c.cell)[key]
            counts = values.setdefault(value, [0, 0])
            counts[0] += c.status == "holds"
            counts[1] += 1
        if len(values) > 1 and len({h / n for h, n in values.values()}) > 1:  # the key matters
            parts.append(f"{key}: " + ", ".join(f"{v} {h}/{n}" for v, (h, n) in values.items()))
    held = sum(c.status == "holds" for c in testable)
    reversed_ = sum(c.status == "reversed" for c in testable)
    head = f"holds in {held}/{len(testable)} testable comparisons"
    if reversed_:
        head += f", reversed in {reversed_}"
    untestable = len(comparisons) - len(testable)
    if untestable:
        head += f" ({untestable} cells had no inf/NaN to prevent)"
    return head + ("; by " + "; ".join(parts) if parts else "")


def judge(claim: Claim, sweep: Sweep, records: list[RunRecord]) -> Judged:
    keys = [k for k in sweep.params if k not in (claim.factor, "train.seed")]
    cells: dict[tuple, dict[str, Tally]] = {}
    for r in records:
        cell = tuple((k, r.point[k]) for k in keys)
        cells.setdefault(cell, {}).setdefault(r.point[claim.factor], Tally()).add(r)
    comparisons = []
    for cell, levels in cells.items():
        control = Tally()
        for level in claim.control:
            for r in records:
                if r.point[claim.factor] == level and tuple((k, r.point[k]) for k in keys) == cell:
                    control.add(r)
        for level in claim.treatment:
            if level in levels and control.runs:
                comparisons.append(Comparison(cell, level, control, levels[level],
                                              _compare(claim.effect, control, levels[level])))
    testable = [c for c in comparisons if c.status != "untestable"]
    held = sum(c.status == "holds" for c in testable)
    if not testable:
        verdict = "not testable"
    elif held == len(testable):
        verdict = "supported"
    elif held == 0:
        verdict = "refuted"
    else:
        verdict = "supported under conditions"
    return Judged(claim=claim, sweep=sweep, records=records, cells=cells, comparisons=comparisons,
                  verdict=verdict, conditions=_conditions(claim, comparisons, keys))


# --- op-level probes ------------------------------------------------------------------------------

EXTREME = (-1e38, -1e4, -100.0, 0.0, 100.0, 1e4, 1e38)


def activation_probe(which: str) -> list[dict]:
    """Keras's activations on extreme finite float32 inputs: are values and gradients finite?

    The gradient is of sum(w * f(x)) with w = 1..n (a plain sum of softmax is constant). A
    hand-written softmax, exp(x) / sum(exp(x)), is probed beside Keras's to show what overflow is.
    """
    import keras
    import tensorflow as tf

    x = tf.constant([EXTREME], dtype=tf.float32)
    w = tf.range(1, len(EXTREME) + 1, dtype=tf.float32)
    fns = {"relu": {"keras.activations.relu": keras.activations.relu},
           "sigmoid_softmax": {"keras.activations.sigmoid": keras.activations.sigmoid,
                               "keras.activations.softmax": keras.activations.softmax,
                               "exp(x) / sum(exp(x)) (hand-written)":
                                   lambda v: tf.exp(v) / tf.reduce_sum(tf.exp(v), axis=-1, keepdims=True)}}[which]
    rows = []
    for name, fn in fns.items():
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = fn(x)
            s = tf.reduce_sum(w * y)
        g = tape.gradient(s, x)
        rows.append({"function": name, "inputs": "[" + ", ".join(f"{v:g}" for v in EXTREME) + "]",
                     "values_finite": bool(np.all(np.isfinite(y.numpy()))),
                     "gradients_finite": bool(np.all(np.isfinite(g.numpy()))),
                     "values": "[" + ", ".join(f"{v:.3g}" for v in y.numpy().ravel()) + "]"})
    return rows


# --- all claims -------------------------------------------------------------------------------------

def run_claims(*, tracking_uri: str, epochs_cap: int | None = None, claims: tuple[Claim, ...] = CLAIMS,
               sweeps_dir: Path = SWEEPS) -> list[Judged]:
    """Run each sweep the claims name once (in-process, fused engine), then judge every claim."""
    from nanbench.run import configure_tensorflow
    from nanbench.tracking import Tracker

    configure_tensorflow()
    tracker = Tracker(TrackingSpec(uri=tracking_uri))
    composer = Composer()
    by_sweep: dict[str, tuple[Sweep, list[RunRecord]]] = {}
    for claim in claims:
        if claim.sweep not in by_sweep:
            sweep = load_sweep(claim.sweep, sweeps_dir)
            ids = tuple(c.id for c in claims if c.sweep == claim.sweep)
            by_sweep[claim.sweep] = (sweep, run_sweep(sweep, tracker=tracker, tracking_uri=tracking_uri,
                                                      epochs_cap=epochs_cap, composer=composer, claim_ids=ids))
    judged = []
    for claim in claims:
        sweep, records = by_sweep[claim.sweep]
        j = judge(claim, sweep, records)
        if claim.probe:
            j.probe = activation_probe(claim.probe)
        judged.append(j)
    return judged
