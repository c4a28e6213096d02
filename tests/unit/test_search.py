"""Search jobs and the baseline task: spec validation and candidate expansion (no server)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from zootrain.ml.datasets import BuiltinDataset, load_dataset, split_dataset
from zootrain.ml.search import (
    baseline_params,
    best_candidate,
    candidate_count,
    candidates,
    cross_validate,
)
from zootrain.ml.validation import validate_submission
from zootrain.records import JobRecord, JobSpec, new_job_id, utcnow

SEARCH: dict[str, Any] = {
    "model_name": "wine-search",
    "algorithm": "random_forest_classifier",
    "params": {"n_estimators": 10},
    "dataset": {"kind": "builtin", "name": "wine"},
    "kind": "search",
    "search": {"param_grid": {"max_depth": [2, 4, None], "min_samples_leaf": [1, 5]}, "cv": 3},
}


def submitted(data: dict[str, Any]) -> JobSpec:
    """A spec as a submit accepts it: parsed, then validated (what needs scikit-learn)."""
    return validate_submission(JobSpec.model_validate(data))


def test_a_grid_search_has_one_task_per_candidate() -> None:
    spec = submitted(SEARCH)
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
        # wine has 13 features; scikit-learn only refused this in each candidate's fit()
        ({"param_grid": {"max_features": [2, 14]}}, "max_features=14 exceeds"),
        ({"param_grid": {"max_samples": [0.5, 1e308]}}, "max_samples"),
    ],
)
def test_bad_searches_name_the_problem(search: dict[str, Any], named: str) -> None:
    with pytest.raises(ValidationError) as caught:
        submitted({**SEARCH, "search": search})
    assert named in str(caught.value)


def test_search_and_kind_must_agree() -> None:
    with pytest.raises(ValidationError, match="needs a search"):
        submitted({**SEARCH, "search": None})
    with pytest.raises(ValidationError, match="only a job of kind"):
        submitted({**SEARCH, "kind": "train"})
    with pytest.raises(ValidationError, match="baseline"):
        submitted({**SEARCH, "baseline": True})


def test_baseline_is_one_more_task() -> None:
    spec = submitted({**SEARCH, "kind": "train", "search": None, "shards": 3, "baseline": True})
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


# -- bounds: a search is counted before it is expanded ----------------------------------------


def grid_of(keys: int, values: int) -> dict[str, list[int]]:
    # Real parameter names would not matter: the count is refused before any name is checked.
    return {f"p{k}": list(range(values)) for k in range(keys)}


@pytest.mark.parametrize(
    ("keys", "values", "count"), [(4, 50, "6,250,000"), (6, 100, "1,000,000,000,000")]
)
def test_a_grid_over_the_cap_is_refused_from_its_lengths(
    keys: int, values: int, count: str
) -> None:
    # Today's scikit-learn expansion of the first takes seconds and GBs; the second overflows.
    with pytest.raises(ValidationError) as caught:
        submitted({**SEARCH, "search": {"param_grid": grid_of(keys, values)}})
    message = str(caught.value)
    assert count in message and "at most 256" in message


def test_the_number_of_keys_is_bounded() -> None:
    with pytest.raises(ValidationError, match="16"):
        submitted({**SEARCH, "search": {"param_grid": grid_of(17, 1)}})
    with pytest.raises(ValidationError, match="16"):
        submitted({**SEARCH, "search": {"param_distributions": grid_of(17, 2), "n_iter": 5}})


def test_a_sampled_space_too_large_to_index_is_refused() -> None:
    # ParameterSampler fails with OverflowError past 2**63 points: a 500 before this check.
    with pytest.raises(ValidationError, match="param_distributions spans 1e"):
        submitted({**SEARCH, "search": {"param_distributions": grid_of(10, 1000), "n_iter": 5}})


def test_counts_match_the_expansion() -> None:
    grid = {"max_depth": [2, 4, None], "min_samples_leaf": [1, 5]}
    assert candidate_count(grid, None, 10) == len(candidates({}, grid, None, 10, 0)) == 6
    space = {"max_depth": [2, 4], "min_samples_leaf": [1, 5]}
    assert candidate_count(None, space, 10) == len(candidates({}, None, space, 10, 0)) == 4
    assert candidate_count(None, {"max_depth": list(range(50))}, 7) == 7


def test_reading_a_search_job_record_does_not_validate_it_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spec = submitted(
        {
            **SEARCH,
            "search": {
                "param_grid": {
                    "max_depth": list(range(1, 65)),
                    "max_features": [0.25, 0.5, 0.75, 1.0],
                }
            },
        }
    )
    assert spec.tasks == 256
    now = utcnow()
    data = JobRecord(id=new_job_id(), spec=spec, created_at=now, updated_at=now).dump()

    def refuse(*args: Any) -> None:
        raise AssertionError("a read validated the candidates again")

    # A record read from ZooKeeper was validated at submit: nothing asks scikit-learn again.
    monkeypatch.setattr("zootrain.ml.algorithms.validate_params", refuse)
    monkeypatch.setattr("zootrain.ml.validation.check_candidates", refuse)
    record = JobRecord.load(data)
    assert record.spec.tasks == 256
    with pytest.raises(AssertionError, match="validated the candidates again"):
        validate_submission(record.spec)  # the one explicit call that does (submit, training)
