from __future__ import annotations

from typing import Any, get_args

import numpy as np
import pytest
from pydantic import ValidationError

from zootrain.ml.datasets import (
    BuiltinDataset,
    BuiltinName,
    SyntheticDataset,
    Task,
    dataset_classes,
    dataset_shape,
    dataset_task,
    load_dataset,
    parse_dataset,
    split_dataset,
)


@pytest.mark.parametrize("name", get_args(BuiltinName))
def test_each_builtin_loads_with_its_declared_shape_and_task(name: str) -> None:
    spec = parse_dataset({"kind": "builtin", "name": name})
    X, y = load_dataset(spec)
    assert X.dtype == np.float64
    assert (X.shape[0], X.shape[1]) == dataset_shape(spec)
    assert len(y) == len(X)
    task = dataset_task(spec)
    assert task == ("regression" if name == "diabetes" else "classification")
    classes = len(np.unique(y)) if task == "classification" else None
    assert dataset_classes(spec) == classes


@pytest.mark.parametrize("task", get_args(Task))
def test_synthetic_shape_task_and_determinism(task: Task) -> None:
    spec = SyntheticDataset(kind="synthetic", task=task, n_samples=200, n_features=7)
    X, y = load_dataset(spec)
    assert X.shape == (200, 7) == dataset_shape(spec)
    assert X.dtype == np.float64
    assert dataset_task(spec) == task
    X2, y2 = load_dataset(spec)
    assert np.array_equal(X, X2)
    assert np.array_equal(y, y2)
    X3, _ = load_dataset(spec.model_copy(update={"random_state": 1}))
    assert not np.array_equal(X, X3)


def test_synthetic_classification_classes() -> None:
    spec = SyntheticDataset(kind="synthetic", task="classification", n_samples=300, n_classes=5)
    _, y = load_dataset(spec)
    assert np.unique(y).tolist() == [0, 1, 2, 3, 4]
    assert dataset_classes(spec) == 5
    assert spec.informative == 10


def test_blobs_are_a_classification_dataset_labelled_by_blob() -> None:
    spec = parse_dataset(
        {
            "kind": "synthetic",
            "task": "blobs",
            "n_samples": 300,
            "n_features": 3,
            "n_classes": 4,
            "cluster_std": 0.5,
            "random_state": 2,
        }
    )
    assert isinstance(spec, SyntheticDataset)
    assert dataset_task(spec) == "classification"
    assert dataset_shape(spec) == (300, 3)
    X, y = load_dataset(spec)
    assert X.shape == (300, 3)
    assert X.dtype == np.float64
    assert np.unique(y).tolist() == [0, 1, 2, 3]
    assert dataset_classes(spec) == 4
    X2, y2 = load_dataset(spec)
    assert np.array_equal(X, X2)
    assert np.array_equal(y, y2)
    # Each blob is a tight cloud: within-blob spread is close to cluster_std.
    for label in range(4):
        assert np.allclose(X[y == label].std(axis=0), 0.5, atol=0.15)
    wide, _ = load_dataset(spec.model_copy(update={"cluster_std": 3.0}))
    assert not np.array_equal(X, wide)
    assert SyntheticDataset(kind="synthetic", task="blobs", n_samples=50).cluster_std == 1.0


def test_spec_roundtrips_through_json() -> None:
    for spec in (
        SyntheticDataset(kind="synthetic", task="blobs", n_samples=60, cluster_std=2.0),
        SyntheticDataset(kind="synthetic", task="regression", n_samples=50, noise=2.5),
        SyntheticDataset(kind="synthetic", task="classification", n_samples=50, n_classes=3),
        BuiltinDataset(kind="builtin", name="wine"),
    ):
        assert parse_dataset(spec.model_dump(mode="json")) == spec


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"kind": "builtin", "name": "mnist"}, "name"),
        ({"kind": "builtin", "name": "iris", "extra": 1}, "extra"),
        ({"kind": "url", "name": "iris"}, "kind"),
        ({"kind": "synthetic", "task": "classification", "n_samples": 10}, "n_samples"),
        ({"kind": "synthetic", "task": "regression", "n_samples": 2_000_001}, "n_samples"),
        (
            {"kind": "synthetic", "task": "regression", "n_samples": 50, "n_features": 501},
            "n_features",
        ),
        (
            {
                "kind": "synthetic",
                "task": "regression",
                "n_samples": 50,
                "n_features": 5,
                "n_informative": 6,
            },
            r"n_informative \(6\) must be <= n_features \(5\)",
        ),
        (
            {
                "kind": "synthetic",
                "task": "classification",
                "n_samples": 50,
                "n_features": 2,
                "n_classes": 3,
            },
            r"n_classes \* 2 clusters per class = 6 <= 2\*\*n_informative = 4",
        ),
        (
            {"kind": "synthetic", "task": "regression", "n_samples": 50, "n_classes": 3},
            "only applies to task='classification'",
        ),
        (
            {"kind": "synthetic", "task": "classification", "n_samples": 50, "noise": 1.0},
            "only applies to task='regression'",
        ),
        (
            {"kind": "synthetic", "task": "regression", "n_samples": 50, "random_state": -1},
            "random_state",
        ),
        (
            {"kind": "synthetic", "task": "classification", "n_samples": 50, "cluster_std": 2},
            "cluster_std only applies to task='blobs'",
        ),
        (
            {"kind": "synthetic", "task": "blobs", "n_samples": 50, "cluster_std": 0},
            "cluster_std",
        ),
        (
            {"kind": "synthetic", "task": "blobs", "n_samples": 50, "noise": 1.0},
            "noise only applies to task='regression'",
        ),
        (
            {"kind": "synthetic", "task": "blobs", "n_samples": 50, "n_informative": 2},
            "n_informative does not apply to task='blobs'",
        ),
        ({"kind": "synthetic", "task": "clusters", "n_samples": 50}, "task"),
        (
            {"kind": "synthetic", "task": "regression", "n_samples": 2_000_000, "n_features": 500},
            "exceeds the limit",
        ),
    ],
)
def test_validation_errors(data: dict[str, Any], match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        parse_dataset(data)


def test_split_is_deterministic_and_stratified() -> None:
    X, y = load_dataset(BuiltinDataset(kind="builtin", name="iris"))
    a = split_dataset(X, y, task="classification", test_size=0.2, seed=3)
    b = split_dataset(X, y, task="classification", test_size=0.2, seed=3)
    c = split_dataset(X, y, task="classification", test_size=0.2, seed=4)
    assert np.array_equal(a.X_test, b.X_test)
    assert np.array_equal(a.y_train, b.y_train)
    assert not np.array_equal(a.X_test, c.X_test)
    assert (len(a.X_train), len(a.X_test)) == (120, 30)
    assert np.bincount(a.y_test).tolist() == [10, 10, 10]
    assert a.classes is not None
    assert a.classes.tolist() == [0, 1, 2]


def test_classes_come_from_the_whole_dataset() -> None:
    # Class 9 has a single row, so it cannot be in both halves; plain split is used
    # and classes still lists it.
    X = np.arange(40, dtype=np.float64).reshape(20, 2)
    y = np.array([0] * 10 + [1] * 9 + [9])
    for seed in range(5):
        split = split_dataset(X, y, task="classification", test_size=0.25, seed=seed)
        assert split.classes is not None
        assert split.classes.tolist() == [0, 1, 9]
        assert len(split.X_train) + len(split.X_test) == 20


def test_regression_split_has_no_classes() -> None:
    X, y = load_dataset(BuiltinDataset(kind="builtin", name="diabetes"))
    split = split_dataset(X, y, task="regression", test_size=0.1, seed=0)
    assert split.classes is None
    assert len(split.X_test) == 45


@pytest.mark.parametrize("test_size", [0.0, 1.0, -0.1, 0.999])
def test_split_rejects_bad_test_size(test_size: float) -> None:
    X = np.zeros((10, 2))
    y = np.arange(10) % 2
    with pytest.raises(ValueError, match="test_size"):
        split_dataset(X, y, task="classification", test_size=test_size, seed=0)
