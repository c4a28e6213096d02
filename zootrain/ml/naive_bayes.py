"""Naive Bayes: exact merges from per-class statistics ("gaussian_nb", "multinomial_nb").

Both models are functions of per-class counts and per-class feature statistics, so
pooling the shards' statistics gives exactly the model fitted on all rows (up to
floating-point rounding): no approximation, and no replay of partial_fit.

Shards are fitted with a single partial_fit(X, y, classes=job classes) on a fresh
estimator. That is the same computation as fit(), except that it takes the job's
class list: a class the shard never saw gets a zero-count row instead of changing
the layout, and user priors with one value per job class stay valid.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, clone

_SHARED_ATTRS = ("n_features_in_", "feature_names_in_", "classes_")


def fit_gaussian(
    model: Any, X: np.ndarray, y: np.ndarray | None, classes: np.ndarray | None
) -> None:
    model.partial_fit(X, y, classes=_job_classes(y, classes))


def fit_multinomial(
    model: Any, X: np.ndarray, y: np.ndarray | None, classes: np.ndarray | None
) -> None:
    negative = np.flatnonzero((np.asarray(X) < 0).any(axis=0))
    if len(negative):
        shown = ", ".join(str(c) for c in negative[:10]) + (", ..." if len(negative) > 10 else "")
        raise ValueError(
            "multinomial_nb needs non-negative features (counts or frequencies), but "
            f"feature columns {shown} have negative values; use gaussian_nb for "
            "real-valued features"
        )
    model.partial_fit(X, y, classes=_job_classes(y, classes))


def _job_classes(y: np.ndarray | None, classes: np.ndarray | None) -> np.ndarray:
    if classes is not None:
        return classes
    if y is None:
        raise ValueError("naive Bayes needs the target y")
    return np.unique(y)


def merge_gaussian(models: list[BaseEstimator], rows: list[int]) -> BaseEstimator:
    """Pool per-class counts, means and variances; recompute var_smoothing's epsilon.

    sklearn adds epsilon_ = var_smoothing * max_j Var(X[:, j]) over ALL training
    rows to every variance. A shard only knows its own rows, but the classes
    partition the rows, so the variance of all rows follows from the pooled
    per-class counts, means and variances (law of total variance) - nothing beyond
    sklearn's own fitted attributes has to be carried.
    """
    _check_rows(models, rows)
    first: Any = models[0]
    counts = np.stack([m.class_count_ for m in models])  # (shards, classes)
    means = np.stack([m.theta_ for m in models])  # (shards, classes, features)
    # var_ holds each shard's own epsilon_; take it off to get the raw variances.
    variances = np.stack([m.var_ - m.epsilon_ for m in models])
    class_count, theta, var = _pooled_moments(counts, means, variances)

    n, _, overall_var = _pooled_moments(class_count, theta, var)
    epsilon = first.var_smoothing * float(np.max(overall_var))

    merged: Any = clone(first)
    _copy_shared(first, merged)
    merged.class_count_ = class_count
    merged.theta_ = theta
    merged.var_ = var + epsilon
    merged.epsilon_ = epsilon
    merged.class_prior_ = (
        class_count / n if first.priors is None else np.asarray(first.priors, dtype=np.float64)
    )
    return merged


def _pooled_moments(
    counts: np.ndarray, means: np.ndarray, variances: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pool groups along axis 0: (total counts, means, population variances).

    Parallel-variance formula: M2 = sum n_i (var_i + (mean_i - mean)^2). Groups
    with count 0 contribute nothing; a total count of 0 gives mean 0, variance 0.
    """
    total = counts.sum(axis=0)
    share = np.divide(counts, total, out=np.zeros(counts.shape), where=total > 0)[..., None]
    mean = (share * means).sum(axis=0)
    var = (share * (variances + (means - mean) ** 2)).sum(axis=0)
    return total, mean, var


def merge_multinomial(models: list[BaseEstimator], rows: list[int]) -> BaseEstimator:
    """Sum feature and class counts, then smooth with alpha exactly as fit() does."""
    _check_rows(models, rows)
    first: Any = models[0]
    merged: Any = clone(first)
    _copy_shared(first, merged)
    merged.feature_count_ = np.sum([m.feature_count_ for m in models], axis=0)
    merged.class_count_ = np.sum([m.class_count_ for m in models], axis=0)
    # sklearn's own steps after counting (private, but they are what fit() runs, so
    # the merged smoothing is identical, including alpha's lower bound).
    merged._update_feature_log_prob(merged._check_alpha())
    merged._update_class_log_prior(class_prior=merged.class_prior)
    return merged


def _check_rows(models: list[Any], rows: list[int]) -> None:
    for i, (model, n) in enumerate(zip(models, rows, strict=True)):
        seen = float(np.sum(model.class_count_))
        if seen != n:
            raise ValueError(f"model {i} was fitted on {seen:g} rows but rows[{i}] is {n}")


def _copy_shared(source: Any, target: Any) -> None:
    for attr in _SHARED_ATTRS:
        if hasattr(source, attr):
            setattr(target, attr, np.copy(getattr(source, attr)))
