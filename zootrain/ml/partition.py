"""Which training rows each shard gets.

Workers compute their own shard independently, so the assignment must be a pure
function of (n_rows, shards, seed): no worker ever sees another worker's indices.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

Strategy = Literal["random", "range"]
STRATEGIES: tuple[Strategy, ...] = ("random", "range")
MAX_SEED = 2**32 - 1


def shard_sizes(n_rows: int, shards: int) -> list[int]:
    """Rows per shard: as equal as possible, the first n_rows % shards get one extra."""
    _check_counts(n_rows, shards)
    base, extra = divmod(n_rows, shards)
    return [base + 1 if i < extra else base for i in range(shards)]


def shard_rows(n_rows: int, shards: int, index: int, strategy: Strategy, seed: int) -> np.ndarray:
    """Sorted int64 row indices of shard `index`.

    Over all indexes the shards are disjoint and cover range(n_rows) exactly.
    `range` gives contiguous blocks; `random` cuts a seeded permutation into blocks,
    which matters when the rows are ordered (e.g. by class or by time).
    """
    _check_counts(n_rows, shards)
    if not 0 <= index < shards:
        raise ValueError(f"shard index must be in [0, {shards}), got {index}")
    sizes = shard_sizes(n_rows, shards)
    start = sum(sizes[:index])
    stop = start + sizes[index]

    if strategy == "range":
        return np.arange(start, stop, dtype=np.int64)
    if strategy == "random":
        if not 0 <= seed <= MAX_SEED:
            raise ValueError(f"seed must be in [0, {MAX_SEED}], got {seed}")
        # The legacy RandomState stream is frozen by NumPy's compatibility policy
        # (NEP 19), unlike Generator's; workers on different NumPy versions must
        # still agree on the permutation.
        perm = np.random.RandomState(seed).permutation(n_rows)
        return np.sort(perm[start:stop]).astype(np.int64, copy=False)
    raise ValueError(f"unknown strategy {strategy!r}; expected one of {list(STRATEGIES)}")


def _check_counts(n_rows: int, shards: int) -> None:
    if shards < 1:
        raise ValueError(f"shards must be at least 1, got {shards}")
    if shards > n_rows:
        raise ValueError(
            f"cannot split {n_rows} rows into {shards} shards: every shard needs a row"
        )
