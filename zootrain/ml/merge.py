"""Merging shard models into one model.

Each algorithm names a merge family (Algorithm.merge); a family is a function
registered here with @merger. Families check that the shard models are compatible
and build a new estimator without touching their inputs.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

from zootrain.ml.algorithms import get_algorithm

Merger = Callable[[list[BaseEstimator], list[int]], BaseEstimator]
"""(shard models, training rows per shard) -> merged model."""

MERGERS: dict[str, Merger] = {}


def merger(family: str) -> Callable[[Merger], Merger]:
    """Register a merge family under `family`."""

    def register(fn: Merger) -> Merger:
        if family in MERGERS:
            raise ValueError(f"merge family {family!r} is already registered")
        MERGERS[family] = fn
        return fn

    return register


def merge_models(algorithm: str, models: list[BaseEstimator], rows: list[int]) -> BaseEstimator:
    """Merge the fitted shard models of `algorithm` into one new model.

    rows[i] is the number of training rows behind models[i], for families that
    weight shards by size. The inputs are not modified.
    """
    alg = get_algorithm(algorithm)
    if not models:
        raise ValueError("cannot merge an empty list of models")
    if len(rows) != len(models):
        raise ValueError(f"got {len(models)} models but {len(rows)} row counts")
    if any(isinstance(r, bool) or r < 1 for r in rows):
        raise ValueError(f"row counts must be positive integers, got {rows}")
    for i, model in enumerate(models):
        if type(model) is not alg.estimator:
            raise ValueError(
                f"model {i} is a {type(model).__name__}, expected "
                f"{alg.estimator.__name__} for {alg.name}"
            )
        try:
            check_is_fitted(model)
        except NotFittedError:
            raise ValueError(f"model {i} is not fitted") from None
    _check_same_fitted_shape(models)
    try:
        merge = MERGERS[alg.merge]
    except KeyError:
        raise NotImplementedError(f"no merger registered for family {alg.merge!r}") from None
    return merge(models, rows)


def _check_same_fitted_shape(models: list[BaseEstimator]) -> None:
    """All shards must describe the same problem: features, outputs and labels."""
    first = models[0]
    for i, model in enumerate(models[1:], start=1):
        for attr in ("n_features_in_", "n_outputs_"):
            if getattr(model, attr, None) != getattr(first, attr, None):
                raise ValueError(
                    f"model {i} has {attr}={getattr(model, attr, None)} but model 0 has "
                    f"{getattr(first, attr, None)}"
                )
        for attr in ("classes_", "feature_names_in_"):
            a, b = getattr(first, attr, None), getattr(model, attr, None)
            if (a is None) != (b is None) or (
                a is not None and not np.array_equal(np.asarray(a), np.asarray(b))
            ):
                raise ValueError(
                    f"model {i} has different {attr} from model 0; shard classifiers must "
                    "be aligned to the job's classes (see training.fit_shard)"
                )


# Fitted attributes a pooled forest inherits from its shards (all shards agree on
# them). The bootstrap bookkeeping (_n_samples, _n_samples_bootstrap, _sample_weight)
# is left out on purpose: it describes one shard's rows, so estimators_samples_
# would silently return wrong indices for the merged forest.
_FOREST_SHARED_ATTRS = (
    "n_features_in_",
    "feature_names_in_",
    "n_outputs_",
    "classes_",
    "n_classes_",
    "estimator_",
)


@merger("forest_union")
def _merge_forest_union(models: list[BaseEstimator], rows: list[int]) -> BaseEstimator:
    """Pool all shards' trees into one forest.

    A forest predicts the mean over its trees, so the pooled forest is the
    tree-count-weighted mean of the shard forests; with equal n_estimators per shard
    that is their plain average, so `rows` is not needed.
    """
    del rows
    first: Any = models[0]
    merged: Any = clone(first)
    # Deep copies: the merged forest must not share mutable trees with the inputs.
    merged.estimators_ = [copy.deepcopy(tree) for m in models for tree in m.estimators_]
    merged.n_estimators = len(merged.estimators_)
    for attr in _FOREST_SHARED_ATTRS:
        if hasattr(first, attr):
            setattr(merged, attr, copy.deepcopy(getattr(first, attr)))
    return merged
