"""A user's own model: ``model=keras`` (a saved ``.keras`` file) or ``model=builder`` (a function
``package.module:function`` of the input shape and the task that returns an uncompiled
``keras.Model``).

The file is loaded with ``keras.saving.load_model(path, compile=False, safe_mode=True)`` (safe
mode: no arbitrary code, such as a Lambda layer's pickled bytecode, is run from the file); a
builder is the user's own Python code, imported and called by nanbench, so it runs whatever it
holds. nanbench compiles the model itself with the configured optimizer, loss and clipping, and
trains it with Keras's own math (nanbench.step), as it does its own models.

Initial weights (:func:`starts_saved`): a loaded model starts from its saved weights at
``train.seed`` 0, and at every seed k >= 1 from its layers' own initializers drawn again with
seed k, so that a diagnosis's seeds are distinct runs (a NaN that only some initialisations hit
is found) while seed 0 is exactly the user's model. ``model.reinit=true`` draws them at every
seed, seed 0 included; ``model.reinit=false`` keeps the saved weights at every seed (seeds then
vary only the shuffle order, and nothing at all with ``train.shuffle`` off). A built model starts
from every layer's initializers drawn again with integer seeds derived from ``train.seed``
(:func:`reinit`), so that two engines, or two builds, start from identical weights and each seed
is its own draw. A variable no ``*_initializer``
attribute of its layer names keeps the value it has (saved, or as built).

What a model is, is part of the run's identity: ``model.digest`` is the SHA-256 of the .keras
file, or of the builder module's source file (that file only, not what it imports).

Everything wrong with a model (a file Keras cannot load safely, a builder that does not import,
raises or returns something other than a keras.Model, an input shape other than the data's, an
output other than the task's) is a one-line ConfigError naming ``model.path`` or
``model.builder``, raised before anything is recorded: what needs no Keras (the file is there,
the builder's module is found) while the config is validated (nanbench.spec.from_config), the rest
by :func:`check` (through nanbench.run.check_user_model, which the CLI and the sweep's checks
call beside the device and store checks).
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import inspect
import os
from typing import Any

import numpy as np

from nanbench.validate import ConfigError

USER_MODELS = ("keras", "builder")


def _one_line(exc: BaseException) -> str:
    """An exception as one line, without Keras's terminal colour codes."""
    import re
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    return f"{type(exc).__name__}: {' '.join(text.split())[:300]}"


# ---- checks without Keras (config validation, before a sweep forks its store process) ----

BUILDS = {"model.builder": "a function of input_shape and task returning a keras.Model",
          "loss.builder": "a function returning a Keras loss (a keras.losses.Loss or a function of y_true, y_pred)"}


def split_builder(value: Any, key: str = "model.builder") -> tuple[str, str]:
    """``package.module:function`` as (module, function); else the ConfigError on `key`
    (model.builder, or loss.builder: nanbench.user_loss)."""
    if not isinstance(value, str) or value.count(":") != 1:
        raise ConfigError(key, f"package.module:function ({BUILDS[key]})", value)
    module, name = value.split(":")
    if not module or not all(p.isidentifier() for p in module.split(".")) or not name.isidentifier():
        raise ConfigError(key, f"package.module:function ({BUILDS[key]})", value)
    return module, name


def builder_digest(value: str, key: str = "model.builder") -> str:
    """The SHA-256 of the builder module's source file (found without running the module itself)."""
    from nanbench import user_data
    module, _ = split_builder(value, key)
    try:
        found = importlib.util.find_spec(module)
    except Exception as exc:  # noqa: BLE001 - a parent package that fails to import
        raise ConfigError(key, "package.module:function of an importable module",
                          f"{value}: {_one_line(exc)}") from None
    if found is not None and not (found.origin and os.path.isfile(found.origin)):
        raise ConfigError("model.builder", "package.module:function of the user's own module (a Python source "
                          "file, hashed as the model's digest)", f"{value}: {module} is part of Python "
                          f"({found.origin or 'no source file'}), not a module of yours")
    if found is None or not found.origin or not os.path.isfile(found.origin):
        raise ConfigError(key, "package.module:function of an importable module (from where "
                          "nanbench is started, or installed)", f"{value}: no module named {module!r}")
    return user_data.digest(found.origin)


def check_model_keys(m: dict) -> None:
    """model=keras's path (an existing .keras file) and reinit, model=builder's builder, each
    model's digest (computed here), in place in `m` (a model config's dict, while nanbench.spec.from_config
    validates it); the user-model keys on another model are errors."""
    from nanbench import user_data
    name = m.get("name", "linear")
    allowed = {"keras": ("path", "reinit", "digest"), "builder": ("builder", "digest")}.get(name, ())
    for key in ("path", "reinit", "builder", "digest"):
        if m.get(key) is not None and key not in allowed:
            raise ConfigError(f"model.{key}", f"left out for model {name} (it belongs to "
                              f"{'model=keras' if key in ('path', 'reinit') else 'model=builder'})", m[key])
    if name == "keras":
        m["path"] = user_data.absolute("model.path", m.get("path"), (".keras",), "a Keras model file")
        check_keras_file(m["path"])
        digest = user_data.keras_digest(m["path"])
        if m.get("reinit") is not None and not isinstance(m["reinit"], bool):
            raise ConfigError("model.reinit", "null (seed 0: the saved weights, seed k >= 1: the initializers drawn "
                              "with seed k), true or false", m["reinit"])
    elif name == "builder":
        split_builder(m.get("builder"))
        digest = builder_digest(m["builder"])
    else:
        return
    if m.get("digest") not in (None, digest):
        raise ConfigError("model.digest", f"left out (nanbench takes it from the {'file' if name == 'keras' else 'module'}: "
                          f"{digest})", m["digest"])
    m["digest"] = digest


# ---- loading and building (Keras) ----

@functools.lru_cache(maxsize=8)
def _saved(path: str, digest: str) -> tuple[np.ndarray, ...]:
    """A .keras file's saved values of model.variables, in their order (cached per file version)."""
    return tuple(np.array(v.numpy()) for v in _load(path).variables)


def check_keras_file(path: str) -> None:
    """A .keras file is a zip archive (Keras's own error for one that is not says "File not found",
    of a file that is there): checked without Keras, while the config is validated."""
    import zipfile
    if not zipfile.is_zipfile(path):
        raise ConfigError("model.path", "a .keras file that keras.saving.load_model loads with safe_mode=True",
                          f"{path}: not a valid .keras file (not a zip archive; truncated or another format)")


def _load(path: str):
    import keras
    check_keras_file(path)
    try:
        model = keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:  # noqa: BLE001 - a zip that is no Keras model, a Lambda layer, a custom class
        raise ConfigError("model.path", "a .keras file that keras.saving.load_model loads with safe_mode=True",
                          f"{path}: {_one_line(exc)}") from None
    if not isinstance(model, keras.Model):
        raise ConfigError("model.path", "a saved keras.Model", f"{path}: a {type(model).__name__}")
    return model


def _call_builder(value: str, n_features: int, task: str, classes: int | None, precision: str):
    """The user's builder called with ((n_features,), task), and classes= when it takes one, under
    the run's Keras dtype policy (restored afterwards)."""
    import keras
    module, name = split_builder(value)
    try:
        fn = getattr(importlib.import_module(module), name)
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - the user's module: any error of its import, sys.exit
        raise ConfigError("model.builder", "package.module:function of an importable module",
                          f"{value}: {_one_line(exc)}") from None
    if not callable(fn):
        raise ConfigError("model.builder", "package.module:function naming a function", value)
    kwargs = {}
    try:
        if "classes" in inspect.signature(fn).parameters:
            kwargs["classes"] = classes
    except (TypeError, ValueError):
        pass
    old = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)  # train.precision's names are Keras's policies
    try:
        model = fn((n_features,), task, **kwargs)
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - the user's code (sys.exit(3) too: one line, exit 2)
        raise ConfigError("model.builder", f"a function that returns a keras.Model for input_shape "
                          f"({n_features},) and task {task!r}", f"{value} raised {_one_line(exc)}") from None
    finally:
        keras.config.set_dtype_policy(old)
    if not isinstance(model, keras.Model):
        raise ConfigError("model.builder", "a function returning a keras.Model (uncompiled)",
                          f"{value} returned {type(model).__name__}")
    return model


def build(spec, n_features: int, *, task: str, classes: int | None, seed: int, precision: str = "float32"):
    """A fresh, uncompiled user model in the state a run starts from (see :func:`reset`), rebuilt
    with model.final_activation / model.hidden_activation where set (:func:`with_activations`)."""
    if spec.name == "keras":
        model = _load(spec.path)
    else:
        model = _call_builder(spec.builder, n_features, task, classes, precision)
        _build_for(model, n_features)
    model = single_input(with_activations(model, getattr(spec, "final_activation", None),
                                          getattr(spec, "hidden_activation", None)))
    reset(model, spec, seed)
    object.__setattr__(model, "_nanbench_user_spec", spec)  # for nanbench.model.reset_model (not tracked by Keras)
    return model


def dense_roles(model) -> tuple[list, object | None]:
    """A model's Dense layers as (hidden ones, the output one): the output one is the last Dense
    layer (in the order model.layers flattens them), the others hidden."""
    import keras
    dense = [layer for layer in model._flatten_layers(include_self=False, recursive=True)
             if isinstance(layer, keras.layers.Dense)]
    return dense[:-1], (dense[-1] if dense else None)


def activation_names(model) -> tuple[tuple[str, ...], str | None]:
    """The activations (Keras's names) of a model's hidden Dense layers and of its output one."""
    hidden, final = dense_roles(model)

    def name(layer):
        return getattr(layer.activation, "__name__", str(layer.activation))
    return tuple(name(layer) for layer in hidden), (name(final) if final is not None else None)


def with_activations(model, final: str | None, hidden: str | None):
    """`model` rebuilt (keras.models.clone_model, each Dense layer from its config with the
    activation changed) with `final` on its output Dense layer and `hidden` on the others; the same
    model when neither is set or nothing changes. The clone has the model's variables in the same
    order, so the saved weights (or a reinit) apply to it as to the original (:func:`reset`)."""
    import keras
    if final is None and hidden is None:
        return model
    hidden_layers, final_layer = dense_roles(model)
    new = {}
    if final is not None and final_layer is not None:
        new[id(final_layer)] = final
    if hidden is not None:
        new.update({id(layer): hidden for layer in hidden_layers})
    if not new:
        return model

    def clone(layer):
        config = layer.get_config()
        if id(layer) in new:
            config["activation"] = new[id(layer)]
        return layer.__class__.from_config(config)

    try:
        copy = keras.models.clone_model(model, clone_function=clone)
    except Exception as exc:  # noqa: BLE001 - a subclassed model Keras cannot clone layer by layer
        raise ConfigError("model.final_activation" if final is not None else "model.hidden_activation",
                          "left out for a model keras.models.clone_model cannot rebuild",
                          _one_line(exc)) from None
    if not copy.built and model.inputs:
        copy.build(tuple(model.inputs[0].shape))
    return copy


def single_input(model):
    """A model with several inputs, each (None, width), as one model of their columns side by side
    (the order of model.inputs, as an NPZ's X0, X1, ... are read: nanbench.user_data.input_arrays):
    every engine, forensics per column and the data's checks then see one input, and the user's
    model is called on the slices, its own layers and weights unchanged. A model with one input is
    returned as it is."""
    import keras
    try:
        inputs = list(model.inputs or [])
    except (AttributeError, ValueError):  # a subclassed model: it declares no inputs
        return model
    if len(inputs) < 2:
        return model
    widths = [int(t.shape[-1]) for t in inputs]
    columns = keras.Input((sum(widths),), name="columns")
    starts = np.cumsum([0, *widths])
    parts = [columns[:, int(a):int(b)] for a, b in zip(starts[:-1], starts[1:])]
    return keras.Model(columns, model(parts), name=model.name)


def _build_for(model, n_features: int) -> None:
    """Build a model not built yet (a subclassed one) by calling it on a zero batch."""
    if not model.built:
        model(np.zeros((1, n_features), dtype=np.float32))


def starts_saved(spec, seed: int) -> bool:
    """Whether a run of user model `spec` at `seed` starts from the saved weights: a loaded model
    with model.reinit false, or unset (null) at seed 0."""
    return spec.name == "keras" and (spec.reinit is False or (spec.reinit is None and seed == 0))


def reset(model, spec, seed: int) -> None:
    """Put a user model in the state a run with seed `seed` starts from: the saved weights of a
    loaded model where starts_saved, else its layers' initializers drawn again (reinit); then,
    with model.init_scale, every layer's kernel times that scale."""
    if starts_saved(spec, seed):
        for variable, value in zip(model.variables, _saved(spec.path, spec.digest)):
            variable.assign(value)
    else:
        reinit(model, seed)
    scale = getattr(spec, "init_scale", None)
    if scale is not None:  # model.init_scale: every layer's `kernel` times it, as nanbench's own models
        import keras
        for layer in model._flatten_layers(include_self=False, recursive=True):
            kernel = vars(layer).get("kernel", vars(layer).get("_kernel"))  # Dense keeps it as _kernel
            if isinstance(kernel, keras.Variable):
                kernel.assign(kernel * scale)


# an initializer attribute -> the variable it initializes, where the names differ
_INITIALIZED = {"recurrent": "recurrent_kernel", "depthwise": "depthwise_kernel", "pointwise": "pointwise_kernel"}


def reinit(model, seed: int) -> None:
    """Every layer's (and sub-layer's) variables drawn again by the initializer the layer holds for
    them (``kernel_initializer`` -> ``kernel``, ...), each with the integer seed
    ``seed * 1009 + 300 + i`` (i: the variable's index in model.variables), and every seed
    generator (dropout's) set to a state derived from `seed`. An LSTM cell's forget-gate bias is
    1, as Keras builds it with unit_forget_bias."""
    import keras
    index = {id(v): i for i, v in enumerate(model.variables)}
    for layer in model._flatten_layers(include_self=False, recursive=True):
        for attr, init in list(vars(layer).items()):
            if not attr.endswith("_initializer") or not isinstance(init, keras.initializers.Initializer):
                continue
            stem = attr.removesuffix("_initializer")
            variable = getattr(layer, _INITIALIZED.get(stem, stem), None)
            if not isinstance(variable, keras.Variable) or id(variable) not in index:
                continue
            config = init.get_config()
            if "seed" in config:
                config["seed"] = seed * 1009 + 300 + index[id(variable)]
            value = keras.ops.convert_to_numpy(type(init).from_config(config)(tuple(variable.shape),
                                                                              dtype=variable.dtype))
            if isinstance(layer, keras.layers.LSTMCell) and stem == "bias" and layer.unit_forget_bias:
                value = np.array(value)
                value[layer.units:2 * layer.units] = 1.0
            variable.assign(value)
        generator = getattr(layer, "seed_generator", None)
        if isinstance(generator, keras.random.SeedGenerator):
            state = generator.state
            state.assign(keras.ops.convert_to_tensor([seed * 1009 + 600 + index.get(id(state), 0), 0],
                                                     dtype=state.dtype))


@functools.lru_cache(maxsize=16)
def check(spec, n_features: int, task: str, classes: int | None, precision: str) -> None:
    """A user model that does not fit the data is the ConfigError naming model.path / model.builder:
    it must take one input of shape (None, n_features) and give, per row, one output for
    regression and binary targets or `classes` for a multiclass one."""
    key = "model.path" if spec.name == "keras" else "model.builder"
    what = spec.path if spec.name == "keras" else spec.builder
    model = _load(spec.path) if spec.name == "keras" else _call_builder(spec.builder, n_features, task, classes,
                                                                        precision)
    model = with_activations(model, getattr(spec, "final_activation", None), getattr(spec, "hidden_activation", None))
    try:
        inputs = list(model.inputs or [])
    except (AttributeError, ValueError):  # a subclassed model: it declares no inputs
        inputs = []
    if len(inputs) > 1:  # several inputs (NPZ X0, X1, ...): their widths add up to the data's columns
        shapes = [tuple(t.shape) for t in inputs]
        if any(len(shape) != 2 for shape in shapes) or sum(shape[1] or 0 for shape in shapes) != n_features:
            raise ConfigError(key, f"a model whose inputs, each of shape (None, width), add up to the data's "
                              f"{n_features} feature column(s) (NPZ X0, X1, ... in the inputs' order)",
                              f"{what}: input shapes {shapes}")
        model, inputs = single_input(model), []
    if inputs:
        shapes = [tuple(t.shape) for t in inputs]
        if len(shapes) != 1 or shapes[0] != (None, n_features):
            raise ConfigError(key, f"a model with one input of shape (None, {n_features}) (the data has "
                              f"{n_features} feature column(s))", f"{what}: input shape "
                              f"{shapes[0] if len(shapes) == 1 else shapes}")
    try:
        out = model(np.zeros((2, n_features), dtype=np.float32), training=False)
    except Exception as exc:  # noqa: BLE001 - a subclassed model that cannot take the data's rows
        raise ConfigError(key, f"a model that takes rows of {n_features} feature(s)",
                          f"{what}: {_one_line(exc)}") from None
    want = classes if task == "multiclass" else getattr(spec, "outputs", 1) if task == "regression" else 1
    shape = tuple(getattr(out, "shape", ()))
    if len(shape) != 2 or shape[1] != want:
        raise ConfigError(key, f"a model with {want} output(s) per row for the {task} target"
                          + (f" ({classes} classes)" if task == "multiclass" else ""),
                          f"{what}: output shape {(None, *shape[1:]) if shape else type(out).__name__}")
