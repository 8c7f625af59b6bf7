"""nanbench.engines.products: how each layer of runs side by side multiplies, probed per shape."""

from __future__ import annotations

from conftest import compose_config
from nanbench.engines import products
from nanbench.spec import from_config


def _spec(*overrides):
    return from_config(compose_config(["model=mlp", "model.width=64", "train.engine=fused", *overrides]), multirun=True)


def test_the_batched_kernel_where_it_agrees_with_matmul_and_each_runs_own_matmul_where_not():
    # 10 features: every product of the batched kernel is MatMul's, bit for bit
    assert products.layer_products(_spec(), 64, 10, 8) == (products.BATCHED, products.BATCHED)
    # doc003's 4 rows of 2 features into 64 units: the batched kernel multiplies and adds apart,
    # where MatMul fuses them; each run's own matmul gives MatMul's bits (forward, both gradients)
    assert not products.same_products(8, 4, 2, 64)
    assert products.same_products(8, 4, 2, 64, per_run=True)
    assert products.layer_products(_spec(), 4, 2, 8) == (products.PER_RUN, products.BATCHED)
    # 4 features into 8 units: the batched kernel sums the dot products in another order
    assert not products.same_products(6, 32, 4, 8) and products.same_products(6, 32, 4, 8, per_run=True)
