"""The documents' prose claims, each judged by counts from a sweep that isolates its factor.

Each claim names one factor (a config key), the levels the documents blame or recommend
(``treatment``), the levels they contrast them with (``control``), and whether the treatment is
said to make non-finite runs more common (``raises``: "outliers cause NaN") or less common
(``lowers``: "clipping prevents it"). Levels the sweep holds that the documents do not name are
``beside``: judged against the same controls and reported next to the verdict, never pooled
into it (RobustScaler beside standardization and min-max). Its grid is a sweep file
``sweeps/<sweep>.yaml`` in Hydra's sweeper format (``hydra.sweeper.params``: comma-separated
values per key, product over keys; ``sweep.inner``: looped inside each job).

Every claim sweep (tests/test_claims.py checks them):

- holds only the conditions the claim is about (no NaN-input data for clipping);
- repeats each configuration over at least 3 seeds (``train.seed``), so that a cell's rate has
  an interval;
- gives every dataset the same optimizer steps (``train.steps``, :data:`STEPS` = 20 epochs of the
  256-row sets) and spans each configuration's stable -> unstable transition in learning rate
  (decades from 1e-8, where plain SGD is stable even on the unscaled data);
- for a remedy (``lowers``), trains every run at two budgets, 1x and 4x the steps
  (``train.steps: [160, 640]``), so that it can tell a remedy that *prevents* the non-finite run
  (still finite at 4x) from one that only *postpones* it (finite at 1x, non-finite at 4x).

Runs are grouped into *cells*: runs that agree on every swept key except the factor, the seed
and the budget. In each cell every treatment level is compared with every control level, as the
fraction of runs that ended inf or NaN over the seeds; the comparison's difference, its 95%
interval, its status and the claim's verdict are nanbench.studies.verdicts' (supported, supported under
conditions, no effect, refuted, not testable), once per budget. Finite runs whose every ReLU unit
is dead are set aside and counted (a constant-output network is no healthy control).

Op-level probes back three claims: Keras's sigmoid, softmax and ReLU applied to extreme finite
inputs (values and gradients checked for inf/NaN), and what Keras's clipping arguments do to one
real gradient (doc003 example 2 says clipnorm=1.0 "limits the norm of the gradients to 1.0").
"""

from __future__ import annotations

import functools
import itertools
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from nanbench.studies import verdicts
from nanbench.vocab import NONFINITE_OUTCOMES as NONFINITE
from nanbench.spec import TrackingSpec

from nanbench.config import CONF_DIR as CONF, ROOT, SWEEPS_DIR as SWEEPS
STEPS = 160                      # the 1x budget: 20 epochs of the 256-row sets in batches of 32
BUDGETS = (STEPS, 4 * STEPS)     # a remedy's two budgets: 1x and 4x
MIN_SEEDS = 3                    # every claim sweep repeats each configuration over this many seeds
SEED = "train.seed"
BUDGET = "train.steps"
REPEATS = (SEED, BUDGET)         # swept keys that are not conditions: repeats and the budget


@dataclass(frozen=True)
class Claim:
    id: str
    quote: str                 # the documents' wording, shortened
    source: str                # which document and section
    sweep: str                 # sweeps/<sweep>.yaml
    factor: str                # the swept key the claim is about
    control: tuple[str, ...]   # levels without the blamed cause / the recommended remedy
    treatment: tuple[str, ...]  # levels with it, as the documents name them
    effect: str                # "raises" or "lowers" the fraction of inf/NaN runs
    probe: str | None = None   # an op-level probe that also bears on the claim
    beside: tuple[str, ...] = ()  # other levels of the factor: judged apart, not pooled into the verdict
    note: str = ""             # why the levels are what they are, when that needs saying


CLAIMS: tuple[Claim, ...] = (
    Claim("outliers", '"Extreme values in the input features or target variables can easily lead to '
          'numerical overflow ... resulting in NaN loss"', "doc000 §1, doc003 §1", "claim_outliers",
          "dataset", ("clean",), ("outliers",), "raises"),
    Claim("scaling", '"Robust scaling techniques like standardization (z-score normalization) or min-max '
          'scaling should be applied" / "is crucial to prevent these issues"', "doc000 §1, doc003 §1",
          "claim_scaling", "preprocess", ("none",), ("standard", "minmax"), "lowers", beside=("robust",),
          note="the documents name standardization and min-max scaling; RobustScaler is reported beside"),
    Claim("learning_rate", '"A learning rate that\'s too high can contribute to gradient explosion ... '
          'Even with well-scaled data"', "doc000 §2, doc003 §2", "claim_learning_rate",
          "optimizer.lr", ("0.001",), ("1.0", "10.0"), "raises", beside=("0.01", "0.1")),
    Claim("clipping", '"implement gradient clipping ... This prevents the weight updates from becoming '
          'excessively large"', "doc000 §2, doc003 §3", "claim_clipping", "clipping", ("none",),
          ("clipnorm",), "lowers", probe="clipping", beside=("global_clipnorm", "clipvalue"),
          note="both documents' code clips with clipnorm; global_clipnorm and clipvalue are reported beside"),
    Claim("adaptive_optimizers", '"Experiment with adaptive learning rate optimizers like Adam or RMSprop" / '
          '"Adam ... is generally more robust than simple gradient descent"', "doc000 §2, doc003 §3",
          "claim_optimizer", "optimizer", ("sgd",), ("adam", "rmsprop"), "lowers"),
    Claim("huber", '"using mean squared error with data containing significant outliers can potentially lead '
          'to NaN values" / Huber "less sensitive to outliers"', "doc003 §3 and example 3", "claim_loss",
          "loss", ("mse",), ("huber",), "lowers", beside=("mae",)),
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


# --- sweeps: a sweep file expanded as `make sweep` expands it ---------------------------------

@dataclass(frozen=True)
class Sweep:
    """A sweep file's grid: Hydra jobs (``hydra.sweeper.params``) x inner runs (``sweep.inner``)."""

    name: str
    jobs: tuple[tuple[str, ...], ...]   # each job's overrides, "key=value", in the basic sweeper's order
    sweeps_dir: Path = SWEEPS

    def compose(self, job: tuple[str, ...]):
        """The job's config, composed as `python -m nanbench -m --config-dir sweeps` composes it."""
        from hydra import compose, initialize_config_dir
        from hydra.core.global_hydra import GlobalHydra

        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(self.sweeps_dir), version_base="1.3"):
            cfg = compose(config_name=self.name, overrides=[f"hydra.searchpath=[file://{CONF}]", *job])
        GlobalHydra.instance().clear()
        return cfg

    def points(self) -> list[dict[str, str]]:
        """The swept values of every run, in run order, composing only the first job (for the inner
        grid, which sweep files set once for all jobs)."""
        from nanbench.sweep import inner_grid

        combos = inner_grid(self.compose(self.jobs[0])) if self.jobs else []
        return [{**dict(o.split("=", 1) for o in job), **{k: str(v) for k, v in combo.items()}}
                for job in self.jobs for combo in combos]

    def runs(self) -> list[tuple[dict[str, str], dict]]:
        """Every run: its swept values as strings ({key: value}), and its plain config dict."""
        from nanbench.sweep import expand, inner_grid

        out = []
        for job in self.jobs:
            cfg = self.compose(job)
            point = dict(o.split("=", 1) for o in job)
            for combo, run in zip(inner_grid(cfg), expand(cfg)):
                out.append(({**point, **{k: str(v) for k, v in combo.items()}}, run))
        return out


def load_sweep(name: str, sweeps_dir: Path = SWEEPS) -> Sweep:
    """The jobs of sweeps/<name>.yaml, expanded by Hydra's override grammar in the basic sweeper's
    order (the product of ``hydra.sweeper.params``, first key outermost)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(sweeps_dir), version_base="1.3"):
        cfg = compose(config_name=name, overrides=[f"hydra.searchpath=[file://{CONF}]"],
                      return_hydra_config=True)
    GlobalHydra.instance().clear()
    params = [f"{k}={v}" for k, v in (cfg.hydra.sweeper.params or {}).items()]
    axes = [[f"{o.get_key_element()}={v}" for v in o.sweep_string_iterator()] if o.is_sweep_override()
            else [f"{o.get_key_element()}={o.get_value_element_as_str()}"]
            for o in OverridesParser.create().parse_overrides(params)]
    return Sweep(name=name, jobs=tuple(itertools.product(*axes)), sweeps_dir=sweeps_dir)


# --- running ------------------------------------------------------------------------------------

@dataclass
class RunRecord:
    point: dict[str, str]       # the swept values of this run, as strings
    outcome: str
    source: str | None          # first_nonfinite_source
    run_id: str | None
    steps: int | None = None    # the run's budget (train.steps; None when it trained by epochs)
    first_nonfinite_step: int | None = None
    dead_fraction: float | None = None   # ReLU units dead at the end (None: no ReLU, or non-finite)

    @property
    def nonfinite(self) -> bool:
        return self.outcome in NONFINITE

    @property
    def dead(self) -> bool:
        """A finite network whose every ReLU unit outputs 0 on every row (nanbench.studies.verdicts.DEAD)."""
        return not self.nonfinite and verdicts.is_dead(self.dead_fraction)


def capped_spec(spec, epochs_cap: int | None):
    """The spec with at most `epochs_cap` epochs (shortened runs, for tests): a run set by
    ``train.steps`` is capped by epochs as well, its steps cleared."""
    if epochs_cap is None:
        return spec
    epochs = spec.train.epochs_for(spec.dataset.n_samples or 1)
    if epochs <= epochs_cap:
        return spec
    return spec.replace(train={"epochs": epochs_cap, "steps": None})


def run_sweep(sweep: Sweep, *, tracker=None, tracking_uri: str | None = None, epochs_cap: int | None = None,
              claim_ids: tuple[str, ...] = ()) -> list[RunRecord]:
    """Train every run of the sweep in this process (nanbench.run.execute) and log each to MLflow
    in the experiment named after the sweep."""
    from nanbench.run import execute
    from nanbench.spec import from_config

    records = []
    for point, run in sweep.runs():
        nominal = from_config(run)
        spec = capped_spec(nominal, epochs_cap)
        spec = replace(spec, tracking=TrackingSpec(uri=tracking_uri or spec.tracking.uri, experiment=sweep.name))
        start = time.time()
        result = execute(spec)
        if tracker is not None:
            tags = {"sweep": sweep.name, "claims": ",".join(claim_ids),
                    "overrides": " ".join(f"{k}={v}" for k, v in point.items())}
            result.run_id = tracker.log(result, experiment=sweep.name, tags=tags, start_time=start)
        v = result.verdict
        records.append(RunRecord(point=point, outcome=result.outcome,
                                 source=v.first_nonfinite_source if v else None, run_id=result.run_id,
                                 steps=nominal.train.steps, first_nonfinite_step=v.first_nonfinite_step if v else None,
                                 dead_fraction=result.dead_fraction))
    return records


# --- judging ------------------------------------------------------------------------------------

@dataclass
class Tally:
    runs: int = 0
    outcomes: Counter = field(default_factory=Counter)
    sources: Counter = field(default_factory=Counter)
    dead: int = 0               # finite runs with every ReLU unit dead (set aside from the rate)

    @property
    def nonfinite(self) -> int:
        return sum(self.outcomes[o] for o in NONFINITE)

    @property
    def rate(self) -> verdicts.Rate:
        """Non-finite runs out of the usable ones: the dead networks set aside."""
        return verdicts.Rate(self.nonfinite, self.runs - self.dead, self.dead)

    def add(self, record: RunRecord) -> None:
        self.runs += 1
        self.outcomes[record.outcome] += 1
        self.dead += record.dead
        if record.source and record.outcome in NONFINITE:
            self.sources[record.source] += 1

    def __str__(self) -> str:
        return str(self.rate)


@dataclass
class Budget:
    """A claim judged on the runs of one budget."""

    steps: int | None
    cells: dict[tuple, dict[str, Tally]]   # cell -> level -> tally
    decision: verdicts.Decision             # the named treatment levels against the controls
    beside: dict[str, verdicts.Decision]    # each other level against the controls, apart

    @property
    def verdict(self) -> str:
        return self.decision.verdict

    @property
    def label(self) -> str:
        return f"{self.steps} steps" if self.steps is not None else "as configured"


@dataclass
class Judged:
    claim: Claim
    sweep: Sweep
    records: list[RunRecord]
    budgets: list[Budget]                  # in order of steps: 1x first
    remedy: dict[str, int] | None = None   # lowers at two budgets: prevents / postpones / does not prevent
    probe: list[dict] | None = None

    @property
    def final(self) -> Budget:
        """The longest budget: a remedy's headline verdict is whether it still holds at 4x."""
        return self.budgets[-1]

    @property
    def verdict(self) -> str:
        return self.final.verdict

    @property
    def conditions(self) -> str:
        return self.final.decision.text()

    @property
    def answer(self) -> str | None:
        """prevents / postpones (a remedy judged at two budgets), else None."""
        return verdicts.budget_answer(self.remedy) if self.remedy is not None else None

    def totals(self, levels: tuple[str, ...], steps: int | None = ...) -> Tally:
        steps = self.final.steps if steps is ... else steps
        out = Tally()
        for r in self.records:
            if r.point[self.claim.factor] in levels and r.steps == steps:
                out.add(r)
        return out

    @property
    def dead(self) -> dict[str, int]:
        """Finite dead networks set aside, per role."""
        out = {"control": 0, "treatment": 0, "beside": 0}
        for r in self.records:
            role = level_role(self.claim, r.point[self.claim.factor])
            if role in out:
                out[role] += r.dead
        return out


def level_role(claim: Claim, level: str) -> str:
    if level in claim.control:
        return "control"
    if level in claim.treatment:
        return "treatment"
    return "beside" if level in claim.beside else "other"


def cell_keys(claim: Claim, records: list[RunRecord]) -> list[str]:
    """The conditions: every other swept key that takes more than one value (seeds are repeats,
    the budget is judged apart)."""
    return [k for k in (records[0].point if records else {}) if k not in (claim.factor, *REPEATS)
            and len({r.point[k] for r in records}) > 1]


def _comparisons(claim: Claim, cells, levels: tuple[str, ...]) -> list[verdicts.Comparison]:
    out = []
    for cell, tallies in cells.items():
        for t in levels:
            for c in claim.control:
                if t in tallies and c in tallies:
                    conditions = cell + ((("treatment", t),) if len(levels) > 1 else ()) \
                        + ((("control", c),) if len(claim.control) > 1 else ())
                    out.append(verdicts.Comparison(conditions, tallies[c].rate, tallies[t].rate, claim.effect))
    return out


def remedy_outcomes(claim: Claim, records: list[RunRecord], keys: list[str]) -> dict[str, int] | None:
    """For a remedy trained at two budgets: each treatment run (cell, level, seed) in a cell where
    a control run went non-finite at the long budget, classified by verdicts.budget_outcome."""
    steps = sorted({r.steps for r in records if r.steps is not None})
    if claim.effect != "lowers" or len(steps) < 2:
        return None
    short, long = steps[0], steps[-1]
    runs = {}
    for r in records:
        runs[(tuple(r.point[k] for k in keys), r.point[claim.factor], r.point.get(SEED), r.steps)] = r
    to_prevent = {cell for (cell, level, _, s), r in runs.items()
                  if s == long and level in claim.control and r.nonfinite}
    counts: Counter = Counter()
    for (cell, level, seed, s), r in runs.items():
        if s != long or level not in claim.treatment or cell not in to_prevent:
            continue
        first = runs.get((cell, level, seed, short))
        if first is None or r.dead or first.dead:
            counts["set aside (a dead network)"] += 1
            continue
        counts[verdicts.budget_outcome(first.nonfinite, r.nonfinite)] += 1
    return dict(counts)


def judge(claim: Claim, sweep: Sweep, records: list[RunRecord]) -> Judged:
    """Compare, in every cell and at every budget, each treatment level (and apart, each level
    beside) with each control level; then the verdict per budget (nanbench.studies.verdicts)."""
    keys = cell_keys(claim, records)
    budgets = []
    for steps in sorted({r.steps for r in records}, key=lambda s: (s is None, s)):
        cells: dict[tuple, dict[str, Tally]] = {}
        for r in records:
            if r.steps == steps:
                cell = tuple((k, r.point[k]) for k in keys)
                cells.setdefault(cell, {}).setdefault(r.point[claim.factor], Tally()).add(r)
        decision = verdicts.decide(claim.effect, _comparisons(claim, cells, claim.treatment))
        beside = {b: verdicts.decide(claim.effect, _comparisons(claim, cells, (b,))) for b in claim.beside
                  if any(b in t for t in cells.values())}
        budgets.append(Budget(steps=steps, cells=cells, decision=decision, beside=beside))
    if not budgets:
        budgets = [Budget(None, {}, verdicts.decide(claim.effect, []), {})]
    return Judged(claim=claim, sweep=sweep, records=records, budgets=budgets,
                  remedy=remedy_outcomes(claim, records, keys))


# --- op-level probes ------------------------------------------------------------------------------

EXTREME = (-1e38, -1e4, -100.0, 0.0, 100.0, 1e4, 1e38)


@functools.lru_cache(maxsize=None)  # deterministic; computed once per process
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


@functools.lru_cache(maxsize=None)  # deterministic; computed once per process
def clipping_probe() -> list[dict]:
    """Keras's clipping arguments on one real gradient: doc003 example 2's model (Dense(64, relu),
    Dense(1): four variables) at its seeded initial weights, on the first batch of its stand-in
    data with y x 100 so that the gradient exceeds 1. One SGD step at learning rate 1.0 moves each
    variable by exactly its (clipped) gradient, so the update's norms are the clipped gradient's."""
    import keras
    import tensorflow as tf

    from nanbench.studies.examples import SEED, make_data

    X, y = make_data("clean10")
    X, y = X[:32], y[:32] * 100.0
    rows = []
    for kind in ("none", "clipnorm", "global_clipnorm", "clipvalue"):
        keras.utils.set_random_seed(SEED)
        model = keras.Sequential([keras.Input(shape=(10,)), keras.layers.Dense(64, activation="relu"),
                                  keras.layers.Dense(1)])
        clip = {} if kind == "none" else {kind: 1.0}
        optimizer = keras.optimizers.SGD(learning_rate=1.0, **clip)
        before = [np.array(w.numpy(), dtype=np.float64) for w in model.trainable_weights]
        with tf.GradientTape() as tape:  # eagerly: the same clipping code as in fit, no tracing
            loss = keras.losses.MeanSquaredError()(y, model(X, training=True))
        optimizer.apply(tape.gradient(loss, model.trainable_weights), model.trainable_weights)
        steps = [b - np.array(w.numpy(), dtype=np.float64) for b, w in zip(before, model.trainable_weights)]
        per = [float(np.linalg.norm(u)) for u in steps]
        rows.append({"clipping": "none" if kind == "none" else f"{kind}=1.0",
                     "per-variable gradient norms": "[" + ", ".join(f"{v:.3g}" for v in per) + "]",
                     "joint gradient norm": f"{float(np.sqrt(sum(v * v for v in per))):.3g}"})
    return rows


PROBES = {"relu": lambda: activation_probe("relu"),
          "sigmoid_softmax": lambda: activation_probe("sigmoid_softmax"),
          "clipping": clipping_probe}


# --- all claims -------------------------------------------------------------------------------------

def run_claims(*, tracking_uri: str, epochs_cap: int | None = None, claims: tuple[Claim, ...] = CLAIMS,
               sweeps_dir: Path = SWEEPS) -> list[Judged]:
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
