"""A forest's predictions made by calling its trees in order, without joblib's dispatch.

scikit-learn's forests predict through joblib's ``Parallel`` even with ``n_jobs=1``: every tree
is a ``delayed`` call, wrapped (its ``_FuncWrapper`` puts back the warnings filters and the
configuration on every call) and dispatched, then added to the total under a lock. For one row
that dispatch is most of the call: a 120-tree forest predicted one row in 4.6 ms, its trees
called in a loop in 0.9 ms (docs/performance.md). Served predictions and held-out scoring are
mostly such small calls.

The same results to the bit, not close ones: with one job, ``Parallel`` runs the trees in their
order, each tree's ``predict_proba`` (or ``predict``) with ``check_input=False`` after the forest
has checked ``X`` once, and adds each result to a float64 total before one division; this module
makes the same calls in the same order. A forest with more jobs adds its trees in whatever
order its threads finish, so it keeps its own ``predict`` (as does every other model).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.ensemble._forest import ForestClassifier, ForestRegressor
from sklearn.utils.validation import check_is_fitted


def walks(model: Any) -> bool:
    """Whether ``model`` is a forest whose own predict would call its trees one by one in order
    (one job: ``n_jobs`` None or 1)."""
    return (
        isinstance(model, ForestClassifier | ForestRegressor)
        and model.n_jobs in (None, 1)
        # Private: the forest's own checks of X. A release without it keeps its own predict.
        and hasattr(model, "_validate_X_predict")
    )


def predict(model: Any, X: Any) -> np.ndarray:
    """``model.predict(X)``, the trees called directly when the model is a forest that walks."""
    if not walks(model):
        return np.asarray(model.predict(X))
    if isinstance(model, ForestRegressor):
        return _regression(model, X)
    proba = _proba(model, X)
    if model.n_outputs_ == 1:
        return np.asarray(model.classes_.take(np.argmax(proba[0], axis=1), axis=0))
    # As ForestClassifier.predict: one column of labels an output, of the first output's type.
    labels = np.empty((proba[0].shape[0], model.n_outputs_), dtype=model.classes_[0].dtype)
    for k in range(model.n_outputs_):
        labels[:, k] = model.classes_[k].take(np.argmax(proba[k], axis=1), axis=0)
    return labels


def predict_proba(model: Any, X: Any) -> Any:
    """``model.predict_proba(X)`` (an array, or a list of arrays for several outputs), the
    trees called directly when the model is a classifier forest that walks."""
    if not (walks(model) and isinstance(model, ForestClassifier)):
        return model.predict_proba(X)
    proba = _proba(model, X)
    return proba[0] if len(proba) == 1 else proba


def _proba(model: Any, X: Any) -> list[np.ndarray]:
    return _tree_mean(model, X, "predict_proba")


def _regression(model: Any, X: Any) -> np.ndarray:
    return _tree_mean(model, X, "predict")[0]


def _tree_mean(model: Any, X: Any, method: str) -> list[np.ndarray]:
    """The mean of the trees' ``method`` (``predict_proba``: one array an output, as wide as
    its classes; ``predict``: one array of the regressor's outputs)."""
    check_is_fitted(model)
    X = model._validate_X_predict(X)  # the forest's own checks, once; its trees skip theirs
    rows: int = X.shape[0]
    shapes: list[tuple[int, ...]]
    if method == "predict_proba":
        shapes = [(rows, j) for j in np.atleast_1d(model.n_classes_)]
    else:
        shapes = [(rows, model.n_outputs_) if model.n_outputs_ > 1 else (rows,)]
    totals = [np.zeros(shape, dtype=np.float64) for shape in shapes]
    for tree in model.estimators_:
        _add(totals, getattr(tree, method)(X, check_input=False))
    for total in totals:
        total /= len(model.estimators_)
    return totals


def _add(totals: list[np.ndarray], prediction: Any) -> None:
    # scikit-learn's _accumulate_prediction: one output's array, or a list of one an output.
    if len(totals) == 1:
        totals[0] += prediction
    else:
        for total, part in zip(totals, prediction, strict=True):
            total += part
