"""Which training rows each shard gets.

Workers compute their own shard independently, so the assignment must be a pure
function of (n_rows, shards, seed, and for "stratified" the labels): no worker ever
sees another worker's indices.
"""

from __future__ import annotations

import numpy as np

# The strategies and the check of one against a job (pure) live in zootrain.spec.
from zootrain.spec import MAX_SEED as MAX_SEED
from zootrain.spec import STRATEGIES as STRATEGIES
from zootrain.spec import Strategy as Strategy
from zootrain.spec import check_partition as check_partition


def shard_sizes(n_rows: int, shards: int) -> list[int]:
    """Rows per shard: as equal as possible, the first n_rows % shards get one extra.

    This is the size of every shard under the disjoint strategies (all but "replicate").
    """
    _check_counts(n_rows, shards)
    base, extra = divmod(n_rows, shards)
    return [base + 1 if i < extra else base for i in range(shards)]


def shard_rows(
    n_rows: int,
    shards: int,
    index: int,
    strategy: Strategy,
    seed: int,
    *,
    y: np.ndarray | None = None,
) -> np.ndarray:
    """Sorted int64 row indices of shard `index`.

    `range` gives contiguous blocks; `random` cuts a seeded permutation into blocks,
    which matters when the rows are ordered (e.g. by class or by time); `stratified`
    (needs the labels `y`) deals every class out evenly, so each shard holds each class
    in proportion (per class, shard counts differ by at most one). For these three
    the shards are disjoint and cover range(n_rows) exactly, with shard_sizes() rows.
    `replicate` gives every shard all rows, for ensembles whose shards differ by seed.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; expected one of {list(STRATEGIES)}")
    if strategy == "replicate":
        _check_index(index, shards)
        if n_rows < 1:
            raise ValueError(f"cannot replicate {n_rows} rows: every shard needs a row")
        return np.arange(n_rows, dtype=np.int64)

    _check_counts(n_rows, shards)
    _check_index(index, shards)
    if strategy == "range":
        sizes = shard_sizes(n_rows, shards)
        start = sum(sizes[:index])
        return np.arange(start, start + sizes[index], dtype=np.int64)

    if not 0 <= seed <= MAX_SEED:
        raise ValueError(f"seed must be in [0, {MAX_SEED}], got {seed}")
    # The legacy RandomState stream is frozen by NumPy's compatibility policy
    # (NEP 19), unlike Generator's; workers on different NumPy versions must
    # still agree on the permutation.
    perm = np.random.RandomState(seed).permutation(n_rows)
    if strategy == "random":
        sizes = shard_sizes(n_rows, shards)
        start = sum(sizes[:index])
        order = perm[start : start + sizes[index]]
    else:
        order = _stratified_order(perm, _labels(y, n_rows))[index::shards]
    return np.sort(order).astype(np.int64, copy=False)


def _stratified_order(perm: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Rows grouped by class (in sorted label order), shuffled within each class.

    Dealing this order out round-robin (shard i takes positions i, i+S, ...) gives each
    shard floor or ceil of n_c/S rows of every class c, and - because the dealing runs
    on across class boundaries - total sizes equal to shard_sizes().
    """
    _, codes = np.unique(y, return_inverse=True)
    # Stable, so rows of one class keep their seeded random order.
    return perm[np.argsort(codes[perm], kind="stable")]


def _labels(y: np.ndarray | None, n_rows: int) -> np.ndarray:
    if y is None:
        raise ValueError("strategy 'stratified' needs the class labels: pass y=")
    labels = np.asarray(y)
    if labels.ndim != 1 or len(labels) != n_rows:
        raise ValueError(
            f"y must be a 1-d array with one label per row ({n_rows}), got shape {labels.shape}"
        )
    return labels


def _check_index(index: int, shards: int) -> None:
    if shards < 1:
        raise ValueError(f"shards must be at least 1, got {shards}")
    if not 0 <= index < shards:
        raise ValueError(f"shard index must be in [0, {shards}), got {index}")


def _check_counts(n_rows: int, shards: int) -> None:
    if shards < 1:
        raise ValueError(f"shards must be at least 1, got {shards}")
    if shards > n_rows:
        raise ValueError(
            f"cannot split {n_rows} rows into {shards} shards: every shard needs a row"
        )
