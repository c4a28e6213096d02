"""Linear models: parameter mixing (SGD, logistic regression) and exact least squares.

Parameter mixing ("linear_average", "softmax_average")
    The merged coef_ / intercept_ is the average of the shards', weighted by shard
    rows. This is an approximation: the average of per-shard optima is not the
    optimum on all rows (it is close when shards are i.i.d. samples of the data,
    e.g. random or stratified partitions, and degrades when they are not, e.g.
    range partitions of sorted data).

    Classifiers are put into the job's K-class layout right after fitting, so that
    all shards agree on what row k of coef_ means:
    - K = 2: one row scoring classes[1] against classes[0], as sklearn does.
    - K >= 3: one row per class. A shard that saw only 2 classes was fitted as a
      binary model with a single row w scoring c1 against c0; it becomes rows
      (-w, +w) for (c0, c1) under one-vs-rest (SGD: "c0 vs rest" on a two-class
      shard is exactly the negated "c1 vs rest" problem), and (-w/2, +w/2) under
      the multinomial softmax (LogisticRegression), which leaves the shard's
      probabilities unchanged. Classes the shard never saw get coef 0 and an
      intercept far below every score it produced on its rows ("padding"), so the
      shard model on its own never predicts them.
    - A shard that saw a single class cannot fit a linear classifier (sklearn
      refuses); it becomes a constant model predicting that class.
    Each shard records which rows of coef_ it actually fitted (coef_fitted_). The
    merge averages row k only over the shards that fitted it: a shard without class
    k knows nothing about what separates k, and its padding would only drag the
    class towards "never". Constant (single-class) shards therefore do not vote
    at all. For the multinomial model the rows of different shards are centred over
    different class subsets, so mixing them is a further approximation.

Exact least squares ("normal_equations": LinearRegression, Ridge)
    Each shard records the sufficient statistics of its rows, in the mean-centred
    form sklearn itself solves (centring first avoids the cancellation that
    X^T X - n xbar xbar^T suffers when features have large means):
        n_samples_seen_   n
        x_mean_, y_mean_  sum(x) / n, sum(y) / n
        xtx_              sum((x - x_mean)(x - x_mean)^T)      (p, p)
        xty_              sum((x - x_mean)(y - y_mean))        (p,)
    Shards are pooled with the parallel (Chan et al.) formulas and the normal
    equations (XcᵀXc + alpha I) w = Xcᵀyc are solved once; the intercept is
    y_mean - x_mean·w and is not penalised, as in sklearn. Without an intercept the
    uncentred XᵀX and Xᵀy are rebuilt from the same statistics. The merged model
    carries the pooled statistics, so merged models can be merged again.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.linalg
from sklearn.base import BaseEstimator, clone, is_classifier
from sklearn.linear_model import LinearRegression

PAD_MARGIN = 50.0
"""How far below the lowest real score padded classes sit. In log-odds units
e^-50 ~ 2e-22, i.e. a padded class gets probability 0 to double precision."""

_SHARED_ATTRS = ("n_features_in_", "feature_names_in_")


# -- parameter mixing ----------------------------------------------------------------------------


def fit_one_vs_rest(
    model: Any, X: np.ndarray, y: np.ndarray | None, classes: np.ndarray | None
) -> None:
    """Shard fit for SGDClassifier / SGDRegressor ("linear_average")."""
    _fit_mixed(model, X, y, classes, binary_scale=1.0)


def fit_softmax(
    model: Any, X: np.ndarray, y: np.ndarray | None, classes: np.ndarray | None
) -> None:
    """Shard fit for multinomial LogisticRegression ("softmax_average")."""
    _fit_mixed(model, X, y, classes, binary_scale=0.5)


def _fit_mixed(
    model: Any,
    X: np.ndarray,
    y: np.ndarray | None,
    classes: np.ndarray | None,
    *,
    binary_scale: float,
) -> None:
    if not is_classifier(model):
        model.fit(X, y)
        return
    assert y is not None
    job_classes = np.unique(y) if classes is None else classes
    present = np.unique(y)
    if len(present) == 1 and len(job_classes) >= 2:
        _make_constant(model, X, present[0], job_classes)
        return
    model.fit(X, y)
    _align_classes(model, X, job_classes, binary_scale)


def _make_constant(model: Any, X: np.ndarray, label: Any, classes: np.ndarray) -> None:
    """A classifier that predicts `label` everywhere, with nothing fitted for the merge."""
    n_rows = 1 if len(classes) == 2 else len(classes)
    index = int(np.searchsorted(classes, label))
    intercept = np.full(n_rows, -PAD_MARGIN)
    if n_rows == 1:
        intercept[0] = PAD_MARGIN if index == 1 else -PAD_MARGIN
    else:
        intercept[index] = 0.0
    model.coef_ = np.zeros((n_rows, X.shape[1]))
    model.intercept_ = intercept
    model.classes_ = classes.copy()
    model.n_features_in_ = X.shape[1]
    model.coef_fitted_ = np.zeros(n_rows, dtype=bool)


def _align_classes(model: Any, X: np.ndarray, classes: np.ndarray, binary_scale: float) -> None:
    """Re-express coef_ / intercept_ in the job's class layout (module docstring)."""
    shard_classes = np.asarray(model.classes_)
    coef = np.asarray(model.coef_, dtype=np.float64)
    # liblinear without an intercept leaves intercept_ the scalar 0.0, not one per coef row.
    intercept = np.broadcast_to(np.asarray(model.intercept_, dtype=np.float64), len(coef)).copy()
    if len(shard_classes) != len(classes):
        # Only reachable with K >= 3: K = 2 shards have both classes or a single one.
        if len(shard_classes) == 2:
            coef = binary_scale * np.vstack([-coef[0], coef[0]])
            intercept = binary_scale * np.array([-intercept[0], intercept[0]])
        scores = X @ coef.T + intercept
        padding = min(float(scores.min()), 0.0) - PAD_MARGIN
        rows = np.searchsorted(classes, shard_classes)
        full_coef = np.zeros((len(classes), coef.shape[1]))
        full_intercept = np.full(len(classes), padding)
        full_coef[rows], full_intercept[rows] = coef, intercept
        coef, intercept = full_coef, full_intercept
    # One row (K = 2) is fitted because the shard saw both classes.
    fitted = np.isin(classes, shard_classes) if len(intercept) > 1 else np.ones(1, dtype=bool)
    model.coef_, model.intercept_ = coef, intercept
    # Always replace the labels, so dtype and order come from the job, not the shard.
    model.classes_ = classes.copy()
    model.coef_fitted_ = fitted


def merge_average(models: list[BaseEstimator], rows: list[int]) -> BaseEstimator:
    """Row-weighted average of coef_ and intercept_ (per class row: over the shards
    that fitted it; a row no shard fitted keeps the lowest padding)."""
    first: Any = models[0]
    coefs = np.stack([np.atleast_2d(np.asarray(m.coef_, np.float64)) for m in models])
    intercepts = np.stack([np.atleast_1d(np.asarray(m.intercept_, np.float64)) for m in models])
    if coefs.shape[1] != intercepts.shape[1] or any(c.shape != coefs[0].shape for c in coefs):
        raise ValueError("shard models have differently shaped coefficients")
    fitted = np.stack([_fitted_rows(m, coefs.shape[1]) for m in models])
    weights = fitted * np.asarray(rows, dtype=np.float64)[:, None]  # (shards, coef rows)
    total = weights.sum(axis=0)
    if not total.any():
        raise ValueError(
            "no shard saw two or more classes, so there is no linear boundary to merge; "
            "use partition 'random' or 'stratified'"
        )
    share = np.divide(weights, total, out=np.zeros_like(weights), where=total > 0)
    coef = np.einsum("sr,srf->rf", share, coefs)
    intercept = np.where(
        total > 0, np.einsum("sr,sr->r", share, intercepts), intercepts.min(axis=0)
    )

    merged: Any = clone(first)
    merged.coef_ = coef.reshape(np.shape(first.coef_))
    merged.intercept_ = intercept
    _copy_shared(first, merged)
    if is_classifier(first):
        merged.classes_ = np.asarray(first.classes_).copy()
        merged.coef_fitted_ = total > 0
    return merged


def _fitted_rows(model: Any, n_rows: int) -> np.ndarray:
    fitted = getattr(model, "coef_fitted_", None)
    if fitted is None:
        # Regressors (and classifiers fitted outside fit_shard) fitted every row.
        return np.ones(n_rows, dtype=bool)
    fitted = np.asarray(fitted, dtype=bool)
    if fitted.shape != (n_rows,):
        raise ValueError(f"coef_fitted_ has shape {fitted.shape}, expected ({n_rows},)")
    return fitted


# -- exact least squares -------------------------------------------------------------------------


def fit_normal_equations(
    model: Any, X: np.ndarray, y: np.ndarray | None, classes: np.ndarray | None
) -> None:
    """Shard fit for LinearRegression / Ridge: the usual fit plus sufficient statistics."""
    del classes
    target = np.asarray(y, dtype=np.float64)
    if target.ndim != 1:
        raise ValueError(f"{type(model).__name__} shards support one target, got y {target.shape}")
    model.fit(X, target)
    X = np.asarray(X, dtype=np.float64)
    model.n_samples_seen_ = len(X)
    model.x_mean_ = X.mean(axis=0)
    model.y_mean_ = float(target.mean())
    Xc = X - model.x_mean_
    model.xtx_ = Xc.T @ Xc
    model.xty_ = Xc.T @ (target - model.y_mean_)


def merge_normal_equations(models: list[BaseEstimator], rows: list[int]) -> BaseEstimator:
    """Pool the shards' statistics and solve once: equals a fit on all rows."""
    first: Any = models[0]
    for i, (model, n) in enumerate(zip(models, rows, strict=True)):
        seen = getattr(model, "n_samples_seen_", None)
        if seen is None:
            raise ValueError(f"model {i} has no sufficient statistics (fit it with fit_shard)")
        if seen != n:
            raise ValueError(f"model {i} was fitted on {seen} rows but rows[{i}] is {n}")
    n, x_mean, y_mean, xtx, xty = _pool(models)
    A, b = _normal_equations(first, n, x_mean, y_mean, xtx, xty)
    # LinearRegression has no alpha; Ridge's is a number or a one-element list.
    coef = _solve(A, b, float(np.ravel(getattr(first, "alpha", 0.0))[0]))

    merged: Any = clone(first)
    merged.coef_ = coef
    merged.intercept_ = y_mean - float(x_mean @ coef) if first.fit_intercept else 0.0
    _copy_shared(first, merged)
    merged.n_samples_seen_, merged.x_mean_, merged.y_mean_ = n, x_mean, y_mean
    merged.xtx_, merged.xty_ = xtx, xty
    if isinstance(merged, LinearRegression):
        merged.rank_, merged.singular_ = _spectrum(A, n)
    else:
        # What Ridge reports after its direct (cholesky) solver.
        merged.n_iter_, merged.solver_ = None, "cholesky"
    return merged


def _pool(
    models: list[Any],
) -> tuple[int, np.ndarray, float, np.ndarray, np.ndarray]:
    """Chan et al.'s parallel update: C = sum C_s + sum n_s (a_s - a)(b_s - b)^T."""
    counts = np.array([m.n_samples_seen_ for m in models], dtype=np.float64)
    n = int(counts.sum())
    x_means = np.stack([m.x_mean_ for m in models])
    y_means = np.array([m.y_mean_ for m in models], dtype=np.float64)
    x_mean = counts @ x_means / n
    y_mean = float(counts @ y_means / n)
    dx = x_means - x_mean
    dy = y_means - y_mean
    xtx = sum(m.xtx_ for m in models) + (dx * counts[:, None]).T @ dx
    xty = sum(m.xty_ for m in models) + (dx * counts[:, None]).T @ dy
    return n, x_mean, y_mean, np.asarray(xtx), np.asarray(xty)


def _normal_equations(
    model: Any, n: int, x_mean: np.ndarray, y_mean: float, xtx: np.ndarray, xty: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(XᵀX, Xᵀy) of the problem sklearn solves: centred data iff fit_intercept."""
    if model.fit_intercept:
        return xtx, xty
    return xtx + n * np.outer(x_mean, x_mean), xty + n * x_mean * y_mean


def _solve(A: np.ndarray, b: np.ndarray, alpha: float) -> np.ndarray:
    if alpha > 0:
        try:
            # The same solve as Ridge's (default) cholesky solver.
            return np.asarray(scipy.linalg.solve(A + alpha * np.eye(len(A)), b, assume_a="pos"))
        except (np.linalg.LinAlgError, scipy.linalg.LinAlgError):
            pass
    # Least squares on the normal equations gives the minimum-norm solution when XᵀX
    # is singular (constant columns, fewer rows than features), like sklearn's lstsq.
    coef, *_ = scipy.linalg.lstsq(A + alpha * np.eye(len(A)), b)
    return np.asarray(coef)


def _spectrum(A: np.ndarray, n: int) -> tuple[int, np.ndarray]:
    """LinearRegression's rank_ and singular_: the design's singular values are the
    square roots of XᵀX's eigenvalues."""
    eigenvalues = scipy.linalg.eigvalsh(A)[::-1][: min(n, len(A))]
    singular = np.sqrt(np.clip(eigenvalues, 0.0, None))
    # lstsq's default cut-off for "zero" singular values.
    tol = singular[0] * max(n, len(A)) * np.finfo(np.float64).eps if len(singular) else 0.0
    return int((singular > tol).sum()), singular


def _copy_shared(source: Any, target: Any) -> None:
    for attr in _SHARED_ATTRS:
        if hasattr(source, attr):
            setattr(target, attr, np.copy(getattr(source, attr)))
