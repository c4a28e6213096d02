"""Which rows a task reads: the held-out split and each shard's rows, computed alone by every
shard from the job's seed (and, for classification, the labels), without reading other rows.

Every dataset has two row orders (zootrain.ml.columnar): the *original* one (as uploaded,
generated or bundled) and a *shuffled* one (a fixed seeded permutation; for a synthetic dataset,
whose rows are generated independently, the original order already is one). A job reads the
shuffled order rotated by an offset drawn from its seed — the *job order*, position ``j`` being
shuffled row ``(j + offset) mod n`` — so that different seeds give different splits, while any
contiguous run of job positions is still a uniform random sample and at most two contiguous runs
of the stored file.

- **Held-out rows**: the last ``ceil(test_size * n)`` rows of the job order; for classification,
  stratified whenever every class can be on both sides (as scikit-learn's ``train_test_split``
  does): each class gives its last ``t_c`` rows of the job order, ``t_c`` proportional to its
  count (largest remainders). Either way they sit at the end of the job order.
- ``random``: the training rows in job order, cut into ``shard_sizes`` contiguous blocks.
- ``stratified``: each class's training rows in job order, cut into contiguous blocks whose sizes
  are what dealing the class-grouped rows round-robin would give (per class, shard counts differ
  by at most one; totals are ``shard_sizes``). A class's k-th block sits around the k-th
  fraction of the job order, so a shard reads little more than its share.
- ``range``: the training rows in *original* order, cut into contiguous blocks (time periods).
- ``replicate``: every training row.
- A shard scores its model on its own slice of the held-out rows (at least ``MIN_EVAL_ROWS``,
  or all of them; all of them under ``replicate``); the merge scores the merged model on all of
  them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from zootrain.ml.partition import MAX_SEED, Strategy, shard_sizes

MIN_EVAL_ROWS = 2000


def job_offset(n_rows: int, seed: int) -> int:
    """Where the job order starts in the shuffled order."""
    if not 0 <= seed <= MAX_SEED:
        raise ValueError(f"seed must be in [0, {MAX_SEED}], got {seed}")
    # RandomState: its stream is frozen across NumPy versions (NEP 19).
    return int(np.random.RandomState([seed, 0x5EED]).randint(0, n_rows))


@dataclass(frozen=True, eq=False)
class RowPlan:
    """A job's split, in job positions (0 … n-1)."""

    n_rows: int
    offset: int
    test: np.ndarray  # sorted job positions of the held-out rows
    classes: np.ndarray | None  # sorted labels of the whole dataset (classification)
    codes: np.ndarray | None  # label codes (into classes) in job order

    @property
    def n_test(self) -> int:
        return len(self.test)

    @property
    def n_train(self) -> int:
        return self.n_rows - len(self.test)

    def to_shuffled(self, positions: np.ndarray) -> np.ndarray:
        """Job positions as sorted positions of the shuffled order (what a reader takes)."""
        return np.sort((positions + self.offset) % self.n_rows)

    def train(self) -> np.ndarray:
        """Job positions of the training rows, in job order."""
        keep = np.ones(self.n_rows, dtype=bool)
        keep[self.test] = False
        return np.flatnonzero(keep)


def split_sizes(n_rows: int, test_size: float) -> tuple[int, int]:
    """(training rows, held-out rows) of ``n_rows``, rounded as ``train_test_split`` rounds;
    ValueError when either side would be empty."""
    if not 0.0 < test_size < 1.0:
        raise ValueError(f"test_size must be strictly between 0 and 1, got {test_size}")
    n_test = math.ceil(test_size * n_rows)
    n_train = n_rows - n_test
    if n_test < 1 or n_train < 1:
        raise ValueError(
            f"test_size={test_size} on {n_rows} rows leaves {n_train} training and "
            f"{n_test} test rows; both must be at least 1"
        )
    return n_train, n_test


def plan_rows(
    n_rows: int,
    *,
    test_size: float,
    seed: int,
    classes: np.ndarray | None = None,
    codes: np.ndarray | None = None,
) -> RowPlan:
    """The held-out split of a job. ``classes``/``codes`` (classification): the sorted labels
    and every row's label code, in shuffled order."""
    n_train, n_test = split_sizes(n_rows, test_size)
    offset = job_offset(n_rows, seed)
    job_codes = None
    test = np.arange(n_train, n_rows, dtype=np.int64)
    if codes is not None:
        if len(codes) != n_rows:
            raise ValueError(f"{len(codes)} labels for {n_rows} rows")
        # Label codes are small integers: int16 holds MAX_CLASSES of them in a quarter of the
        # memory of the int64 np.unique returns (this array spans every row of the dataset).
        small = np.int16 if classes is None or len(classes) < 2**15 else np.int32
        job_codes = np.roll(np.asarray(codes, dtype=small), -offset)
        counts = np.bincount(job_codes, minlength=len(classes) if classes is not None else 0)
        present = counts[counts > 0]
        if present.min() >= 2 and min(n_test, n_train) >= len(present):
            test = _stratified_test(job_codes, counts, n_test)
    return RowPlan(n_rows=n_rows, offset=offset, test=test, classes=classes, codes=job_codes)


def _allocate(counts: np.ndarray, total: int) -> np.ndarray:
    """``total`` split over classes in proportion to ``counts`` (largest remainders; ties to
    the lower class)."""
    exact = counts * (total / counts.sum())
    base: np.ndarray = np.floor(exact).astype(np.int64)
    left = total - int(base.sum())
    if left:
        order = np.lexsort((np.arange(len(counts)), -(exact - base)))
        base[order[:left]] += 1
    return base


def _stratified_test(job_codes: np.ndarray, counts: np.ndarray, n_test: int) -> np.ndarray:
    taken = _allocate(counts, n_test)
    parts = []
    for code, t in enumerate(taken):
        if t:
            parts.append(np.flatnonzero(job_codes == code)[-t:])
    return np.sort(np.concatenate(parts)).astype(np.int64, copy=False)


def shard_positions(plan: RowPlan, shards: int, index: int, strategy: Strategy) -> np.ndarray:
    """Job positions of shard ``index``'s training rows (not for ``range``: range_rows)."""
    if not 0 <= index < shards:
        raise ValueError(f"shard index must be in [0, {shards}), got {index}")
    train = plan.train()
    if strategy == "replicate":
        return train
    if strategy == "random":
        sizes = shard_sizes(len(train), shards)
        start = sum(sizes[:index])
        return train[start : start + sizes[index]]
    if strategy == "stratified":
        if plan.codes is None:
            raise ValueError("strategy 'stratified' needs the class labels")
        return _stratified_block(train, plan.codes[train], shards, index)
    raise ValueError(f"strategy {strategy!r} has no job-order rows (range reads original rows)")


def _stratified_block(train: np.ndarray, codes: np.ndarray, shards: int, index: int) -> np.ndarray:
    taken = []
    grouped_start = 0  # where this class starts in the class-grouped order
    for code in np.unique(codes):
        rows = train[codes == code]
        m = len(rows)
        # Dealing positions grouped_start … grouped_start+m-1 round-robin: shard i gets those
        # congruent to i mod shards. Shard i's block is that many rows, after shards < i.
        counts = _dealt(grouped_start, m, shards)
        start = int(counts[:index].sum())
        taken.append(rows[start : start + int(counts[index])])
        grouped_start += m
    return np.sort(np.concatenate(taken)) if taken else np.empty(0, dtype=np.int64)


def _dealt(start: int, count: int, shards: int) -> np.ndarray:
    """How many of the positions start … start+count-1 are congruent to each i mod shards."""

    def upto(x: int) -> np.ndarray:  # positions in [0, x) congruent to each i
        i = np.arange(shards)
        return np.where(x > i, (x - i - 1) // shards + 1, 0)

    dealt: np.ndarray = upto(start + count) - upto(start)
    return dealt


def range_rows(plan: RowPlan, test_original: np.ndarray, shards: int, index: int) -> np.ndarray:
    """Original row numbers of ``range`` shard ``index``: a contiguous block of the training
    rows in original order. ``test_original``: the held-out rows' original row numbers."""
    keep = np.ones(plan.n_rows, dtype=bool)
    keep[test_original] = False
    train = np.flatnonzero(keep)
    sizes = shard_sizes(len(train), shards)
    start = sum(sizes[:index])
    return train[start : start + sizes[index]]


def eval_positions(
    plan: RowPlan, shards: int, index: int, strategy: Strategy | None = None
) -> np.ndarray:
    """Job positions of the held-out rows shard ``index`` scores its own model on: every one
    for ``replicate`` (its shards read every training row already, and the merge pools their
    predictions of the same rows instead of predicting again: zootrain.ml.heldout)."""
    if strategy == "replicate":
        return plan.test
    n_test = plan.n_test
    size = min(n_test, max(math.ceil(n_test / shards), MIN_EVAL_ROWS))
    start = (index * n_test) // shards
    return np.take(plan.test, np.arange(start, start + size), mode="wrap")
