"""Search jobs and the baseline task: spec validation and candidate expansion (no server)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from zootrain.ml.datasets import BuiltinDataset, load_dataset, split_dataset
from zootrain.ml.search import baseline_params, best_candidate, candidates, cross_validate
from zootrain.records import JobSpec

SEARCH: dict[str, Any] = {
    "model_name": "wine-search",
    "algorithm": "random_forest_classifier",
    "params": {"n_estimators": 10},
    "dataset": {"kind": "builtin", "name": "wine"},
    "kind": "search",
    "search": {"param_grid": {"max_depth": [2, 4, None], "min_samples_leaf": [1, 5]}, "cv": 3},
}


def test_a_grid_search_has_one_task_per_candidate() -> None:
    spec = JobSpec.model_validate(SEARCH)
    assert spec.shards == spec.tasks == 6
    assert {spec.role(i) for i in range(spec.tasks)} == {"candidate"}
    params = spec.candidate_params()
    assert params[0]["n_estimators"] == 10  # the job's params are the base of every candidate
    assert len({tuple(sorted(p.items(), key=str)) for p in params}) == 6


def test_sampled_candidates_are_deterministic_from_the_seed() -> None:
    space = {"max_depth": list(range(1, 30)), "min_samples_leaf": [1, 2, 4, 8]}
    a = candidates({}, None, space, n_iter=5, seed=3)
    b = candidates({}, None, space, n_iter=5, seed=3)
    c = candidates({}, None, space, n_iter=5, seed=4)
    assert a == b != c and len(a) == 5


@pytest.mark.parametrize(
    ("search", "named"),
    [
        ({"param_grid": {"max_depth": [-3]}}, "max_depth"),
        ({"param_grid": {"n_estimatorz": [3]}}, "n_estimatorz"),
        ({}, "exactly one"),
        (
            {"param_grid": {"max_depth": [2]}, "param_distributions": {"max_depth": [2]}},
            "exactly one",
        ),
        ({"param_grid": {"max_depth": [2]}, "scoring": "wisdom"}, "wisdom"),
        ({"param_grid": {"max_depth": [2]}, "cv": 1}, "cv"),
        ({"param_grid": {"max_depth": []}}, "param_grid"),
    ],
)
def test_bad_searches_name_the_problem(search: dict[str, Any], named: str) -> None:
    with pytest.raises(ValidationError) as caught:
        JobSpec.model_validate({**SEARCH, "search": search})
    assert named in str(caught.value)


def test_search_and_kind_must_agree() -> None:
    with pytest.raises(ValidationError, match="needs a search"):
        JobSpec.model_validate({**SEARCH, "search": None})
    with pytest.raises(ValidationError, match="only a job of kind"):
        JobSpec.model_validate({**SEARCH, "kind": "train"})
    with pytest.raises(ValidationError, match="baseline"):
        JobSpec.model_validate({**SEARCH, "baseline": True})


def test_baseline_is_one_more_task() -> None:
    spec = JobSpec.model_validate(
        {**SEARCH, "kind": "train", "search": None, "shards": 3, "baseline": True}
    )
    assert spec.tasks == 4
    assert [spec.role(i) for i in range(4)] == ["shard", "shard", "shard", "baseline"]


def test_baseline_forest_has_all_the_shards_trees() -> None:
    assert (
        baseline_params("random_forest_classifier", {"n_estimators": 25}, 4)["n_estimators"] == 100
    )
    assert baseline_params("logistic_regression", {"C": 2.0}, 4) == {"C": 2.0}


def test_cross_validation_and_the_best_candidate() -> None:
    X, y = load_dataset(BuiltinDataset(kind="builtin", name="iris"))
    split = split_dataset(X, y, task="classification", test_size=0.2, seed=0)
    shallow = cross_validate(
        "random_forest_classifier",
        {"n_estimators": 5, "max_depth": 1},
        split.X_train,
        split.y_train,
        folds=3,
        scoring=None,
        seed=0,
    )
    deeper = cross_validate(
        "random_forest_classifier",
        {"n_estimators": 5, "max_depth": 4},
        split.X_train,
        split.y_train,
        folds=3,
        scoring="accuracy",
        seed=0,
    )
    assert 0 <= shallow["cv_mean"] <= 1 and shallow["cv_std"] >= 0
    assert best_candidate([shallow["cv_mean"], deeper["cv_mean"]]) == int(
        np.argmax([shallow["cv_mean"], deeper["cv_mean"]])
    )
    assert best_candidate([0.5, 0.9, 0.9]) == 1  # the first on a tie
