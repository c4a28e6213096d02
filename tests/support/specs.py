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
