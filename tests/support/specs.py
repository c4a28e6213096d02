"""Job specs the tests submit."""

from __future__ import annotations

from typing import Any


def iris_spec(model_name: str = "iris-forest", **overrides: Any) -> dict[str, Any]:
    """A small forest on iris, two shards: trains in well under a second."""
    spec: dict[str, Any] = {
        "model_name": model_name,
        "algorithm": "random_forest_classifier",
        "params": {"n_estimators": 3, "max_depth": 4},
        "dataset": {"kind": "builtin", "name": "iris"},
        "shards": 2,
    }
    spec.update(overrides)
    return spec


POISON_ERROR = "time limit of 1 s exceeded"


def poison_spec(model_name: str = "poison", **overrides: Any) -> dict[str, Any]:
    """A job that submit accepts and every attempt of which fails, the same way each time: its
    one shard (a 200-tree forest on 50,000 synthetic rows, tens of seconds on one thread) runs
    past its 1 s time limit and is killed there (``POISON_ERROR``)."""
    spec: dict[str, Any] = {
        "model_name": model_name,
        "algorithm": "random_forest_classifier",
        "params": {"n_estimators": 200},
        "dataset": {"kind": "synthetic", "task": "classification", "n_samples": 50_000},
        "shards": 1,
        "time_limit": 1,
    }
    spec.update(overrides)
    return spec
