"""Fitting one shard's model.

A shard is a random or contiguous slice of the training rows and may lack some of
the job's classes. Shard models are aligned to the job's full label set right after
fitting, so that they can be merged and also used on their own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, is_classifier
from sklearn.ensemble._forest import BaseForest
from sklearn.tree import BaseDecisionTree
from sklearn.tree._tree import Tree

from zootrain.ml.algorithms import build_estimator, get_algorithm

_UINT32 = 0xFFFFFFFF

ClassAligner = Callable[[BaseEstimator, np.ndarray], None]


def shard_seed(job_seed: int, index: int) -> int:
    """Per-shard random_state in [0, 2**32): stable, and distinct across indexes.

    Both steps are bijections on uint32, so for a fixed job seed no two shard
    indexes below 2**32 share a seed and no shard grows the same trees as another.
    """
    if job_seed < 0 or index < 0:
        raise ValueError(f"job_seed and index must be >= 0, got {job_seed}, {index}")
    return _mix32((_mix32(job_seed & _UINT32) + index) & _UINT32)


def _mix32(x: int) -> int:
    # MurmurHash3's finaliser: an invertible avalanche, so nearby inputs such as
    # consecutive shard indexes map to unrelated seeds.
    x ^= x >> 16
    x = (x * 0x85EBCA6B) & _UINT32
    x ^= x >> 13
    x = (x * 0xC2B2AE35) & _UINT32
    x ^= x >> 16
    return x


def fit_shard(
    algorithm: str,
    params: dict[str, Any],
    *,
    X: np.ndarray,
    y: np.ndarray,
    classes: np.ndarray | None,
    random_state: int,
) -> BaseEstimator:
    """Fit `algorithm` on one shard; classifiers come back with classes_ == classes."""
    alg = get_algorithm(algorithm)
    if len(X) != len(y):
        raise ValueError(f"X has {len(X)} rows but y has {len(y)}")
    if len(X) == 0:
        raise ValueError("cannot fit on an empty shard")
    if alg.task == "regression":
        if classes is not None:
            raise ValueError(f"{alg.name} is a regressor; classes must be None")
    elif classes is not None:
        classes = np.asarray(classes)
        if classes.ndim != 1 or len(classes) == 0:
            raise ValueError("classes must be a non-empty 1-d array")
        if len(classes) > 1 and not np.all(classes[:-1] < classes[1:]):
            raise ValueError("classes must be sorted and unique")
        unknown = np.setdiff1d(np.unique(y), classes)
        if len(unknown):
            raise ValueError(f"shard labels {unknown.tolist()} are not among the job's classes")

    model = build_estimator(algorithm, params, random_state)
    model.fit(X, y)

    if classes is not None and is_classifier(model):
        aligner = _CLASS_ALIGNERS.get(alg.merge)
        if aligner is None:
            raise NotImplementedError(f"no class alignment for merge family {alg.merge!r}")
        aligner(model, classes)
    return model


def _align_forest(model: BaseEstimator, classes: np.ndarray) -> None:
    """Re-express every tree's leaf distributions over the job's K classes.

    Inside a forest each tree is trained on labels encoded as 0..k-1 for the k
    classes the shard has, so trees from different shards disagree on what a
    column means. Rebuilding each tree with K value columns, zeros for the classes
    the shard never saw, gives all shards the same output layout.
    """
    assert isinstance(model, BaseForest)
    if model.n_outputs_ != 1:
        raise ValueError("multi-output classification is not supported")
    shard_classes = np.asarray(model.classes_)
    n_classes = len(classes)
    columns = np.searchsorted(classes, shard_classes)
    if len(shard_classes) != n_classes:
        for tree in model.estimators_:
            _pad_tree(tree, columns, n_classes)
    # Always replace the labels, so dtype and order come from the job, not the shard.
    model.classes_ = classes.copy()
    model.n_classes_ = n_classes


def _pad_tree(tree: BaseDecisionTree, columns: np.ndarray, n_classes: int) -> None:
    state = tree.tree_.__getstate__()
    values = state["values"]
    padded = np.zeros((values.shape[0], 1, n_classes), dtype=np.float64)
    padded[:, :, columns] = values
    new_tree = Tree(tree.tree_.n_features, np.array([n_classes], dtype=np.intp), 1)
    new_tree.__setstate__({**state, "values": padded})
    tree.tree_ = new_tree
    # A forest's trees see labels encoded as indexes into the forest's classes_.
    tree.classes_ = np.arange(n_classes, dtype=np.float64)
    tree.n_classes_ = np.intp(n_classes)


# Keyed by merge family: the class-alignment step each family's merge relies on.
_CLASS_ALIGNERS: dict[str, ClassAligner] = {
    "forest_union": _align_forest,
}
