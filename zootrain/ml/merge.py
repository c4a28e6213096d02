"""Merging shard models into one model.

Each algorithm names a merge family (Algorithm.merge). A family is registered here
with @merger and is two functions: how a shard model is fitted so that it can be
merged (class alignment, sufficient statistics), and how fitted shard models are
combined. Families check that the shard models are compatible and build a new
estimator without touching their inputs.

Families (the modules hold the details, including what is approximate):
    forest_union      pool all trees (zootrain.ml.forest)
    linear_average    row-weighted average of coef_ / intercept_, one-vs-rest layout
    softmax_average   the same for multinomial logistic regression (zootrain.ml.linear)
    normal_equations  exact: pooled sufficient statistics, one solve (zootrain.ml.linear)
    gaussian_nb       exact: pooled per-class moments (zootrain.ml.naive_bayes)
    multinomial_nb    exact: summed counts (zootrain.ml.naive_bayes)
    kmeans_centroids  weighted k-means over shard centroids (zootrain.ml.clustering)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

from zootrain.ml import clustering, forest, linear, naive_bayes
from zootrain.ml.algorithms import get_algorithm

Merger = Callable[[list[BaseEstimator], list[int]], BaseEstimator]
"""(shard models, training rows per shard) -> merged model."""

ShardFit = Callable[[Any, np.ndarray, np.ndarray | None, np.ndarray | None], None]
"""(unfitted estimator, X, y, job classes or None) -> None: fits the estimator in place,
leaving it ready for the family's merger. y is None for clustering."""

MERGERS: dict[str, Merger] = {}
SHARD_FITTERS: dict[str, ShardFit] = {}


def fit_plain(model: Any, X: np.ndarray, y: np.ndarray | None, classes: np.ndarray | None) -> None:
    """The default shard fit, for families that need nothing beyond estimator.fit."""
    del classes
    model.fit(X, y)


def merger(family: str, *, fit: ShardFit = fit_plain) -> Callable[[Merger], Merger]:
    """Register a merge family under `family`, with the shard fit its merge relies on."""

    def register(fn: Merger) -> Merger:
        if family in MERGERS:
            raise ValueError(f"merge family {family!r} is already registered")
        MERGERS[family] = fn
        SHARD_FITTERS[family] = fit
        return fn

    return register


def shard_fitter(family: str) -> ShardFit:
    try:
        return SHARD_FITTERS[family]
    except KeyError:
        raise NotImplementedError(f"no merger registered for family {family!r}") from None


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


# Every family, with the shard fit its merge relies on.
merger("forest_union", fit=forest.fit_forest)(forest.merge_union)
merger("linear_average", fit=linear.fit_one_vs_rest)(linear.merge_average)
merger("softmax_average", fit=linear.fit_softmax)(linear.merge_average)
merger("normal_equations", fit=linear.fit_normal_equations)(linear.merge_normal_equations)
merger("gaussian_nb", fit=naive_bayes.fit_gaussian)(naive_bayes.merge_gaussian)
merger("multinomial_nb", fit=naive_bayes.fit_multinomial)(naive_bayes.merge_multinomial)
merger("kmeans_centroids", fit=clustering.fit_kmeans)(clustering.merge_centroids)
