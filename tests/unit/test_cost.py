"""The admission check: a job's cost reckoned from its spec, against the operator's ceilings."""

from __future__ import annotations

from typing import Any

import pytest

from testkit.bench_specs import e2e_spec, search_spec, submit_spec, tiny_spec
from zootrain.ml.cost import job_cost, over_ceilings
from zootrain.records import JobSpec
from zootrain.settings import Settings

DEFAULTS = Settings(_env_file=None).ceilings()  # type: ignore[call-arg]

# The issue's example: accepted before the ceilings, 256,000 trees on a million rows each.
HUGE: dict[str, Any] = {
    "model_name": "huge",
    "algorithm": "random_forest_classifier",
    "params": {"n_estimators": 2000},
    "dataset": {
        "kind": "synthetic",
        "task": "classification",
        "n_samples": 1_000_000,
        "n_features": 50,
    },
    "shards": 64,
    "partition": "replicate",
    "baseline": True,
}

README_EXAMPLES: list[dict[str, Any]] = [
    {
        "model_name": "digits-forest",
        "algorithm": "random_forest_classifier",
        "params": {"n_estimators": 50, "max_depth": 12},
        "dataset": {"kind": "builtin", "name": "digits"},
        "shards": 4,
        "partition": "random",
        "test_size": 0.2,
        "random_state": 7,
        "max_attempts": 3,
    },
    {
        "model_name": "wine-search",
        "algorithm": "random_forest_classifier",
        "params": {"n_estimators": 50},
        "dataset": {"kind": "builtin", "name": "wine"},
        "kind": "search",
        "search": {"param_grid": {"max_depth": [4, 8, None], "min_samples_leaf": [1, 5]}, "cv": 3},
    },
    {
        "model_name": "iris-forest",
        "algorithm": "random_forest_classifier",
        "params": {"n_estimators": 25, "max_depth": 6},
        "dataset": {"kind": "builtin", "name": "iris"},
        "shards": 4,
    },
]
BENCH_EXAMPLES = [
    submit_spec(),
    tiny_spec(),
    e2e_spec(100_000, per_shard=200),  # the full e2e run: ~20 trees a shard on this machine
    search_spec(20_000, trees=10),  # bench/peers.py's search, full form
    {  # bench/quality.py's largest: 200,000 rows, forests of 4 x 25 trees with a baseline
        **tiny_spec(shards=4, trees=25),
        "dataset": {"kind": "synthetic", "task": "classification", "n_samples": 200_000},
        "baseline": True,
    },
    {  # tests/chaos/chaos.py: ten attempts a shard, k-means with three clusters
        "model_name": "chaos-kmeans",
        "algorithm": "kmeans",
        "params": {"n_clusters": 3, "n_init": 1},
        "dataset": {"kind": "builtin", "name": "iris"},
        "shards": 8,
        "max_attempts": 10,
    },
    {  # bench/quality.py's k-means
        "model_name": "quality-kmeans",
        "algorithm": "kmeans",
        "params": {"n_clusters": 10, "n_init": 3},
        "dataset": {"kind": "builtin", "name": "digits"},
        "shards": 4,
    },
]


def cost_of(spec: dict[str, Any]) -> Any:
    return job_cost(JobSpec.model_validate(spec))


def test_the_issues_example_is_refused_naming_figures_and_ceilings() -> None:
    cost = cost_of(HUGE)
    assert cost.trees == 64 * 2000 * 2  # the shards, then a baseline with all their trees
    assert cost.synthetic_cells == 50_000_000
    over = over_ceilings(cost, DEFAULTS)
    assert any("256,000" in o and "50,000" in o and "ZOOTRAIN_MAX_TREES" in o for o in over)
    assert any("50,000,000" in o and "ZOOTRAIN_MAX_SYNTHETIC_CELLS" in o for o in over)


@pytest.mark.parametrize("spec", README_EXAMPLES + BENCH_EXAMPLES)
def test_every_readme_and_bench_example_is_admitted(spec: dict[str, Any]) -> None:
    assert over_ceilings(cost_of(spec), DEFAULTS) == []


def test_a_search_counts_every_fold_and_the_refit() -> None:
    cost = cost_of(README_EXAMPLES[1])
    assert cost.trees == 6 * 3 * 50 + 50
    grid = {"n_estimators": [10, 300], "max_depth": [2, 4]}
    search = {**README_EXAMPLES[1], "search": {"param_grid": grid, "cv": 5}}
    assert cost_of(search).trees == (10 + 300) * 2 * 5 + 300


def test_estimator_defaults_count() -> None:
    # n_estimators left out is scikit-learn's default of 100 trees a shard.
    assert cost_of({**README_EXAMPLES[2], "params": {}}).trees == 400
    linear = {**README_EXAMPLES[2], "algorithm": "logistic_regression", "params": {}}
    assert cost_of(linear).trees == 0


def test_kmeans_work_and_max_attempts() -> None:
    kmeans = BENCH_EXAMPLES[-1]
    assert cost_of(kmeans).kmeans_work == 3 * 300 * 10
    # n_init="auto" is one run with k-means++ seeding and ten with random seeding.
    auto = {**kmeans, "params": {"n_clusters": 10, "init": "random"}}
    assert cost_of(auto).kmeans_work == 10 * 300 * 10
    big = {**kmeans, "params": {"n_clusters": 1000, "n_init": 100, "max_iter": 10_000}}
    (over,) = over_ceilings(cost_of(big), DEFAULTS)
    assert "1,000,000,000" in over and "ZOOTRAIN_MAX_KMEANS_WORK" in over
    (over,) = over_ceilings(cost_of({**kmeans, "max_attempts": 15}), DEFAULTS)
    assert "max_attempts is 15" in over and "of 10" in over
