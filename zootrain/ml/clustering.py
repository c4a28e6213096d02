"""k-means: shards cluster their rows, the merge clusters the shards' centroids.

Each shard centroid stands for the rows assigned to it, so a k-means over all
shards' centroids weighted by those cluster sizes approximates k-means over all
rows (it is exact for the objective "move every row with its shard centroid").
The target is never used for fitting; it only scores the clustering.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, clone

MERGE_N_INIT = 10
"""Minimum k-means restarts when clustering the shards' centroids."""


def fit_kmeans(model: Any, X: np.ndarray, y: np.ndarray | None, classes: np.ndarray | None) -> None:
    del y, classes
    if len(X) < model.n_clusters:
        raise ValueError(
            f"kmeans with n_clusters={model.n_clusters} needs at least that many rows per "
            f"shard, but this shard has {len(X)}; use fewer shards or clusters"
        )
    model.fit(X)
    # The merge's weights: how many of the shard's rows each centroid stands for.
    model.cluster_sizes_ = np.bincount(model.labels_, minlength=model.n_clusters).astype(np.float64)


def merge_centroids(models: list[BaseEstimator], rows: list[int]) -> BaseEstimator:
    """Weighted k-means over every shard's centroids (weights: cluster sizes).

    The merged model is a fitted KMeans with the shards' parameters (seeded by
    shard 0's random_state). Its inertia_ is the within-shard inertia plus the
    weighted inertia of the centroids around the merged centres: the exact
    inertia of assigning each row to the merged centre of its shard centroid, so
    an upper bound on the merged centres' inertia over all training rows. labels_
    is dropped: the merge never sees the training rows.
    """
    shards: list[Any] = list(models)
    first = shards[0]
    for i, (model, n) in enumerate(zip(shards, rows, strict=True)):
        sizes: Any = getattr(model, "cluster_sizes_", None)
        if sizes is None:
            raise ValueError(f"model {i} has no cluster_sizes_ (fit it with fit_shard)")
        if sizes.sum() != n:
            raise ValueError(f"model {i} clustered {sizes.sum():g} rows but rows[{i}] is {n}")
    if len({m.n_clusters for m in shards}) != 1:
        raise ValueError("shard models have different n_clusters")
    centres = np.concatenate([m.cluster_centers_ for m in shards])
    weights = np.concatenate([m.cluster_sizes_ for m in shards])
    # Empty clusters carry no rows; leaving them out keeps them from seeding a centre.
    keep = weights > 0

    merged: Any = clone(first)
    # Restarts on S x k weighted points cost next to nothing and make the merge less
    # dependent on one seeding; the merged model keeps the job's n_init afterwards.
    n_init = first.n_init if isinstance(first.n_init, int) else 1
    merged.set_params(n_init=max(n_init, MERGE_N_INIT))
    merged.fit(centres[keep], sample_weight=weights[keep])
    merged.set_params(n_init=first.n_init)
    merged.inertia_ = float(merged.inertia_ + sum(m.inertia_ for m in shards))
    merged.cluster_sizes_ = np.bincount(
        merged.labels_, weights=weights[keep], minlength=merged.n_clusters
    )
    del merged.labels_
    return merged
