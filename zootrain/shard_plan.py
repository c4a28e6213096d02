"""How a job's training rows go to its shards, decided at submit: partition "auto", and the
warnings a submit answers with when the shards it asks for would lose accuracy.

A forest trained on data shards is an ensemble of trees each grown on a fraction of the rows;
below a few hundred rows a shard, its trees are shallow and its rare classes are a handful of
rows, and the merged forest falls well below one forest (bench/quality.py measures it: the
numbers and the threshold below are in docs/models.md). ``replicate`` gives every shard all the
training rows and costs memory instead, so "auto" replicates a forest's rows when they fit a
shard's memory budget (ZOOTRAIN_SHARD_MEMORY) and takes data shards when they do not. The
choice is made once, in the job service, and written into the job record (spec.partition
holds the strategy, ``partition_choice`` says why): a worker never decides it, so every shard
of a job uses the same rows whatever its settings.

Pure: no scikit-learn, no numpy (the job service imports it).
"""

from __future__ import annotations

import math

from zootrain.ml.encoding import MAX_ENCODED_VALUES
from zootrain.records import PartitionChoice
from zootrain.spec import DatasetSource, JobSpec, UploadedDataset, algorithm_info, dataset_shape

DEFAULT_SHARD_MEMORY = 1 << 30
"""ZOOTRAIN_SHARD_MEMORY's default: 1 GiB of training rows per shard."""

MIN_FOREST_SHARD_ROWS = 2_000
"""Data shards of a forest below this many training rows draw a warning at submit. From
bench/quality.py's shard-size table (``--shard-sizes``, docs/models.md#small-data-shards), on
the skewed 4-class set of 9,000 rows: at 3,600 rows a shard the merged forest is 1.6-1.8 points
below one forest of as many trees; at 1,800 it is 3.6-3.8 points below and all but stops
predicting the 2 % class; at 900, 6 points; at 225, 13. The threshold sits between the first
two: past it, the loss is no longer small next to what replicate keeps (within 0.1 point)."""

BYTES_PER_VALUE = 12
"""What a training row's feature costs a forest's shard: 8 bytes of float64 as read, and the
4-byte float32 copy scikit-learn's trees are grown on."""
BYTES_PER_ROW = 16
"""Per row beyond its features: the target and the row's sample weight (bootstrap counts)."""


def training_shape(spec: JobSpec, source: DatasetSource | None) -> tuple[int, int]:
    """(training rows, features) of a job: the held-out split rounded as the split rounds it
    (ceil), and the encoded features of an uploaded dataset."""
    if isinstance(spec.dataset, UploadedDataset):
        if source is None:
            raise ValueError("a job on an uploaded dataset needs its resolved source")
        rows, features = source.rows, source.plan.n_features
    else:
        rows, features = dataset_shape(spec.dataset)
    return rows - math.ceil(rows * spec.test_size), features


def replicated_bytes(rows: int, features: int) -> int:
    """What one shard holds of the training rows when it has them all (estimate)."""
    return rows * (features * BYTES_PER_VALUE + BYTES_PER_ROW)


def choose_partition(
    spec: JobSpec, source: DatasetSource | None, budget: int
) -> tuple[JobSpec, PartitionChoice | None]:
    """The spec with "auto" replaced by a strategy, and the choice (None when the spec named
    a strategy itself: explicit choices stay as they are)."""
    if spec.partition != "auto":
        return spec, None
    rows, features = training_shape(spec, source)
    needed = replicated_bytes(rows, features)
    alg = algorithm_info(spec.algorithm)
    figures = {"train_rows": rows, "estimated_bytes": needed, "budget_bytes": budget}
    if spec.kind == "search":
        strategy, reason = (
            "random",
            "a search fits every candidate on all training rows: there are no data shards",
        )
    elif not alg.replicable:
        strategy, reason = (
            "random",
            f"{alg.name} is not a forest: replicating rows only helps forests, whose shards "
            "grow different trees; random data shards",
        )
    elif spec.shards == 1:
        strategy, reason = ("random", "one shard holds every training row either way")
    elif needed > budget:
        share = math.ceil(rows / spec.shards)
        strategy, reason = (
            "random",
            f"the {rows:,} training rows x {features} features need about {_size(needed)} in "
            f"each shard if replicated, over the shard memory budget of {_size(budget)} "
            f"(ZOOTRAIN_SHARD_MEMORY): random data shards of about {share:,} rows",
        )
    elif isinstance(spec.dataset, UploadedDataset) and rows * features > MAX_ENCODED_VALUES:
        share = math.ceil(rows / spec.shards)
        strategy, reason = (
            "random",
            f"the {rows:,} training rows x {features} encoded features are over the "
            f"{MAX_ENCODED_VALUES:,} values one task may read: random data shards of about "
            f"{share:,} rows",
        )
    else:
        strategy, reason = (
            "replicate",
            f"the {rows:,} training rows x {features} features need about {_size(needed)} in "
            f"each shard, within the shard memory budget of {_size(budget)} "
            "(ZOOTRAIN_SHARD_MEMORY): every shard trains on all rows and grows its share of "
            "the trees, as accurate as one forest",
        )
    chosen = spec.model_copy(update={"partition": strategy})
    return chosen, PartitionChoice(strategy=strategy, reason=reason, **figures)


def shard_warnings(spec: JobSpec, source: DatasetSource | None) -> list[str]:
    """What a submit accepts but warns of: a forest on data shards smaller than
    MIN_FOREST_SHARD_ROWS (``spec`` with its partition chosen)."""
    if spec.kind != "train" or spec.shards < 2 or not algorithm_info(spec.algorithm).replicable:
        return []
    if spec.partition in ("replicate", "auto"):
        return []
    rows, _ = training_shape(spec, source)
    smallest = rows // spec.shards
    if smallest >= MIN_FOREST_SHARD_ROWS:
        return []
    fewer = max(1, rows // MIN_FOREST_SHARD_ROWS)
    return [
        f"partition: {spec.shards} {spec.partition} data shards of the {rows:,} training rows "
        f"hold about {smallest:,} rows each, under the {MIN_FOREST_SHARD_ROWS:,} below which "
        "a merged forest measurably loses accuracy and rare classes (docs/models.md); use "
        f"partition 'replicate' or 'auto', or at most {fewer} shard{'s' if fewer > 1 else ''}"
    ]


def plan(
    spec: JobSpec, source: DatasetSource | None, budget: int
) -> tuple[JobSpec, PartitionChoice | None, list[str]]:
    """The spec as recorded (partition chosen), the choice, and the submit's warnings."""
    chosen, choice = choose_partition(spec, source, budget)
    return chosen, choice, shard_warnings(chosen, source)


def _size(count: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} bytes"
