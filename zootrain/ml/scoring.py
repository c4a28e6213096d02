"""Held-out evaluation of a model, as JSON-safe numbers."""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
from sklearn.base import ClusterMixin
from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier
from sklearn.metrics import (
    adjusted_rand_score,
    f1_score,
    log_loss,
    precision_recall_fscore_support,
    r2_score,
    root_mean_squared_error,
)

from zootrain.ml import forest_walk, label_metrics
from zootrain.ml.datasets import Task

FORESTS = (RandomForestClassifier, ExtraTreesClassifier)


def evaluate(
    model: Any, X: np.ndarray, y: np.ndarray | None, *, task: Task, classes: np.ndarray | None
) -> dict[str, float]:
    """Classification: accuracy, f1_macro, log_loss (if the model has predict_proba).
    Regression: r2, rmse.
    Clustering models (whatever the dataset's task): inertia of the rows around
    the model's centres and, on a classification dataset, adjusted_rand of the
    clusters against the labels. y may be None for them.

    Values are plain finite floats; a metric that is undefined on this test set
    (e.g. r2 on a single row) is left out rather than reported as NaN.
    """
    if len(X) == 0:
        raise ValueError("cannot evaluate on an empty test set")
    if y is not None and len(X) != len(y):
        raise ValueError(f"X has {len(X)} rows but y has {len(y)}")
    with warnings.catch_warnings():
        # Undefined-metric warnings are handled by dropping non-finite values below.
        warnings.simplefilter("ignore")
        if isinstance(model, ClusterMixin):
            scores = _clustering(model, X, y if task == "classification" else None)
        elif y is None:
            raise ValueError("y is needed to evaluate a classifier or regressor")
        elif task == "classification":
            scores = _classification(model, X, y, classes)
        else:
            pred = forest_walk.predict(model, X)
            scores = {"r2": r2_score(y, pred), "rmse": root_mean_squared_error(y, pred)}
    return {name: float(v) for name, v in scores.items() if math.isfinite(float(v))}


def _clustering(model: Any, X: np.ndarray, labels: np.ndarray | None) -> dict[str, Any]:
    # score() is the negated sum of squared distances to the closest centre.
    scores: dict[str, Any] = {"inertia": -model.score(X)}
    if labels is not None:
        scores["adjusted_rand"] = adjusted_rand_score(labels, model.predict(X))
    return scores


def _classification(
    model: Any, X: np.ndarray, y: np.ndarray, classes: np.ndarray | None
) -> dict[str, Any]:
    proba = (
        np.asarray(forest_walk.predict_proba(model, X)) if hasattr(model, "predict_proba") else None
    )
    if proba is not None and proba.ndim == 2 and isinstance(model, FORESTS):
        # A forest's predict *is* the argmax of its predict_proba (scikit-learn's definition):
        # one pass over the trees instead of two, the larger part of evaluating a big forest.
        pred = labels_of(proba, model.classes_)
    else:
        pred = model.predict(X)
    return _classification_scores(y, pred, proba, np.asarray(model.classes_), classes)


def _classification_scores(
    y: np.ndarray,
    pred: np.ndarray,
    proba: np.ndarray | None,
    model_classes: np.ndarray,
    classes: np.ndarray | None,
) -> dict[str, Any]:
    # scikit-learn's definitions, computed from label counts (zootrain.ml.label_metrics says
    # why); scikit-learn itself for whatever those do not cover.
    f1 = label_metrics.f1_macro(y, pred)
    scores: dict[str, Any] = {
        "accuracy": label_metrics.accuracy(y, pred),
        # Macro over the labels present in y or the predictions: a class missing from
        # the test set would otherwise count as an F1 of zero.
        "f1_macro": f1_score(y, pred, average="macro", zero_division=0) if f1 is None else f1,
    }
    if proba is not None:
        labels = model_classes if classes is None else np.asarray(classes)
        over = _proba_over(model_classes, proba, labels)
        if over is not None and len(labels) >= 2:
            loss = label_metrics.log_loss(y, over, labels)
            scores["log_loss"] = log_loss(y, over, labels=labels) if loss is None else loss
    return scores


def labels_of(proba: np.ndarray, model_classes: Any) -> np.ndarray:
    """The labels a forest predicts from its probabilities (the first of tied classes, as
    ``predict`` takes)."""
    picked: np.ndarray = np.asarray(model_classes).take(np.argmax(proba, axis=1), axis=0)
    return picked


def evaluate_outputs(
    outputs: np.ndarray,
    y: np.ndarray,
    *,
    task: Task,
    model_classes: np.ndarray | None,
    classes: np.ndarray | None,
) -> dict[str, float]:
    """``evaluate`` of a forest from what it predicted for the held-out rows: its
    ``predict_proba`` (classification; ``model_classes``: its ``classes_``) or its ``predict``
    (regression). The same scores ``evaluate`` computes from the model, without the model."""
    if len(outputs) == 0:
        raise ValueError("cannot evaluate on an empty test set")
    if len(outputs) != len(y):
        raise ValueError(f"{len(outputs)} predictions but {len(y)} labels")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if task == "classification":
            assert model_classes is not None
            pred = labels_of(outputs, model_classes)
            scores = _classification_scores(y, pred, outputs, np.asarray(model_classes), classes)
        else:
            scores = {"r2": r2_score(y, outputs), "rmse": root_mean_squared_error(y, outputs)}
    return {name: float(v) for name, v in scores.items() if math.isfinite(float(v))}


def _proba_over(
    model_classes: np.ndarray, proba: np.ndarray, labels: np.ndarray
) -> np.ndarray | None:
    """Probabilities over ``model_classes`` with columns in ``labels`` order (zeros for labels
    the model lacks)."""
    if np.array_equal(model_classes, labels):
        return proba
    if not np.isin(model_classes, labels).all():
        return None
    out = np.zeros((len(proba), len(labels)), dtype=np.float64)
    out[:, np.searchsorted(labels, model_classes)] = proba
    return out


def predictions(model: Any, X: np.ndarray) -> np.ndarray:
    """The model's predicted labels (a forest's from one pass over its trees, as ``evaluate``)."""
    if isinstance(model, FORESTS):
        return labels_of(np.asarray(forest_walk.predict_proba(model, X)), model.classes_)
    return np.asarray(model.predict(X))


def per_class(y: np.ndarray, pred: np.ndarray, classes: np.ndarray | None) -> list[dict[str, Any]]:
    """Precision, recall, F1 and support of every class on held-out labels ``y``.

    ``classes``: the job's classes (every label seen in its data), so that a class the model
    never predicts, or that the held-out rows lack, still has its row (zeros, not a gap).
    Plain JSON values: the labels as Python scalars, as the version's ``classes`` are.
    """
    labels = np.unique(np.concatenate([y, pred])) if classes is None else np.asarray(classes)
    found = label_metrics.counts(y, pred, labels)
    if found is None:
        precision, recall, f1, support = precision_recall_fscore_support(
            y, pred, labels=labels, average=None, zero_division=0
        )
    else:
        (precision, recall, f1), support = label_metrics.precision_recall_f1(found), found.support
    return [
        {
            "label": label.item() if isinstance(label, np.generic) else label,
            "precision": float(p),
            "recall": float(r),
            "f1": float(f),
            "support": int(s),
        }
        for label, p, r, f, s in zip(labels, precision, recall, f1, support, strict=True)
    ]
