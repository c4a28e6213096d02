"""Which rows each task reads (zootrain.ml.selection): a pure function of the job, the same on
every worker, with shards that are disjoint, cover the training rows, and sit close together in
the stored order (so a shard reads little more than its share)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from zootrain.ml.partition import shard_sizes
from zootrain.ml.selection import (
    MIN_EVAL_ROWS,
    eval_positions,
    plan_rows,
    range_rows,
    shard_positions,
)


def _labels(n: int, weights: list[float], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.choice(len(weights), size=n, p=weights)
    classes, codes = np.unique(y, return_inverse=True)
    return classes, codes


def test_the_plan_is_deterministic_and_seeded() -> None:
    classes, codes = _labels(10_000, [0.5, 0.3, 0.2])
    a = plan_rows(10_000, test_size=0.2, seed=3, classes=classes, codes=codes)
    b = plan_rows(10_000, test_size=0.2, seed=3, classes=classes, codes=codes)
    c = plan_rows(10_000, test_size=0.2, seed=4, classes=classes, codes=codes)
    assert np.array_equal(a.test, b.test) and a.offset == b.offset
    assert a.offset != c.offset
    assert not np.array_equal(a.to_shuffled(a.test), c.to_shuffled(c.test))


@pytest.mark.parametrize("n", [20, 151, 10_000])
def test_held_out_rows_are_ceil_of_test_size_and_stratified(n: int) -> None:
    classes, codes = _labels(n, [0.6, 0.3, 0.1])
    plan = plan_rows(n, test_size=0.25, seed=1, classes=classes, codes=codes)
    assert plan.n_test == math.ceil(0.25 * n)
    assert len(np.unique(plan.test)) == plan.n_test
    assert np.all(np.diff(plan.test) > 0)
    assert plan.codes is not None
    counts = np.bincount(plan.codes, minlength=3)
    held = np.bincount(plan.codes[plan.test], minlength=3)
    # Proportional to each class's count, within one row.
    assert np.all(np.abs(held - counts * plan.n_test / n) <= 1)


def test_an_unstratifiable_split_is_the_tail_of_the_job_order() -> None:
    codes = np.array([0] * 19 + [1])  # one row of class 1: it cannot be on both sides
    plan = plan_rows(20, test_size=0.2, seed=0, classes=np.array([0, 1]), codes=codes)
    assert plan.test.tolist() == [16, 17, 18, 19]
    regression = plan_rows(100, test_size=0.1, seed=5)
    assert regression.test.tolist() == list(range(90, 100)) and regression.classes is None


@pytest.mark.parametrize("strategy", ["random", "stratified"])
@pytest.mark.parametrize("shards", [1, 3, 8])
def test_shards_are_disjoint_cover_the_training_rows_and_have_shard_sizes(
    strategy: str, shards: int
) -> None:
    classes, codes = _labels(5_003, [0.7, 0.2, 0.1])
    plan = plan_rows(5_003, test_size=0.2, seed=9, classes=classes, codes=codes)
    parts = [shard_positions(plan, shards, i, strategy) for i in range(shards)]  # type: ignore[arg-type]
    joined = np.sort(np.concatenate(parts))
    assert np.array_equal(joined, plan.train())
    assert [len(p) for p in parts] == shard_sizes(plan.n_train, shards)
    if strategy == "stratified":
        assert plan.codes is not None
        per_class = np.array([np.bincount(plan.codes[p], minlength=3) for p in parts])
        assert np.all(per_class.max(axis=0) - per_class.min(axis=0) <= 1)


@pytest.mark.parametrize("strategy", ["random", "stratified"])
def test_a_shard_sits_in_about_its_share_of_the_job_order(strategy: str) -> None:
    """What lets a shard read only its share: its rows are (nearly) one run of the job order."""
    n, shards = 200_000, 8
    classes, codes = _labels(n, [0.5, 0.3, 0.2])
    plan = plan_rows(n, test_size=0.2, seed=2, classes=classes, codes=codes)
    for index in range(shards):
        rows = shard_positions(plan, shards, index, strategy)  # type: ignore[arg-type]
        span = rows.max() - rows.min() + 1
        assert span < 1.05 * n * 0.8 / shards + 0.05 * n, (index, span)


def test_range_shards_are_runs_of_the_original_order_without_held_out_rows() -> None:
    plan = plan_rows(1_000, test_size=0.1, seed=0)
    rng = np.random.default_rng(0)
    test_original = np.sort(rng.choice(1_000, plan.n_test, replace=False))
    parts = [range_rows(plan, test_original, 4, i) for i in range(4)]
    joined = np.concatenate(parts)
    assert np.array_equal(joined, np.setdiff1d(np.arange(1_000), test_original))
    assert [len(p) for p in parts] == shard_sizes(900, 4)
    assert all(a.max() < b.min() for a, b in itertools.pairwise(parts))


def test_each_shard_scores_on_its_slice_of_the_held_out_rows() -> None:
    plan = plan_rows(100_000, test_size=0.2, seed=0)
    slices = [eval_positions(plan, 4, i) for i in range(4)]
    assert all(len(s) == 5_000 for s in slices)
    assert np.array_equal(np.sort(np.concatenate(slices)), plan.test)
    small = plan_rows(3_000, test_size=0.2, seed=0)
    assert all(
        len(eval_positions(small, 8, i)) == min(small.n_test, MIN_EVAL_ROWS) for i in range(8)
    )
    assert all(set(eval_positions(small, 8, i)) <= set(small.test) for i in range(8))
