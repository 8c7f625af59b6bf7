"""Model, optimizer and loss: Keras's own objects, built from the run specification.

Initial weights are drawn by Keras initializers with integer seeds derived from ``train.seed``
(Keras makes an initializer with an integer seed return the same values on every call), so two
engines, or two builds of the same structure, start from identical weights.
"""

from __future__ import annotations

import inspect

import keras
import numpy as np

from nanbench.spec import USER_MODELS, ClippingSpec, LossSpec, ModelSpec, OptimizerSpec

# Keras dtype policy per precision; mixed_float16 also needs loss scaling (see build_optimizer).
POLICIES = {"float32": "float32", "mixed_float16": "mixed_float16", "mixed_bfloat16": "mixed_bfloat16"}


class Scaled(keras.initializers.Initializer):
    """Another initializer's values times `scale` (model.init_scale: a too large or too small start)."""

    def __init__(self, base: keras.initializers.Initializer, scale: float):
        self.base, self.scale = base, scale

    def __call__(self, shape, dtype=None):
        return self.base(shape, dtype=dtype) * self.scale


class Probability(keras.layers.Layer):
    """A sigmoid (one unit) or softmax (several) computed by hand in keras.ops on the output
    Dense layer's logits (model.probability), so the loss sees probabilities only, as a user's
    Lambda layer gives it: Keras's own activation keeps the logits on its output (_keras_logits) and
    Keras 3's cross-entropy takes the loss from them. ``stable``: sigmoid as 1 / (1 + exp(-z)) for
    z >= 0 and exp(z) / (1 + exp(z)) below (no exp overflows), softmax of z - max(z); ``naive``:
    1 / (1 + exp(-z)) and exp(z) / sum(exp(z)), which overflow for large |z| (inf / inf = NaN)."""

    def __init__(self, form: str, **kwargs):
        super().__init__(**kwargs)
        self.form = form

    def call(self, z):
        if z.shape[-1] == 1:
            if self.form == "naive":
                return 1.0 / (1.0 + keras.ops.exp(-z))
            e = keras.ops.exp(-keras.ops.abs(z))  # in (0, 1]: never overflows
            return keras.ops.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
        if self.form == "stable":
            z = z - keras.ops.max(z, axis=-1, keepdims=True)
        e = keras.ops.exp(z)
        return e / keras.ops.sum(e, axis=-1, keepdims=True)

    def get_config(self) -> dict:
        return {**super().get_config(), "form": self.form}


def _kernel_init(seed: int, layer_index: int, scale: float | None = None) -> keras.initializers.Initializer:
    # Keras's Dense default initializer, made reproducible per (run seed, layer); times model.init_scale
    base = keras.initializers.GlorotUniform(seed=seed * 1009 + layer_index)
    return base if scale is None else Scaled(base, scale)


def _dropout_seed(seed: int, layer_index: int) -> int:
    # Dropout layers' seeds, and the recurrent layers' (for their dropout options, unused today)
    return seed * 1009 + 500 + layer_index


def _recurrent_init(seed: int, layer_index: int) -> keras.initializers.Initializer:
    # Keras's LSTM / GRU default for the recurrent kernel, seeded apart from the input kernel
    return keras.initializers.Orthogonal(seed=seed * 1009 + 700 + layer_index)


def _embedding_init(seed: int, layer_index: int) -> keras.initializers.Initializer:
    # Keras's Embedding default ("uniform"), seeded
    return keras.initializers.RandomUniform(-0.05, 0.05, seed=seed * 1009 + 800 + layer_index)


RECURRENT = {"lstm": keras.layers.LSTM, "gru": keras.layers.GRU}


def _sequence_layers(spec: ModelSpec, seed: int, policy: str) -> list[keras.layers.Layer]:
    """The layers between the flat input and the output of lstm, gru and embedding: the flat
    [n, steps * features] rows (nanbench.data keeps X 2-D) reshaped to [n, steps, features] and
    read by one recurrent layer; or token ids embedded (``units`` per token) and averaged over steps."""
    steps, features = spec.seq_shape
    if spec.name == "embedding":
        return [keras.layers.Embedding(spec.vocab, spec.units, embeddings_initializer=_embedding_init(seed, 0),
                                       dtype=policy, name="embedding0"),
                keras.layers.GlobalAveragePooling1D(dtype=policy, name="pool")]
    return [keras.layers.Reshape((steps, features), dtype=policy, name="steps"),
            RECURRENT[spec.name](spec.units, kernel_initializer=_kernel_init(seed, 0, spec.init_scale),
                                 recurrent_initializer=_recurrent_init(seed, 0), seed=_dropout_seed(seed, 0),
                                 dtype=policy, name=f"{spec.name}0")]


def build_model(spec: ModelSpec, n_features: int, *, seed: int, precision: str = "float32",
                cls: type[keras.Sequential] = keras.Sequential) -> keras.Sequential:
    """A Sequential model: hidden Dense layers for an MLP (each followed by BatchNormalization in
    mlp_batchnorm), or a sequence model's layers, then the output Dense layer: ``outputs`` units
    with ``output_activation`` (1 linear unit for regression; the spec derives both from the
    dataset's task and the loss's from_logits), or ``final_activation`` where it is set.

    The output layer stays float32 under mixed precision, as Keras's mixed-precision guide advises.
    A user's model (model=keras, model=builder) is loaded or built by nanbench.user_model instead,
    in the state a run with `seed` starts from (`cls` does not apply: see engines.fit.forensic).
    """
    if spec.name in USER_MODELS:
        from nanbench import user_model
        return user_model.build(spec, n_features, task=spec.task, classes=spec.outputs if spec.task == "multiclass"
                                else None, seed=seed, precision=precision)
    policy = POLICIES[precision]
    regularizer = keras.regularizers.L2(spec.weight_decay) if spec.weight_decay > 0 else None
    layers: list[keras.layers.Layer] = [keras.Input(shape=(n_features,))]
    if spec.name in ("lstm", "gru", "embedding"):
        layers += _sequence_layers(spec, seed, policy)
    for i in range(spec.depth if spec.name in ("mlp", "mlp_batchnorm") else 0):
        layers.append(keras.layers.Dense(spec.width, activation=spec.activation, dtype=policy,
                                         kernel_initializer=_kernel_init(seed, i, spec.init_scale),
                                         kernel_regularizer=regularizer, name=f"hidden{i}"))
        if spec.name == "mlp_batchnorm":  # between this Dense layer and the next (or the output)
            layers.append(keras.layers.BatchNormalization(dtype=policy, name=f"batchnorm{i}"))
        if spec.dropout > 0:
            layers.append(keras.layers.Dropout(spec.dropout, seed=_dropout_seed(seed, i),
                                               name=f"dropout{i}"))
    by_hand = spec.probability != "keras"  # model.probability: the output's logits, then Probability
    layers.append(keras.layers.Dense(spec.outputs, activation="linear" if by_hand else
                                     spec.final_activation or spec.output_activation, dtype="float32",
                                     name="output", kernel_initializer=_kernel_init(seed, 999, spec.init_scale),
                                     kernel_regularizer=regularizer))
    if by_hand:
        layers.append(Probability(spec.probability, dtype="float32", name="probability"))
    return cls(layers, name=spec.name)


def _assign(variable, value) -> None:
    variable.assign(keras.ops.convert_to_tensor(value, dtype=variable.dtype))


def reset_model(model: keras.Model, seed: int) -> None:
    """Put a built model in the state `build_model(..., seed=seed)` starts from: the same initial
    weights, BatchNormalization's statistics and dropout seeds, without rebuilding (or touching
    TensorFlow's global seed, which would make every traced function re-instantiate its graph).
    A user's model: nanbench.user_model.reset (its saved weights, or its initializers drawn again)."""
    if getattr(model, "_nanbench_user_spec", None) is not None:
        from nanbench import user_model
        user_model.reset(model, model._nanbench_user_spec, seed)
        return
    for layer in model.layers:
        if isinstance(layer, keras.layers.Dense):
            index = 999 if layer.name == "output" else int(layer.name.removeprefix("hidden"))
            scale = getattr(layer.kernel_initializer, "scale", None)  # model.init_scale, as built
            layer.kernel.assign(_kernel_init(seed, index, scale)(layer.kernel.shape, dtype=layer.kernel.dtype))
            layer.bias.assign(keras.ops.zeros(layer.bias.shape, dtype=layer.bias.dtype))
        elif isinstance(layer, keras.layers.BatchNormalization):  # Keras's initial values
            for variable, value in ((layer.gamma, 1.0), (layer.beta, 0.0), (layer.moving_mean, 0.0),
                                    (layer.moving_variance, 1.0)):
                _assign(variable, np.full(variable.shape, value))
        elif isinstance(layer, (keras.layers.LSTM, keras.layers.GRU)):
            cell = layer.cell
            scale = getattr(cell.kernel_initializer, "scale", None)
            cell.kernel.assign(_kernel_init(seed, 0, scale)(cell.kernel.shape, dtype=cell.kernel.dtype))
            cell.recurrent_kernel.assign(_recurrent_init(seed, 0)(cell.recurrent_kernel.shape,
                                                                  dtype=cell.recurrent_kernel.dtype))
            bias = np.zeros(cell.bias.shape)
            if isinstance(layer, keras.layers.LSTM) and cell.unit_forget_bias:  # Keras: forget gate's bias 1
                bias[cell.units:2 * cell.units] = 1.0
            _assign(cell.bias, bias)
            _assign(cell.seed_generator.state, [_dropout_seed(seed, 0), 0])  # its (recurrent) dropout's seed
        elif isinstance(layer, keras.layers.Embedding):
            layer.embeddings.assign(_embedding_init(seed, 0)(layer.embeddings.shape, dtype=layer.embeddings.dtype))
        elif isinstance(layer, keras.layers.Dropout):
            index = int(layer.name.removeprefix("dropout"))
            state = layer.seed_generator.state
            state.assign(keras.ops.convert_to_tensor([_dropout_seed(seed, index), 0], dtype=state.dtype))


def resolve_class(key: str, path: str, base: type) -> type:
    """The class a dotted path names (``keras.optimizers.Nadam``, or a user's ``pkg.mod.Class``),
    which must be a subclass of `base`; else the one-line ConfigError naming `key`."""
    import importlib
    from nanbench.spec import ConfigError
    module, _, name = path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        cls = None
    if not isinstance(cls, type) or not issubclass(cls, base):
        raise ConfigError(key, f"a {base.__module__.split('.')[0]} {base.__name__} class (a dotted path)", path)
    return cls


def _takes(cls: type, argument: str) -> bool:
    return argument in inspect.signature(cls.__init__).parameters


def build_optimizer(spec: OptimizerSpec, clipping: ClippingSpec, *, precision: str = "float32",
                    threshold=None) -> keras.optimizers.Optimizer:
    """The Keras optimizer class the option names (``optimizer.class``) with Keras's own clipping.

    It gets ``learning_rate=lr``, and ``momentum`` where the class takes one (SGD, RMSprop); a
    non-zero momentum for a class without one is a ConfigError. Keras 3 clipping semantics:
    ``clipnorm`` rescales each variable's gradient to its own L2 norm <= t; ``global_clipnorm``
    rescales all gradients together to a joint L2 norm <= t; ``clipvalue`` clips each element to
    [-t, t]. `threshold` may be a runtime value (see engines.fused). Under mixed_float16 the
    optimizer is wrapped in LossScaleOptimizer, as `compile` would do.
    """
    from nanbench.spec import ConfigError
    cls = resolve_class("optimizer.class", spec.keras_class(), keras.optimizers.Optimizer)
    kwargs = {} if clipping.kind == "none" else {
        clipping.kind: clipping.threshold if threshold is None else threshold}
    if _takes(cls, "momentum"):
        kwargs["momentum"] = spec.momentum
    elif spec.momentum:
        raise ConfigError("optimizer.momentum", f"0 for {spec.keras_class()} (it takes no momentum)", spec.momentum)
    opt = cls(learning_rate=spec.lr, **kwargs)
    if precision == "mixed_float16":
        opt = keras.optimizers.LossScaleOptimizer(opt)
    return opt


def build_loss(spec: LossSpec, model: ModelSpec | None = None) -> keras.losses.Loss:
    """The Keras loss class the option names (``loss.class``; nanbench.losses's are Keras losses
    too), given ``delta``, ``from_logits`` and ``builder`` (loss=builder) where it takes them.
    With the run's `model`: a loss that compares values (mse, mae, ...) on a multiclass model
    takes the labels one-hot encoded (nanbench.losses.OnOneHot), as MSE on one-hot labels does."""
    from nanbench.spec import CLASSIFICATION_LOSSES, USER_LOSS
    from nanbench.user_loss import compiled_class
    loss = _build_loss(spec)
    if spec.compiled is not None:  # the saved model's loss: one-hot labels unless it takes integers (sparse)
        takes_labels = compiled_class(spec.compiled).endswith("SparseCategoricalCrossentropy")
    else:
        takes_labels = spec.keras_class() in CLASSIFICATION_LOSSES or spec.keras_class() == USER_LOSS
    if model is not None and model.task == "multiclass" and model.outputs > 1 and not takes_labels:
        from nanbench.losses import OnOneHot
        return OnOneHot(loss, model.outputs)
    return loss


def _build_loss(spec: LossSpec) -> keras.losses.Loss:
    cls = resolve_class("loss.class", spec.keras_class(), keras.losses.Loss)
    kwargs = {"delta": spec.delta} if _takes(cls, "delta") else {}
    if spec.compiled is not None and _takes(cls, "compiled"):  # loss=compiled: nanbench.losses.Compiled
        kwargs["compiled"] = spec.compiled
    if spec.builder is not None and _takes(cls, "builder"):  # loss=builder: nanbench.losses.Builder
        kwargs["builder"] = spec.builder
    if spec.from_logits is not None and _takes(cls, "from_logits"):
        kwargs["from_logits"] = spec.from_logits
    return cls(**kwargs)


def same_in_training(spec: ModelSpec) -> bool:
    """Whether a model of `spec` computes the same loss in training and in inference mode, so that
    a full-batch step's loss is the whole data's (nanbench.forensics.epoch_ends_from_steps):
    nanbench's own models without dropout or BatchNorm. A user's model is not known to."""
    return spec.name not in USER_MODELS and spec.name != "mlp_batchnorm" and spec.dropout == 0


def dense_layers(model: keras.Model, weights=None) -> list[tuple] | None:
    """The model's Dense layers in order as (kernel, bias, activation name) NumPy triples, for
    nanbench.forensics.dead_fraction, and its BatchNormalization layers in inference form as
    (scale, offset, "batchnorm"): gamma / sqrt(moving_variance + epsilon) and beta - moving_mean *
    scale, per unit (the moving statistics are the variables' current values: those of the run's
    end). ``weights``: values for ``model.trainable_weights`` (same order) to use instead of the
    variables' current ones. None when the model holds a layer other than Dense, BatchNormalization
    and Dropout (dropout is the identity outside training)."""
    values = ({id(v): w for v, w in zip(model.trainable_weights, weights)} if weights is not None else {})

    def value(variable):
        return np.asarray(values[id(variable)] if id(variable) in values else variable.numpy())

    layers = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.Dropout):
            continue
        if isinstance(layer, keras.layers.BatchNormalization) and layer.center and layer.scale:
            gamma, beta = value(layer.gamma).astype(np.float64), value(layer.beta).astype(np.float64)
            mean = np.asarray(layer.moving_mean.numpy(), np.float64)
            variance = np.asarray(layer.moving_variance.numpy(), np.float64)
            with np.errstate(all="ignore"):
                scale = gamma / np.sqrt(variance + layer.epsilon)
                layers.append((scale, beta - mean * scale, "batchnorm"))
            continue
        if not isinstance(layer, keras.layers.Dense) or not layer.use_bias:
            return None
        name = getattr(layer.activation, "__name__", "")
        if name == "softmax" and layer.name == "output":  # the last activation counts no unit, dead or alive
            name = "linear"
        if name not in ("relu", "linear", "tanh", "sigmoid"):
            return None
        layers.append((value(layer.kernel), value(layer.bias), name))
    return layers


def has_relu_units(model: keras.Model) -> bool:
    """Whether any layer of the model has ReLU units (where dead units are defined)."""
    return any(getattr(getattr(layer, "activation", None), "__name__", "") == "relu" for layer in model.layers)


def dead_fraction(model: keras.Model, X, weights=None) -> float | None:
    """The fraction of the model's ReLU units that output zero on every row of X (see
    nanbench.forensics.dead_fraction); a user's model of other layers (a CNN) through Keras
    (:func:`probed_dead_fraction`); None for a model without ReLU units or one it cannot read."""
    from nanbench.forensics import dead_fraction as dead
    if not has_relu_units(model):
        return None
    layers = dense_layers(model, weights)
    if layers is not None:
        return dead(X, layers)
    user = getattr(model, "_nanbench_user_spec", None) is not None  # a user's CNN; ours keep their None
    return probed_dead_fraction(model, X, weights) if user else None


def probed_dead_fraction(model: keras.Model, X, weights=None, batch: int = 1024) -> float | None:
    """dead_fraction for a model dense_layers cannot read (a user's CNN, a Reshape, a Dense layer
    without bias): every ReLU layer's output computed by Keras (inference mode, on `weights` where
    given) over X in batches; a unit is a channel (the last axis), dead when it is 0 at every row and
    position. None for a model without a layer graph (subclassed)."""
    relu = [layer for layer in model.layers if getattr(getattr(layer, "activation", None), "__name__", "") == "relu"]
    try:
        probe = keras.Model(model.inputs, [layer.output for layer in relu])
    except (AttributeError, ValueError, TypeError):
        return None
    mapping = ([(v, keras.ops.convert_to_tensor(np.asarray(w), dtype=v.dtype))
                for v, w in zip(model.trainable_weights, weights)] if weights is not None else [])
    alive = None
    for start in range(0, len(X), batch):
        with keras.StatelessScope(state_mapping=mapping):
            outs = probe(np.asarray(X[start:start + batch], dtype=np.float32), training=False)
        outs = outs if isinstance(outs, (list, tuple)) else [outs]
        now = [np.any(np.asarray(h).reshape(-1, np.shape(h)[-1]) > 0, axis=0) for h in outs]
        alive = now if alive is None else [a | b for a, b in zip(alive, now)]
    units = sum(len(a) for a in alive or [])
    return float(sum(int((~a).sum()) for a in alive) / units) if units else None
