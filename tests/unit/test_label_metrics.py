"""zootrain.ml.label_metrics gives scikit-learn's own classification metrics (to 1e-12), and
says so (None) whenever it cannot."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, log_loss, precision_recall_fscore_support

from zootrain.ml import label_metrics


def _cases() -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """(y, pred, labels, proba over labels): binary, multiclass, classes missing from y or
    from the predictions, string labels, certain and tied probabilities."""
    rng = np.random.default_rng(0)
    cases = []
    for k, n in [(2, 1), (2, 30), (3, 30), (5, 200), (10, 50), (4, 3)]:
        labels = np.arange(k) * 3  # not 0..k-1: codes must be looked up
        for present in (k, max(1, k - 2)):
            y = rng.choice(labels[:present], n)
            proba = rng.dirichlet(np.ones(k), n)
            proba[: n // 3] = np.round(proba[: n // 3])  # some 0/1 rows (clipped by log_loss)
            proba[: n // 3] /= np.maximum(proba[: n // 3].sum(axis=1, keepdims=True), 1)
            proba[proba.sum(axis=1) == 0, 0] = 1.0
            pred = labels.take(np.argmax(proba, axis=1))
            cases.append((y, pred, labels, proba))
    names = np.array(["ant", "bee", "cat"], dtype=object)
    y = rng.choice(names, 40)
    proba = rng.dirichlet(np.ones(3), 40)
    cases.append((y, names.take(np.argmax(proba, axis=1)), names, proba))
    return cases


@pytest.mark.parametrize("case", range(len(_cases())))
def test_the_metrics_are_scikit_learns(case: int) -> None:
    y, pred, labels, proba = _cases()[case]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert abs(label_metrics.accuracy(y, pred) - accuracy_score(y, pred)) <= 1e-12
        f1 = label_metrics.f1_macro(y, pred)
        assert f1 is not None
        assert abs(f1 - f1_score(y, pred, average="macro", zero_division=0)) <= 1e-12
        if len(labels) >= 2:
            loss = label_metrics.log_loss(y, proba, labels)
            assert loss is not None
            assert abs(loss - log_loss(y, proba, labels=labels)) <= 1e-12
        found = label_metrics.counts(y, pred, labels)
        assert found is not None
        ours = (*label_metrics.precision_recall_f1(found), found.support)
        theirs = precision_recall_fscore_support(
            y, pred, labels=labels, average=None, zero_division=0
        )
    for a, b in zip(ours, theirs, strict=True):
        assert np.abs(np.asarray(a, dtype=float) - np.asarray(b, dtype=float)).max() <= 1e-12


def test_labels_it_does_not_know_are_left_to_scikit_learn() -> None:
    labels = np.array([0, 1, 2])
    y, pred = np.array([0, 1, 7]), np.array([0, 1, 1])
    assert label_metrics.counts(y, pred, labels) is None
    assert label_metrics.log_loss(y, np.full((3, 3), 1 / 3), labels) is None
    assert label_metrics.log_loss(np.array([0, 1]), np.full((3, 3), 1 / 3), labels) is None
    mixed = np.array([1, "a"], dtype=object)
    assert label_metrics.f1_macro(mixed, mixed[::-1]) is None
    assert label_metrics.codes(np.array([1]), np.array([])) is None
