from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import BaseEstimator
from sklearn.cluster import KMeans

from zootrain.ml.algorithms import check_task
from zootrain.ml.datasets import (
    BuiltinDataset,
    Split,
    SyntheticDataset,
    dataset_task,
    load_dataset,
    split_dataset,
)
from zootrain.ml.merge import merge_models
from zootrain.ml.scoring import evaluate
from zootrain.ml.training import fit_shard, fit_shards

BLOBS = SyntheticDataset(
    kind="synthetic", task="blobs", n_samples=1200, n_features=4, n_classes=5, cluster_std=0.8
)


@pytest.fixture(scope="module")
def blobs() -> Split:
    X, y = load_dataset(BLOBS)
    return split_dataset(X, y, task=dataset_task(BLOBS), test_size=0.25, seed=0)


def _shards(split: Split, shards: int, n_clusters: int) -> tuple[list[BaseEstimator], list[int]]:
    params = {"n_clusters": n_clusters}
    return fit_shards("kmeans", params, split, shards, "random", job_seed=4, partition_seed=2)


def test_merge_finds_the_blobs(blobs: Split) -> None:
    models, rows = _shards(blobs, shards=4, n_clusters=5)
    merged = merge_models("kmeans", models, rows)
    assert isinstance(merged, KMeans)
    assert merged.cluster_centers_.shape == (5, 4)
    assert merged.n_init == models[0].n_init  # the job's params, not the merge's restarts
    assert not hasattr(merged, "labels_")  # the merge never sees training rows
    assert merged.cluster_sizes_.sum() == sum(rows)
    scores = evaluate(merged, blobs.X_test, blobs.y_test, task="classification", classes=None)
    assert set(scores) == {"inertia", "adjusted_rand"}
    assert scores["adjusted_rand"] > 0.99

    single = KMeans(n_clusters=5, random_state=0).fit(blobs.X_train)
    # Upper bound on the merged centres' inertia over the training rows, and close.
    true_inertia = -merged.score(blobs.X_train)
    assert true_inertia <= merged.inertia_ <= 1.05 * true_inertia
    assert true_inertia <= 1.01 * single.inertia_


def test_merge_is_a_weighted_kmeans_of_the_centroids(blobs: Split) -> None:
    models, rows = _shards(blobs, shards=3, n_clusters=5)
    for model, n in zip(models, rows, strict=True):
        assert np.array_equal(model.cluster_sizes_, np.bincount(model.labels_, minlength=5))
        assert model.cluster_sizes_.sum() == n
    merged = merge_models("kmeans", models, rows)
    centres = np.vstack([m.cluster_centers_ for m in models])
    weights = np.concatenate([m.cluster_sizes_ for m in models])
    nearest = merged.predict(centres)
    for k in range(5):
        # Each merged centre is the weighted mean of the shard centroids assigned to it.
        members = nearest == k
        expected = np.average(centres[members], axis=0, weights=weights[members])
        assert np.allclose(merged.cluster_centers_[k], expected, atol=1e-6)


def test_kmeans_fits_any_dataset_and_ignores_the_target() -> None:
    check_task("kmeans", "classification")
    check_task("kmeans", "regression")
    X, y = load_dataset(BuiltinDataset(kind="builtin", name="diabetes"))
    a = fit_shard("kmeans", {"n_clusters": 3}, X=X, y=y, classes=None, random_state=1)
    b = fit_shard(
        "kmeans", {"n_clusters": 3}, X=X, y=None, classes=np.array([0, 1]), random_state=1
    )
    assert np.array_equal(a.cluster_centers_, b.cluster_centers_)
    # No labels on a regression dataset: inertia only.
    assert set(evaluate(a, X, y, task="regression", classes=None)) == {"inertia"}
    assert set(evaluate(a, X, None, task="classification", classes=None)) == {"inertia"}


def test_too_few_rows_for_the_clusters() -> None:
    X = np.zeros((4, 2))
    with pytest.raises(ValueError, match="n_clusters=5 needs at least that many rows"):
        fit_shard("kmeans", {"n_clusters": 5}, X=X, y=None, classes=None, random_state=0)


def test_merge_errors(blobs: Split) -> None:
    models, rows = _shards(blobs, shards=2, n_clusters=3)
    with pytest.raises(ValueError, match=r"clustered \d+ rows but rows\[0\]"):
        merge_models("kmeans", models, [rows[0] + 1, rows[1]])
    other, _ = _shards(blobs, shards=2, n_clusters=4)
    with pytest.raises(ValueError, match="different n_clusters"):
        merge_models("kmeans", [models[0], other[1]], rows)
