"""How runs side by side multiply: each Dense layer's products, probed once per shape.

Runs side by side (nanbench.engines.batched) stack their weights along a run axis, and a layer's
products (forward, and the gradients for its weights and its input) become batched matmuls.
TensorFlow's CPU kernel for those is chosen by shape, and for some shapes it sums each dot
product in another order than MatMul does, or without fused multiply-adds (the 4 rows x 2 features
of doc003 into 64 units), so a run would not get the bits it gets alone. layer_products probes
each layer's shapes once and says how the layer multiplies: one batched matmul for all runs where
that kernel agrees with MatMul, else each run's own MatMul in a loop over the runs inside the
graph (slower: a loop iteration per run; the op a run alone makes).
"""

from __future__ import annotations

import functools

import numpy as np
import tensorflow as tf


def _products(single: bool, per_run: bool = False):
    """x @ w and its gradients for w and x (the three products a Dense layer's step makes), one
    run ([rows, in] x [in, out]) or runs side by side ([R, rows, in] x [R, in, out]): one batched
    matmul, or (`per_run`) each run's own matmul (per_run_matmul)."""
    rank = 2 if single else 3
    matmul = per_run_matmul if per_run else tf.matmul
    def products(x, w, upstream):
        with tf.GradientTape() as tape:
            tape.watch([x, w])
            y = matmul(x, w)
        return [y, *tape.gradient(y, [w, x], output_gradients=upstream)]
    return tf.function(products, autograph=False, input_signature=[tf.TensorSpec([None] * rank, tf.float32)] * 3)


def per_run_matmul(x, w):
    """[R, rows, in] x [R, in, out] as R matmuls of one run each (a loop over the run axis inside
    the graph, R free): the op, shapes and gradients of a run trained alone, where the batched
    kernel would round otherwise."""
    return tf.map_fn(lambda pair: tf.matmul(pair[0], pair[1]), (x, w), fn_output_signature=x.dtype)


_SINGLE, _SIDE_BY_SIDE, _PER_RUN = _products(True), _products(False), _products(False, per_run=True)


@functools.lru_cache(maxsize=None)
def same_products(runs: int, rows: int, n_in: int, n_out: int, per_run: bool = False) -> bool:
    """Whether TensorFlow's batched matmul (or, `per_run`, each run's own matmul in a loop over
    the runs) gives each of `runs` runs the bits its own matmul gives, for these shapes (forward
    and both gradients). The batched CPU kernel picks its blocking by shape (and so the order of
    each dot product's sums, and whether it fuses multiply and add), and for some shapes that
    differs from MatMul's; the kernel depends on the shapes only, so one probe on random numbers
    tells."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(runs, rows, n_in)).astype(np.float32)
    w = rng.normal(size=(runs, n_in, n_out)).astype(np.float32)
    up = rng.normal(size=(runs, rows, n_out)).astype(np.float32)
    together = [t.numpy() for t in (_PER_RUN if per_run else _SIDE_BY_SIDE)(x, w, up)]
    for r in range(runs):
        alone = [t.numpy() for t in _SINGLE(x[r], w[r], up[r])]
        if not all(np.array_equal(a, t[r]) for a, t in zip(alone, together)):
            return False
    return True


BATCHED, PER_RUN = "batched", "per_run"  # how a layer of runs side by side multiplies


def layer_products(spec, n_samples: int, n_features: int, runs: int) -> tuple[str, ...] | None:
    """How each Dense layer multiplies when `runs` runs of this structure train side by side, so
    that each run gets the bits it gets alone: BATCHED (one batched matmul for all runs) where
    that kernel agrees with MatMul for the layer's shapes (a full batch, the last, shorter one,
    and the whole data set), else PER_RUN (each run's own matmul: slower, the op a run alone
    makes); None where neither agrees (the runs then train one at a time)."""
    batch = min(spec.train.batch_size, n_samples)
    rows = {batch, n_samples - (n_samples - 1) // batch * batch, n_samples}
    m = spec.model
    widths = [n_features] + [m.width] * (m.depth if m.name == "mlp" else 0) + [m.outputs]
    products = []
    for n_in, n_out in zip(widths, widths[1:]):
        if all(same_products(runs, b, n_in, n_out) for b in rows):
            products.append(BATCHED)
        elif all(same_products(runs, b, n_in, n_out, per_run=True) for b in rows):
            products.append(PER_RUN)
        else:
            return None
    return tuple(products)
