from __future__ import annotations

import numpy as np
import pytest

from zootrain.ml.partition import Strategy, shard_rows, shard_sizes

STRATEGIES: list[Strategy] = ["random", "range"]


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize(("n_rows", "shards"), [(1, 1), (10, 3), (100, 7), (1000, 16), (5, 5)])
def test_shards_are_disjoint_and_cover_all_rows(
    strategy: Strategy, n_rows: int, shards: int
) -> None:
    parts = [shard_rows(n_rows, shards, i, strategy, seed=42) for i in range(shards)]
    joined = np.concatenate(parts)
    assert len(joined) == n_rows
    assert np.array_equal(np.sort(joined), np.arange(n_rows))
    for part in parts:
        assert part.dtype == np.int64
        assert np.all(np.diff(part) > 0)  # sorted, no duplicates


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_sizes_differ_by_at_most_one_and_match_shard_sizes(strategy: Strategy) -> None:
    sizes = shard_sizes(103, 10)
    assert sum(sizes) == 103
    assert max(sizes) - min(sizes) <= 1
    assert [len(shard_rows(103, 10, i, strategy, seed=1)) for i in range(10)] == sizes


def test_range_strategy_gives_contiguous_blocks() -> None:
    assert shard_rows(10, 3, 0, "range", seed=0).tolist() == [0, 1, 2, 3]
    assert shard_rows(10, 3, 1, "range", seed=0).tolist() == [4, 5, 6]
    assert shard_rows(10, 3, 2, "range", seed=0).tolist() == [7, 8, 9]


def test_random_strategy_is_deterministic_and_seeded() -> None:
    a = shard_rows(1000, 4, 2, "random", seed=7)
    assert np.array_equal(a, shard_rows(1000, 4, 2, "random", seed=7))
    assert not np.array_equal(a, shard_rows(1000, 4, 2, "random", seed=8))
    # Not a contiguous block: rows are spread over the whole range.
    assert a[-1] - a[0] > 500


def test_random_strategy_is_pinned() -> None:
    # Workers on different machines must agree; this pins the permutation.
    assert shard_rows(10, 2, 0, "random", seed=0).tolist() == [1, 2, 4, 8, 9]


@pytest.mark.parametrize(
    ("n_rows", "shards", "index", "match"),
    [
        (3, 4, 0, "every shard needs a row"),
        (10, 0, 0, "at least 1"),
        (10, 2, 2, "index"),
        (10, 2, -1, "index"),
    ],
)
def test_errors(n_rows: int, shards: int, index: int, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        shard_rows(n_rows, shards, index, "range", seed=0)


def test_bad_strategy_and_seed() -> None:
    with pytest.raises(ValueError, match="strategy"):
        shard_rows(10, 2, 0, "striped", seed=0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="seed"):
        shard_rows(10, 2, 0, "random", seed=-1)
    with pytest.raises(ValueError, match="every shard needs a row"):
        shard_sizes(2, 3)
