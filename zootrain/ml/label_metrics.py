"""Classification metrics from label counts, as scikit-learn defines them, without its checks.

scikit-learn's ``accuracy_score``, ``f1_score``, ``precision_recall_fscore_support`` and
``log_loss`` first work out what kind of target they were given (``type_of_target``: is it
multilabel, multiclass, continuous? is it a dataframe?) and validate every array, several times
over: for the held-out rows of a small job that is about ten times the arithmetic, and a tiny
shard's evaluation and its merge's per-class report paid it on every task (py-spy put a third
of a tiny task's time in a training child there). Here the inputs are known: 1-d arrays of the
job's labels and a forest's probabilities over its sorted classes. The formulas are
scikit-learn's own (``zero_division=0``; macro F1 over the labels present in either array;
probabilities clipped to [eps, 1 - eps]); tests/unit/test_label_metrics.py holds them to
scikit-learn's results. Anything outside what they cover (a label missing from ``labels``)
returns None, and the caller asks scikit-learn.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Counts(NamedTuple):
    """Per label: true positives, rows predicted as it, rows that are it (its support)."""

    true_positive: np.ndarray
    predicted: np.ndarray
    support: np.ndarray


def codes(values: np.ndarray, labels: np.ndarray) -> np.ndarray | None:
    """Where each of ``values`` is in the sorted ``labels``; None if one is not there."""
    if len(labels) == 0:
        return None if len(values) else np.zeros(0, dtype=np.intp)
    try:
        found = np.minimum(np.searchsorted(labels, values), len(labels) - 1)
        same = np.asarray(labels[found] == values)
    except TypeError:  # labels and values that do not compare (mixed types)
        return None
    if same.shape != np.shape(values) or not same.all():
        return None
    return found


def counts(y: np.ndarray, pred: np.ndarray, labels: np.ndarray) -> Counts | None:
    """The counts of ``labels`` (sorted, unique) in true labels ``y`` and predictions
    ``pred``; None if either holds a label not in ``labels``."""
    true, guessed = codes(y, labels), codes(pred, labels)
    if true is None or guessed is None or len(true) != len(guessed):
        return None
    k = len(labels)
    return Counts(
        np.bincount(true[true == guessed], minlength=k),
        np.bincount(guessed, minlength=k),
        np.bincount(true, minlength=k),
    )


def _divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    # scikit-learn's _prf_divide with zero_division=0: 0 where the denominator is 0.
    empty = denominator == 0
    out: np.ndarray = numerator / np.where(empty, 1, denominator)
    out[empty] = 0.0
    return out


def precision_recall_f1(c: Counts) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per label, as ``precision_recall_fscore_support(average=None, zero_division=0)``."""
    tp = c.true_positive.astype(np.float64)
    # F1 as scikit-learn computes it: (1 + 1) * tp / (1 * support + predicted).
    denominator = c.support.astype(np.float64) + c.predicted.astype(np.float64)
    return _divide(tp, c.predicted), _divide(tp, c.support), _divide(2.0 * tp, denominator)


def accuracy(y: np.ndarray, pred: np.ndarray) -> float:
    return float(np.mean(np.asarray(y) == np.asarray(pred)))


def f1_macro(y: np.ndarray, pred: np.ndarray) -> float | None:
    """``f1_score(average="macro", zero_division=0)``: the mean over the labels in either."""
    try:
        labels = np.union1d(y, pred)
    except TypeError:
        return None
    found = counts(y, pred, labels)
    if found is None:
        return None
    return float(np.mean(precision_recall_f1(found)[2]))


def log_loss(y: np.ndarray, proba: np.ndarray, labels: np.ndarray) -> float | None:
    """``log_loss(y, proba, labels=labels)`` for probabilities whose columns are ``labels``."""
    true = codes(y, labels)
    if true is None or proba.ndim != 2 or proba.shape != (len(true), len(labels)):
        return None
    eps = np.finfo(np.float64).eps
    picked = np.clip(np.asarray(proba, dtype=np.float64), eps, 1 - eps)[np.arange(len(true)), true]
    return float(np.mean(-np.log(picked)))
