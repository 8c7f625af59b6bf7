"""How runs side by side update their weights: each run's Keras optimizer's own ``apply``.

A run alone is updated by its Keras optimizer's ``apply`` (nanbench.engines.fused): weight decay
where the class has one, then the class's ``update_step`` on each variable, with the optimizer's
state (Adam's moments, Nadam's running product, Adagrad's accumulators) in Keras variables. Runs
side by side (nanbench.engines.batched) keep each run's weights and state stacked along a leading
run axis as tensors the training loop carries, and run that same ``apply`` on stand-ins for the
variables (Standin: a tensor Keras's code reads and assigns, and the identity of the variable it
stands for), so that whatever the class, its own code computes the update: no optimizer is
written out here, and a new optimizer is one YAML file naming its class.

Two ways, chosen per class configuration and variable shapes (update_mode):

- STACKED: one ``apply`` for all runs. A value of shape s is stacked as [R, 1.., *s] of rank 3 (a
  bias [R, 1, units], a scalar state such as Nadam's [R, 1, 1]) and the learning rate is
  [R, 1, 1], one per run, so that every element gets the operation it gets alone, on the same
  operands. Right for an update made of correctly rounded elementwise operations (SGD, Adam,
  RMSprop, Nadam, Adamax, Adagrad, AdamW, Lion, Adadelta), not for one that reduces over a
  variable (Lamb's trust ratio), reads its shape (Adafactor's factored moments) or raises a tensor
  to a power (Ftrl: the kernel's vector loop and its scalar tail round a power differently, and a
  stack of runs moves a run's values from one to the other).
- PER_RUN: each run's own ``apply`` on values of its own shapes, in a loop over the runs inside the
  graph (slower: a loop iteration per run and step), for any class whose ``apply`` is Keras's.

update_mode probes which of them gives each run the bits its own optimizer gives it (a step
from random values, compared bit for bit with a Keras optimizer applied to Keras variables in a
traced function, as the fused engine applies it), as nanbench.engines.products probes the
matmuls; None when neither does (or the optimizer is not a plain ``apply``: loss scaling, moving
averages, gradient accumulation), and those runs train one at a time.
"""

from __future__ import annotations

import contextlib
import functools

import keras
import numpy as np
import tensorflow as tf

from nanbench.engines.base import keras_order

STACKED, PER_RUN = "stacked", "per_run"  # how the runs of one call update (update_mode)
RANK = 3  # every stacked value: [R, rows, cols]


class Standin:
    """A Keras variable's stand-in while an optimizer's ``apply`` runs on values: ``value`` is a
    tensor, an assignment makes a new one (the arithmetic of TensorFlow's assign ops: var + x,
    var - x), and ``_unique_id`` is the variable's, the key the optimizer finds its state by."""

    constraint = None

    def __init__(self, variable, value):
        self.value = value
        self._unique_id = variable.value._unique_id  # TensorFlow's optimizer's _var_key
        self.name = variable.name
        self.path = getattr(variable, "path", variable.name)

    @property
    def dtype(self):
        return self.value.dtype

    @property
    def shape(self):
        return self.value.shape

    def __tf_tensor__(self, dtype=None, name=None):
        return tf.convert_to_tensor(self.value, dtype=dtype, name=name)

    def assign(self, value):
        self.value = tf.cast(value, self.value.dtype)
        return self.value

    def assign_add(self, value):
        return self.assign(self.value + tf.cast(value, self.value.dtype))

    def assign_sub(self, value):
        return self.assign(self.value - tf.cast(value, self.value.dtype))

    def __neg__(self):
        return -self.value

    def __abs__(self):
        return abs(self.value)


def _binary(name):
    def op(self, other):
        return getattr(self.value, name)(other.value if isinstance(other, Standin) else other)
    return op


for _name in ("add", "sub", "mul", "truediv", "pow", "floordiv", "mod", "lt", "le", "gt", "ge"):
    setattr(Standin, f"__{_name}__", _binary(f"__{_name}__"))
    if _name not in ("lt", "le", "gt", "ge"):
        setattr(Standin, f"__r{_name}__", _binary(f"__r{_name}__"))


@contextlib.contextmanager
def standing_in(optimizer, standins: dict[int, Standin]):
    """The optimizer's references to its variables (attributes holding a variable, or a list of
    them) pointed at their stand-ins (`standins`, by the variable's id) for the block."""
    saved = {}
    for name, attr in list(vars(optimizer).items()):
        if isinstance(attr, keras.Variable) and id(attr) in standins:
            saved[name] = attr
            object.__setattr__(optimizer, name, standins[id(attr)])
        elif isinstance(attr, (list, tuple)) and any(isinstance(a, keras.Variable) and id(a) in standins
                                                     for a in attr):
            saved[name] = attr
            object.__setattr__(optimizer, name, [standins.get(id(a), a) for a in attr])
    try:
        yield
    finally:
        for name, attr in saved.items():
            object.__setattr__(optimizer, name, attr)


def stacked_shape(shape) -> tuple[int, ...]:
    """A run's value of `shape` in a stack of runs, less the run axis: rank RANK - 1."""
    shape = tuple(shape)
    if len(shape) > RANK - 1:
        raise ValueError(f"a variable of shape {shape}: runs side by side update rank <= {RANK - 1}")
    return (1,) * (RANK - 1 - len(shape)) + shape


def reason_not_plain(optimizer) -> str | None:
    """Why `optimizer`'s ``apply`` is not one an update of values can run (None: it is)."""
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return "loss scaling"
    if optimizer.use_ema or optimizer.gradient_accumulation_steps or optimizer.loss_scale_factor is not None:
        return "a moving average of the weights, gradient accumulation or a loss scale factor"
    if not isinstance(optimizer._learning_rate, keras.Variable):
        return "a learning rate schedule"
    return None


class KerasUpdate:
    """`optimizer`'s own apply on the run-stacked weights and state of R runs (see the module).

    `optimizer` is built on `variables` (one run's trainable variables, whose shapes the runs'
    weights have) and used only through stand-ins: its variables keep their fresh values."""

    def __init__(self, optimizer, variables, mode: str):
        self.opt, self.variables, self.mode = optimizer, list(variables), mode
        optimizer.build(self.variables)
        self.shapes = [tuple(v.shape) for v in self.variables]
        self.state = _state(optimizer)  # per run
        self.state_shapes = [tuple(v.shape) for v in self.state]
        self._fresh = [np.array(v.numpy()).reshape(stacked_shape(v.shape)) for v in self.state]

    def start(self, runs):
        """Every run's fresh optimizer state, stacked."""
        return [tf.tile(tf.constant(v)[None], [runs] + [1] * (RANK - 1)) for v in self._fresh]

    def _apply(self, grads, weights, state, lr, iteration):
        """The optimizer's apply on values (any shapes): the new weights and state."""
        o = self.opt
        standins = {id(v): Standin(v, w) for v, w in zip(self.variables, weights)}
        standins.update({id(v): Standin(v, s) for v, s in zip(self.state, state)})
        standins[id(o._iterations)] = Standin(o._iterations, tf.cast(iteration, o._iterations.dtype))
        standins[id(o._learning_rate)] = Standin(o._learning_rate, tf.cast(lr, o._learning_rate.dtype))
        trainable = [standins[id(v)] for v in self.variables]
        with standing_in(o, standins):
            o.apply(list(grads), trainable)
        return [t.value for t in trainable], [standins[id(v)].value for v in self.state]

    def step(self, grads, weights, state, lr, iteration):
        """One update of R runs: `grads` and `weights` [R, *shape] per variable, `state` as start()
        stacks it, `lr` [R], `iteration` the step (0 first). Returns the new weights and state."""
        shapes = [w.shape[1:] for w in weights]
        if self.mode == STACKED:
            new, new_state = self._apply(
                [_rank3(g) for g in grads], [_rank3(w) for w in weights], state,
                tf.reshape(lr, [-1] + [1] * (RANK - 1)), iteration)
            return [tf.reshape(w, [-1, *s]) for w, s in zip(new, shapes)], new_state

        def one(args):
            g, w, s, r = args
            new, new_state = self._apply(
                [tf.reshape(x, v) for x, v in zip(g, self.shapes)], [tf.reshape(x, v) for x, v in zip(w, self.shapes)],
                [tf.reshape(x, v) for x, v in zip(s, self.state_shapes)], r, iteration)
            return ([tf.reshape(x, y.shape) for x, y in zip(new, w)],
                    [tf.reshape(x, y.shape) for x, y in zip(new_state, s)])

        signature = ([tf.TensorSpec(w.shape[1:], w.dtype) for w in weights],
                     [tf.TensorSpec(s.shape[1:], s.dtype) for s in state])
        return tf.map_fn(one, (list(grads), list(weights), list(state), lr), fn_output_signature=signature)


def _rank3(x):
    return tf.reshape(x, [-1, *stacked_shape(x.shape[1:])])


def _alone(optimizer, variables):
    """`optimizer` (built on the Keras `variables`) applied once in a traced call from given
    weights, state, step and learning rate, as the fused engine applies a run's: the weights and
    state it leaves."""
    state = _state(optimizer)

    def apply(weights, values, iteration, lr, grads):
        for v, w in zip([*variables, *state], [*weights, *values]):
            v.assign(w)
        optimizer._iterations.assign(tf.cast(iteration, optimizer._iterations.dtype))
        optimizer.learning_rate = lr
        optimizer.apply(grads, variables)
        return [tf.identity(v.value) for v in variables], [tf.identity(v.value) for v in state]

    return tf.function(apply, autograph=False)


def _state(optimizer) -> list:
    """The optimizer's state, per run: every variable but the step count and learning rate."""
    return [v for v in optimizer.variables if v is not optimizer._iterations and v is not optimizer._learning_rate]


# Runs the probe stacks: more than a vector register's floats (16 in AVX-512) and a tail, so that
# each variable's values are computed both by a kernel's vector loop and by its scalar tail; an
# elementwise operation that computed one otherwise than the other (a transcendental's vector
# approximation) shows, whatever the number of runs a call later stacks.
PROBE_RUNS = 33


@functools.lru_cache(maxsize=None)
def update_mode(keras_class: str, momentum: float, shapes: tuple[tuple[int, ...], ...], device: str) -> str | None:
    """How runs of this optimizer (``optimizer.class`` and ``optimizer.momentum``: the learning
    rate is each run's) with trainable variables of these shapes update side by side with each
    run's own bits: STACKED, else PER_RUN, else None (they train one at a time). Probed once per
    process: one step of PROBE_RUNS runs from random weights, state, gradients and learning
    rates, side by side against each run's own Keras optimizer (every step runs the same
    operations), every weight and state value compared bit for bit."""
    from nanbench.model import build_optimizer
    from nanbench.spec import ClippingSpec, OptimizerSpec
    make = functools.partial(build_optimizer, OptimizerSpec(lr=1e-3, momentum=momentum, cls=keras_class),
                             ClippingSpec())
    if reason_not_plain(make()) is not None:
        return None
    rng, runs = np.random.default_rng(0), PROBE_RUNS
    with tf.device(device), keras_order():
        try:
            variables = [keras.Variable(np.zeros(s, np.float32)) for s in shapes]
            opt = make()
            opt.build(variables)
            # one step from random weights and a random (positive: accumulators of squares) state
            # at a random step: every operation of any step on values that are not its first's
            weights = [rng.normal(size=(runs, *s)).astype(np.float32) for s in shapes]
            state = [np.abs(rng.normal(size=(runs, *v.shape))).astype(v.dtype) for v in _state(opt)]
            grads = [rng.normal(size=(runs, *s)).astype(np.float32) for s in shapes]
            lr = (10.0 ** rng.uniform(-4, 0, size=runs)).astype(np.float32)
            iteration = tf.constant(int(rng.integers(1, 100)))  # fed at run time, as the engine's is
            alone = _alone(opt, variables)
            own = [alone([w[r] for w in weights], [s[r] for s in state], iteration, lr[r], [g[r] for g in grads])
                   for r in range(runs)]
        except Exception:  # noqa: BLE001 - an optimizer that fails alone: each run alone says how
            return None
        for mode in (STACKED, PER_RUN):
            update = KerasUpdate(make(), [keras.Variable(np.zeros(s, np.float32)) for s in shapes], mode)

            def together(weights, state, iteration, lr, grads, update=update):
                stacked = [tf.reshape(v, [runs, *stacked_shape(shape)]) for v, shape in zip(state, update.state_shapes)]
                new, new_state = update.step(grads, weights, stacked, lr, iteration)
                return new, [tf.reshape(v, [runs, *shape]) for v, shape in zip(new_state, update.state_shapes)]

            try:
                new, new_state = tf.function(together, autograph=False)(weights, state, iteration, lr, grads)
            except Exception:  # noqa: BLE001 - an apply that does not run on values: the next way, or none
                continue
            together_values = [v.numpy() for v in [*new, *new_state]]
            if all(np.array_equal(a, b[r], equal_nan=True)
                   for r in range(runs) for a, b in zip([*own[r][0], *own[r][1]], together_values)):
                return mode
    return None
