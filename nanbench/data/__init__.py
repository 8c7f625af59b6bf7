"""Data: the datasets nanbench trains on, and their preprocessing.

Every dataset is a pair ``(X, y)`` of float64 arrays, X of shape (n, d) and y of shape (n, 1)
(a classification set's labels 0 .. classes - 1; sequences flat, d = steps x features),
made by a generator (:mod:`~nanbench.data.generators`; the documents' arrays in
:mod:`~nanbench.data.documents`), then preprocessed (:mod:`~nanbench.data.preprocess`).
"""

from __future__ import annotations

import functools

from nanbench.data.documents import DOC000_CLEAN, DOC000_OUTLIER, DOC003_DATA
from nanbench.data.generators import GENERATORS, make_dataset
from nanbench.data.preprocess import Data, preprocess
from nanbench.spec import DatasetSpec, PreprocessSpec

__all__ = ["DOC000_CLEAN", "DOC000_OUTLIER", "DOC003_DATA", "GENERATORS", "Data", "load", "make_dataset",
           "preprocess"]


@functools.lru_cache(maxsize=32)
def load(dataset: DatasetSpec, prep: PreprocessSpec) -> Data:
    """The arrays one run trains on. The data depend on the two specs only, so the runs of a sweep
    job (learning rates, seeds, ...) share one copy, made read-only so that no run can alter it."""
    X, y = make_dataset(dataset)
    data = preprocess(X, y, prep, labels=dataset.problem != "regression")
    data.X.setflags(write=False)
    data.y.setflags(write=False)
    return data
