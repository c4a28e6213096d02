from __future__ import annotations

import numpy as np
import pytest

from zootrain.ml.partition import STRATEGIES, Strategy, check_partition, shard_rows, shard_sizes

DISJOINT: list[Strategy] = ["random", "stratified", "range"]


def _labels(n_rows: int) -> np.ndarray:
    # Imbalanced, and ordered by class like many real files.
    return np.sort(np.random.RandomState(n_rows).choice([0, 1, 1, 1, 5, 9, 9], size=n_rows))


def test_strategies() -> None:
    assert STRATEGIES == ("random", "stratified", "range", "replicate")


@pytest.mark.parametrize("strategy", DISJOINT)
@pytest.mark.parametrize(("n_rows", "shards"), [(1, 1), (10, 3), (100, 7), (1000, 16), (5, 5)])
def test_shards_are_disjoint_and_cover_all_rows(
    strategy: Strategy, n_rows: int, shards: int
) -> None:
    y = _labels(n_rows)
    parts = [shard_rows(n_rows, shards, i, strategy, seed=42, y=y) for i in range(shards)]
    joined = np.concatenate(parts)
    assert len(joined) == n_rows
    assert np.array_equal(np.sort(joined), np.arange(n_rows))
    for part in parts:
        assert part.dtype == np.int64
        assert np.all(np.diff(part) > 0)  # sorted, no duplicates


@pytest.mark.parametrize("strategy", DISJOINT)
def test_sizes_differ_by_at_most_one_and_match_shard_sizes(strategy: Strategy) -> None:
    sizes = shard_sizes(103, 10)
    assert sum(sizes) == 103
    assert max(sizes) - min(sizes) <= 1
    y = _labels(103)
    assert [len(shard_rows(103, 10, i, strategy, seed=1, y=y)) for i in range(10)] == sizes


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


@pytest.mark.parametrize(("n_rows", "shards"), [(100, 7), (1000, 16), (37, 4), (5, 5)])
def test_stratified_gives_every_shard_each_class_in_proportion(n_rows: int, shards: int) -> None:
    y = _labels(n_rows)
    classes, counts = np.unique(y, return_counts=True)
    for i in range(shards):
        part = shard_rows(n_rows, shards, i, "stratified", seed=3, y=y)
        for label, count in zip(classes, counts, strict=True):
            got = int((y[part] == label).sum())
            # As even as counts allow: floor or ceil of the class's share.
            assert count // shards <= got <= -(-count // shards), (i, label, got)


def test_stratified_is_deterministic_seeded_and_shuffled_within_classes() -> None:
    y = np.repeat(["a", "b", "c"], [500, 300, 200])  # string labels work too
    a = shard_rows(1000, 4, 1, "stratified", seed=7, y=y)
    assert np.array_equal(a, shard_rows(1000, 4, 1, "stratified", seed=7, y=y))
    assert not np.array_equal(a, shard_rows(1000, 4, 1, "stratified", seed=8, y=y))
    rows_of_a = a[y[a] == "a"]
    assert rows_of_a[-1] - rows_of_a[0] > 400  # spread over the class, not a block
    assert [int((y[a] == c).sum()) for c in "abc"] == [125, 75, 50]


def test_stratified_is_pinned() -> None:
    # Workers on different machines must agree; this pins the assignment.
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 2])
    assert shard_rows(10, 2, 0, "stratified", seed=0, y=y).tolist() == [2, 3, 5, 6, 8]


def test_stratified_needs_labels() -> None:
    with pytest.raises(ValueError, match="needs the class labels"):
        shard_rows(10, 2, 0, "stratified", seed=0)
    with pytest.raises(ValueError, match="one label per row"):
        shard_rows(10, 2, 0, "stratified", seed=0, y=np.zeros(9))
    with pytest.raises(ValueError, match="seed"):
        shard_rows(10, 2, 0, "stratified", seed=-1, y=np.zeros(10))


def test_replicate_gives_every_shard_all_rows() -> None:
    for i in range(3):
        part = shard_rows(10, 3, i, "replicate", seed=0)
        assert part.dtype == np.int64
        assert part.tolist() == list(range(10))
    # Replication does not split rows, so more shards than rows is fine.
    assert len(shard_rows(2, 5, 4, "replicate", seed=0)) == 2
    with pytest.raises(ValueError, match="index"):
        shard_rows(10, 3, 3, "replicate", seed=0)


def test_check_partition() -> None:
    for strategy in ("random", "range", "stratified", "replicate"):
        check_partition("random_forest_classifier", strategy, "classification")  # type: ignore[arg-type]
    check_partition("extra_trees_regressor", "replicate", "regression")
    check_partition("kmeans", "stratified", "classification")
    check_partition("ridge", "range", "regression")
    with pytest.raises(ValueError, match=r"'stratified' balances class labels.*regression"):
        check_partition("random_forest_regressor", "stratified", "regression")
    with pytest.raises(ValueError, match=r"'stratified'.*regression"):
        check_partition("kmeans", "stratified", "regression")
    for algorithm in ("sgd_classifier", "gaussian_nb", "logistic_regression"):
        with pytest.raises(ValueError, match=r"'replicate'.*only helps ensembles.*extra_trees"):
            check_partition(algorithm, "replicate", "classification")
    with pytest.raises(ValueError, match="'replicate'"):
        check_partition("linear_regression", "replicate", "regression")
    with pytest.raises(ValueError, match="unknown partition 'striped'"):
        check_partition("ridge", "striped", "regression")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown algorithm"):
        check_partition("svm", "random", "regression")  # type: ignore[arg-type]
