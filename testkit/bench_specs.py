"""The job specs the benchmarks submit, here so that the tests can check them (against the cost
ceilings) without importing ``bench``."""

from __future__ import annotations

from typing import Any

# The end-to-end benchmark's job (bench/e2e.py): a replicated forest on synthetic rows.
E2E_SHARDS = 4
E2E_TEST_SIZE = 0.2
E2E_SEED = 0


def tiny_spec(
    name: str = "bench-tiny", *, shards: int = 2, priority: int = 5, trees: int = 2
) -> dict[str, Any]:
    """A job that trains in milliseconds: what dispatch and coordination costs show through."""
    return {
        "model_name": name,
        "algorithm": "random_forest_classifier",
        "params": {"n_estimators": trees, "max_depth": 4},
        "dataset": {"kind": "builtin", "name": "iris"},
        "shards": shards,
        "partition": "random",  # data shards, as the figures before partition 'auto' were
        "priority": priority,
    }


def submit_spec() -> dict[str, Any]:
    """A typical small job: 4 shards of a forest on a builtin dataset."""
    return {
        "model_name": "bench-submit",
        "algorithm": "random_forest_classifier",
        "params": {"n_estimators": 50, "max_depth": 12},
        "dataset": {"kind": "builtin", "name": "digits"},
        "shards": 4,
        "partition": "random",
        "test_size": 0.2,
        "random_state": 7,
        "max_attempts": 3,
    }


def e2e_dataset(rows: int) -> dict[str, Any]:
    return {
        "kind": "synthetic",
        "task": "classification",
        "n_samples": rows,
        "n_features": 20,
        "random_state": E2E_SEED,
    }


def e2e_spec(rows: int, per_shard: int) -> dict[str, Any]:
    return {
        "model_name": "bench-e2e",
        "algorithm": "random_forest_classifier",
        "params": {"n_estimators": per_shard},
        "dataset": e2e_dataset(rows),
        "shards": E2E_SHARDS,
        "partition": "replicate",
        "test_size": E2E_TEST_SIZE,
        "random_state": E2E_SEED,
    }


# The peers benchmark's search (bench/peers.py): 8 candidates, 3 folds, on e2e's dataset.
SEARCH_GRID: dict[str, list[Any]] = {
    "max_depth": [8, None],
    "min_samples_leaf": [1, 5],
    "criterion": ["gini", "entropy"],
}
SEARCH_FOLDS = 3


def search_spec(rows: int, trees: int) -> dict[str, Any]:
    return {
        "model_name": "bench-search",
        "algorithm": "random_forest_classifier",
        "params": {"n_estimators": trees},
        "dataset": e2e_dataset(rows),
        "shards": 8,  # the candidates (validation sets a search's shards to their count)
        "kind": "search",
        "search": {"param_grid": SEARCH_GRID, "cv": SEARCH_FOLDS},
        "test_size": E2E_TEST_SIZE,
        "random_state": E2E_SEED,
    }
