"""Forests: shard fitting with class alignment, and the "forest_union" merge.

A forest predicts the mean over its trees, so pooling the shards' trees gives the
tree-count-weighted mean of the shard forests.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, clone, is_classifier
from sklearn.ensemble._forest import BaseForest
from sklearn.tree import BaseDecisionTree
from sklearn.tree._tree import Tree

# Fitted attributes a pooled forest inherits from its shards (all shards agree on
# them). The bootstrap bookkeeping (_n_samples, _n_samples_bootstrap, _sample_weight)
# is left out on purpose: it describes one shard's rows, so estimators_samples_
# would silently return wrong indices for the merged forest.
_SHARED_ATTRS = (
    "n_features_in_",
    "feature_names_in_",
    "n_outputs_",
    "classes_",
    "n_classes_",
    "estimator_",
)


def fit_forest(model: Any, X: np.ndarray, y: np.ndarray | None, classes: np.ndarray | None) -> None:
    model.fit(X, y)
    if classes is not None and is_classifier(model):
        _align_classes(model, classes)


def merge_union(models: list[BaseEstimator], rows: list[int]) -> BaseEstimator:
    """Pool all shards' trees into one forest.

    With equal n_estimators per shard the pooled forest is the plain average of the
    shard forests, so `rows` is not needed.
    """
    del rows
    first: Any = models[0]
    merged: Any = clone(first)
    # Deep copies: the merged forest must not share mutable trees with the inputs.
    merged.estimators_ = [copy.deepcopy(tree) for m in models for tree in m.estimators_]
    merged.n_estimators = len(merged.estimators_)
    for attr in _SHARED_ATTRS:
        if hasattr(first, attr):
            setattr(merged, attr, copy.deepcopy(getattr(first, attr)))
    return merged


def _align_classes(model: BaseEstimator, classes: np.ndarray) -> None:
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
