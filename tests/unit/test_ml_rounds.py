"""Training in rounds, without ZooKeeper: the shards' sums against one machine's fit."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from sklearn.cluster import KMeans
from sklearn.datasets import load_breast_cancer, load_iris, load_wine, make_blobs
from sklearn.linear_model import LogisticRegression
from sklearn.linear_model._linear_loss import LinearModelLoss
from sklearn.preprocessing import StandardScaler

from zootrain.ml import round_steps as rounds


def _shards(n: int, parts: int, seed: int = 0) -> list[np.ndarray]:
    return np.array_split(np.random.default_rng(seed).permutation(n), parts)


def _run(
    algorithm: str,
    params: dict[str, Any],
    X: np.ndarray,
    y: np.ndarray,
    classes: np.ndarray | None,
    parts: int,
) -> tuple[Any, int, rounds.State]:
    """Every round as the workers run it, through pack/unpack as the bytes travel."""
    shards = _shards(len(X), parts)
    state = rounds.unpack(rounds.pack(rounds.start(algorithm, params, X[shards[0]], classes, 0)))
    for number in range(10_000):
        results = [
            rounds.unpack(rounds.pack(rounds.local(algorithm, params, X[s], y[s], classes, state)))
            for s in shards
        ]
        step = rounds.combine(algorithm, params, state, results)
        state = rounds.unpack(rounds.pack(step.state))
        if step.done:
            return rounds.model(algorithm, params, state, classes, 0), number + 1, state
    raise AssertionError("never converged")


@pytest.mark.parametrize("loader", [load_iris, load_wine])
def test_gradient_sum_equals_full_data_gradient(loader: Any) -> None:
    X, y = loader(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    classes = np.unique(y)
    w = np.random.default_rng(1).normal(size=len(classes) * (X.shape[1] + 1))
    parts = [rounds.logistic_local({}, X[s], y[s], classes, w) for s in _shards(len(X), 4)]
    total = np.sum([p["grad"] for p in parts], axis=0) / len(X)
    from sklearn._loss.loss import HalfMultinomialLoss

    full = LinearModelLoss(HalfMultinomialLoss(n_classes=len(classes)), fit_intercept=True)
    _, expected = full.loss_gradient(w, X, np.searchsorted(classes, y).astype(float), None, 0.0)
    np.testing.assert_allclose(total, expected, rtol=0, atol=1e-10)


@pytest.mark.parametrize(
    ("loader", "params"),
    [
        (load_iris, {"max_iter": 500}),
        (load_breast_cancer, {"C": 0.5, "max_iter": 500}),
        (load_wine, {"C": 2.0, "tol": 1e-6, "max_iter": 1000}),
    ],
)
def test_lbfgs_rounds_reach_scikit_learns_optimum(loader: Any, params: dict[str, Any]) -> None:
    X, y = loader(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    classes = np.unique(y)
    model, n_rounds, _ = _run("logistic_regression", params, X, y, classes, 4)
    one = LogisticRegression(**params).fit(X, y)
    scale = np.max(np.abs(one.coef_))
    np.testing.assert_allclose(model.coef_, one.coef_, rtol=0, atol=1e-6 * scale)
    np.testing.assert_allclose(model.intercept_, one.intercept_, rtol=0, atol=1e-6 * scale)
    assert (model.predict(X) == one.predict(X)).all()
    assert model.n_iter_[0] == one.n_iter_[0]
    assert n_rounds >= one.n_iter_[0]


@pytest.mark.parametrize("init", ["k-means++", "random"])
def test_lloyd_rounds_equal_kmeans_from_the_same_centroids(init: str) -> None:
    X, _ = make_blobs(n_samples=3000, centers=5, n_features=4, cluster_std=3.0, random_state=2)
    params = {"n_clusters": 5, "init": init, "max_iter": 300}
    model, _, state = _run("kmeans", params, X, np.zeros(len(X)), None, 4)
    one = KMeans(n_clusters=5, init=state["init"], n_init=1, max_iter=300, algorithm="lloyd")
    one.fit(X)
    assert model.inertia_ == pytest.approx(one.inertia_, rel=1e-6)
    np.testing.assert_allclose(
        np.sort(model.cluster_centers_, axis=0), np.sort(one.cluster_centers_, axis=0), atol=1e-6
    )
    assert model.n_iter_ == one.n_iter_
    assert (model.predict(X) == one.predict(X)).all()


def test_pack_refuses_nothing_it_wrote() -> None:
    state = {"x": np.arange(3.0), "meta": {"a": 1, "b": [1, 2]}}
    back = rounds.unpack(rounds.pack(state))
    assert back["meta"] == state["meta"]
    np.testing.assert_array_equal(back["x"], state["x"])


@pytest.mark.parametrize(
    ("name", "algorithm", "params", "slack"),
    [
        ("wine", "sgd_classifier", {}, 0.005),
        ("breast_cancer", "sgd_classifier", {"loss": "hinge"}, 0.005),
        ("diabetes", "sgd_regressor", {"max_iter": 200}, 0.01),
    ],
)
def test_sgd_mixing_is_within_the_goal_of_one_sgd_with_as_many_epochs(
    name: str, algorithm: str, params: dict[str, Any], slack: float
) -> None:
    from zootrain.ml.algorithms import build_estimator
    from zootrain.ml.datasets import BuiltinDataset, dataset_task, load_dataset, split_dataset
    from zootrain.ml.scoring import evaluate

    spec = BuiltinDataset(kind="builtin", name=name)
    X, y = load_dataset(spec)
    task = dataset_task(spec)
    split = split_dataset(X, y, task=task, test_size=0.2, seed=0)
    classes = None if task == "regression" else split.classes
    mixed, epochs = rounds.fit_in_rounds(
        algorithm, params, split.X_train, split.y_train, classes, 4, job_seed=0
    )
    one = build_estimator(algorithm, {**params, "max_iter": epochs, "tol": None}, 0)
    one.fit(split.X_train, split.y_train)
    metric = "accuracy" if task == "classification" else "r2"

    def score(model: Any) -> float:
        found = evaluate(model, split.X_test, split.y_test, task=task, classes=split.classes)
        return float(found[metric])

    assert score(mixed) >= score(one) - slack, (score(mixed), score(one), epochs)


def test_spec_chooses_rounds_per_family() -> None:
    from zootrain.spec import JobSpec

    def spec(**extra: Any) -> JobSpec:
        base = {"model_name": "m", "dataset": {"kind": "builtin", "name": "iris"}}
        return JobSpec.model_validate({**base, **extra})

    assert spec(algorithm="logistic_regression").rounds
    assert spec(algorithm="kmeans").rounds
    assert not spec(algorithm="logistic_regression", merge="average").rounds
    assert not spec(algorithm="sgd_classifier").rounds
    assert spec(algorithm="sgd_classifier", merge="rounds").rounds
    assert not spec(algorithm="random_forest_classifier").rounds
    for bad in (
        {"algorithm": "ridge", "merge": "rounds"},
        {"algorithm": "sgd_classifier", "merge": "rounds", "params": {"average": True}},
        {"algorithm": "kmeans", "merge": "rounds", "kind": "search"},
    ):
        with pytest.raises(ValueError, match="merge 'rounds'"):
            spec(**bad)
