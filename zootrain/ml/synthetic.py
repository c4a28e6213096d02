"""Synthetic datasets generated block by block, so that a shard generates only its own rows.

scikit-learn's ``make_classification``, ``make_regression`` and ``make_blobs`` draw the whole
dataset from one random stream: row 1,999,999 cannot be produced without the 1,999,999 before it.
Here the dataset's *shape* — class centroids and their covariance transforms, the regression
coefficients, the blob centres, the order of the columns — is drawn once from the dataset's
``random_state``, and the rows come in blocks of ``BLOCK_ROWS``, each drawn from its own stream
seeded by (random_state, block number). Any block can be made alone and is the same on every
machine, so the rows a shard needs are made by making the blocks that hold them; the blocks
together are one dataset. Labels have a stream of their own per block, so every label can be
made without any feature (a shard needs all labels to place the stratified held-out split).

The recipes follow scikit-learn's (Guyon's hypercube design with ``n_clusters_per_class = 2``,
``class_sep = 1``, ``flip_y = 0.01``, no redundant or repeated features; a sparse linear model
with Gaussian noise; isotropic Gaussian blobs), but the values differ from what those functions
return for the same seed: jobs submitted before this generator train on other (equally
distributed) rows. Streams are NumPy's legacy ``RandomState``, frozen across versions (NEP 19).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from zootrain.ml.datasets import CLUSTERS_PER_CLASS, SyntheticDataset

BLOCK_ROWS = 8192
CLASS_SEP = 1.0
FLIP_Y = 0.01
_SHAPE, _LABELS, _VALUES = 0, 1, 2


def _stream(seed: int, *parts: int) -> np.random.RandomState:
    return np.random.RandomState([seed & 0xFFFFFFFF, *parts])


@dataclass(frozen=True)
class Generator:
    spec: SyntheticDataset

    @property
    def n_rows(self) -> int:
        return self.spec.n_samples

    @property
    def n_blocks(self) -> int:
        return -(-self.n_rows // BLOCK_ROWS)

    def block_rows(self, block: int) -> int:
        return min(BLOCK_ROWS, self.n_rows - block * BLOCK_ROWS)

    # -- the dataset's shape, from its seed ------------------------------------------------------

    @cached_property
    def _shape(self) -> dict[str, np.ndarray]:
        spec = self.spec
        rng = _stream(spec.random_state, _SHAPE)
        shape: dict[str, np.ndarray] = {"columns": rng.permutation(spec.n_features)}
        if spec.task == "classification":
            k = spec.informative
            clusters = spec.n_classes * CLUSTERS_PER_CLASS
            # Distinct vertices of the k-cube, as in make_classification.
            vertices = _distinct_vertices(rng, k, clusters)
            shape["centroids"] = (2 * vertices - 1) * CLASS_SEP
            shape["transforms"] = 2 * rng.rand(clusters, k, k) - 1
        elif spec.task == "regression":
            coef = np.zeros(spec.n_features)
            coef[: spec.informative] = 100 * rng.rand(spec.informative)
            shape["coef"] = coef
        else:
            shape["centers"] = rng.uniform(-10.0, 10.0, size=(spec.n_classes, spec.n_features))
        return shape

    # -- one block -------------------------------------------------------------------------------

    def _groups(self) -> int:
        spec = self.spec
        if spec.task == "classification":
            return spec.n_classes * CLUSTERS_PER_CLASS
        return spec.n_classes

    def _labels(self, block: int) -> tuple[np.ndarray, np.ndarray]:
        """(labels, cluster of each row) of a block, from the block's label stream."""
        spec = self.spec
        if spec.task == "regression":
            raise ValueError("a regression dataset has no labels")
        rows = self.block_rows(block)
        rng = _stream(spec.random_state, _LABELS, block)
        # Balanced, as make_classification / make_blobs divide their samples, then shuffled.
        clusters = rng.permutation(np.arange(rows) % self._groups()).astype(np.int64)
        if spec.task == "blobs":
            return clusters, clusters
        labels = clusters % spec.n_classes  # cluster c belongs to class c mod n_classes
        flip = rng.rand(rows) < FLIP_Y
        labels[flip] = rng.randint(spec.n_classes, size=int(flip.sum()))
        return labels, clusters

    def block_labels(self, block: int) -> np.ndarray:
        return self._labels(block)[0]

    def block(self, block: int) -> tuple[np.ndarray, np.ndarray]:
        """(X, y) of one block."""
        spec = self.spec
        rows = self.block_rows(block)
        rng = _stream(spec.random_state, _VALUES, block)
        shape = self._shape
        if spec.task == "regression":
            X = rng.standard_normal((rows, spec.n_features))
            y = X @ shape["coef"]
            if spec.noise > 0.0:
                y = y + rng.normal(scale=spec.noise, size=rows)
        elif spec.task == "classification":
            k = spec.informative
            X = rng.standard_normal((rows, spec.n_features))
            y, cluster = self._labels(block)
            informative = X[:, :k]
            for c in range(len(shape["centroids"])):
                members = cluster == c
                informative[members] = (
                    informative[members] @ shape["transforms"][c] + shape["centroids"][c]
                )
        else:
            y = self.block_labels(block)
            X = shape["centers"][y] + spec.cluster_std * rng.standard_normal(
                (rows, spec.n_features)
            )
        return np.ascontiguousarray(X[:, shape["columns"]]), y

    # -- rows of the dataset ---------------------------------------------------------------------

    def labels(self) -> np.ndarray:
        """Every row's label (classification and blobs), made without the features."""
        out = np.empty(self.n_rows, dtype=np.int16)
        for b in range(self.n_blocks):
            out[b * BLOCK_ROWS : b * BLOCK_ROWS + self.block_rows(b)] = self.block_labels(b)
        return out

    def rows(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(X, y) of the rows at sorted ``positions``, making only the blocks that hold them."""
        positions = np.asarray(positions, dtype=np.int64)
        X = np.empty((len(positions), self.spec.n_features), dtype=np.float64)
        y: np.ndarray | None = None
        blocks = positions // BLOCK_ROWS
        for b in np.unique(blocks):
            lo, hi = np.searchsorted(blocks, [b, b + 1])
            block_X, block_y = self.block(int(b))
            local = positions[lo:hi] - int(b) * BLOCK_ROWS
            X[lo:hi] = block_X[local]
            if y is None:
                y = np.empty(len(positions), dtype=block_y.dtype)
            y[lo:hi] = block_y[local]
        if y is None:
            y = np.empty(0, dtype=np.float64 if self.spec.task == "regression" else np.int64)
        return X, y

    def all_rows(self) -> tuple[np.ndarray, np.ndarray]:
        return self.rows(np.arange(self.n_rows))


def _distinct_vertices(rng: np.random.RandomState, k: int, count: int) -> np.ndarray:
    """``count`` distinct vertices of the k-dimensional unit hypercube, as 0/1 rows."""
    if k <= 16:
        picked = rng.choice(2**k, size=count, replace=False)
        return ((picked[:, None] >> np.arange(k)) & 1).astype(np.float64)
    seen: set[bytes] = set()
    rows: list[np.ndarray] = []
    while len(rows) < count:
        vertex = rng.randint(0, 2, size=k)
        key = vertex.tobytes()
        if key not in seen:
            seen.add(key)
            rows.append(vertex)
    return np.asarray(rows, dtype=np.float64)
