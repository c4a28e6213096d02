"""Partition "auto" and the submit's small-shard warning (zootrain.shard_plan): pure logic."""

from __future__ import annotations

from typing import Any

import pytest

from zootrain.settings import Settings
from zootrain.shard_plan import (
    DEFAULT_SHARD_MEMORY,
    MIN_FOREST_SHARD_ROWS,
    choose_partition,
    plan,
    replicated_bytes,
    shard_warnings,
    training_shape,
)
from zootrain.spec import DatasetSource, EncodingPlan, FeatureEncoding, JobSpec

FOREST: dict[str, Any] = {
    "model_name": "f",
    "algorithm": "random_forest_classifier",
    "dataset": {"kind": "synthetic", "task": "classification", "n_samples": 100_000},
    "shards": 4,
}


def spec(**changes: Any) -> JobSpec:
    return JobSpec.model_validate({**FOREST, **changes})


def test_auto_is_the_default_and_the_budget_a_setting() -> None:
    assert spec().partition == "auto"
    assert int(Settings().shard_memory) == DEFAULT_SHARD_MEMORY
    assert int(Settings(shard_memory="2GiB").shard_memory) == 2 << 30  # type: ignore[arg-type]


def test_training_shape_rounds_the_held_out_split_up() -> None:
    # 100,000 rows, test_size 0.2: 20,000 held out; 20 features by default.
    assert training_shape(spec(), None) == (80_000, 20)
    assert training_shape(spec(test_size=0.15), None) == (85_000, 20)


def test_a_forest_whose_rows_fit_the_budget_replicates_and_says_why() -> None:
    chosen, choice = choose_partition(spec(), None, budget=DEFAULT_SHARD_MEMORY)
    assert chosen.partition == "replicate"
    assert choice is not None and choice.strategy == "replicate" and choice.requested == "auto"
    assert choice.train_rows == 80_000
    assert choice.estimated_bytes == replicated_bytes(80_000, 20) == 80_000 * (20 * 12 + 16)
    assert choice.budget_bytes == DEFAULT_SHARD_MEMORY
    assert "within the shard memory budget" in choice.reason
    assert "ZOOTRAIN_SHARD_MEMORY" in choice.reason


def test_a_forest_over_the_budget_takes_data_shards_and_says_why() -> None:
    needed = replicated_bytes(80_000, 20)
    chosen, choice = choose_partition(spec(), None, budget=needed - 1)
    assert chosen.partition == "random"
    assert choice is not None and choice.strategy == "random"
    assert "over the shard memory budget" in choice.reason and "20,000 rows" in choice.reason
    # Exactly at the budget still fits.
    assert choose_partition(spec(), None, budget=needed)[0].partition == "replicate"


@pytest.mark.parametrize("algorithm", ["logistic_regression", "gaussian_nb", "kmeans", "ridge"])
def test_auto_means_random_data_shards_for_everything_but_forests(algorithm: str) -> None:
    dataset = (
        {"kind": "synthetic", "task": "regression", "n_samples": 1000}
        if algorithm == "ridge"
        else FOREST["dataset"]
    )
    chosen, choice = choose_partition(
        spec(algorithm=algorithm, dataset=dataset), None, budget=DEFAULT_SHARD_MEMORY
    )
    assert chosen.partition == "random"
    assert choice is not None and "not a forest" in choice.reason


@pytest.mark.parametrize("partition", ["random", "stratified", "range", "replicate"])
def test_an_explicit_partition_stays_as_it_is(partition: str) -> None:
    asked = spec(partition=partition)
    chosen, choice = choose_partition(asked, None, budget=1)
    assert chosen is asked and choice is None


def test_an_uploaded_dataset_is_sized_from_its_resolved_source() -> None:
    uploaded = spec(dataset={"kind": "uploaded", "id": "0" * 20, "target": "y"})
    features = [FeatureEncoding(column=f"c{i}", encoding="numeric") for i in range(3)]
    features.append(FeatureEncoding(column="k", encoding="onehot", levels=["a", "b"]))
    source = DatasetSource(
        dataset_id="0" * 20,
        format="csv",
        artifact="a",
        sha256="s",
        size=1,
        rows=1_000,
        task="classification",
        plan=EncodingPlan(
            target="y", target_kind="integer", target_encoding="labels", features=features
        ),
    )
    assert training_shape(uploaded, source) == (800, 5)
    chosen, choice = choose_partition(uploaded, source, budget=DEFAULT_SHARD_MEMORY)
    assert chosen.partition == "replicate" and choice is not None
    with pytest.raises(ValueError, match="resolved source"):
        training_shape(uploaded, None)


def test_small_data_shards_of_a_forest_draw_a_warning() -> None:
    # 9,000 rows, 7,200 for training, in 16 shards: 450 rows a shard.
    small = spec(dataset={**FOREST["dataset"], "n_samples": 9_000}, shards=16, partition="range")
    (warning,) = shard_warnings(small, None)
    assert "450 rows each" in warning and f"{MIN_FOREST_SHARD_ROWS:,}" in warning
    assert "'replicate'" in warning and "at most 3 shards" in warning


def test_large_shards_replicated_forests_and_other_families_draw_none() -> None:
    rows = MIN_FOREST_SHARD_ROWS * 4 * 5 // 4  # 4 shards of exactly the threshold, 0.2 held out
    at_threshold = spec(dataset={**FOREST["dataset"], "n_samples": rows}, partition="random")
    assert shard_warnings(at_threshold, None) == []
    tiny = {**FOREST["dataset"], "n_samples": 1_000}
    assert shard_warnings(spec(dataset=tiny, partition="replicate"), None) == []
    assert shard_warnings(spec(dataset=tiny, partition="random", shards=1), None) == []
    assert (
        shard_warnings(spec(dataset=tiny, algorithm="gaussian_nb", partition="random"), None) == []
    )


def test_plan_chooses_then_warns_on_the_choice() -> None:
    small = spec(dataset={**FOREST["dataset"], "n_samples": 9_000}, shards=16)
    chosen, choice, warnings = plan(small, None, DEFAULT_SHARD_MEMORY)
    assert chosen.partition == "replicate" and warnings == []
    chosen, choice, warnings = plan(small, None, 1)  # nothing fits: data shards, and a warning
    assert chosen.partition == "random" and choice is not None and len(warnings) == 1
