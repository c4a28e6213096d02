from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier

from zootrain.ml.algorithms import (
    ALGORITHMS,
    MAX_DEPTH,
    MAX_N_ESTIMATORS,
    ParamError,
    build_estimator,
    check_task,
    validate_params,
)

RFC = "random_forest_classifier"


def param_error(algorithm: str, params: dict[str, Any]) -> ParamError:
    with pytest.raises(ParamError) as info:
        validate_params(algorithm, params)
    return info.value


def test_required_algorithms_exist() -> None:
    for name in (
        "random_forest_classifier",
        "random_forest_regressor",
        "extra_trees_classifier",
        "extra_trees_regressor",
    ):
        assert ALGORITHMS[name].name == name
        assert ALGORITHMS[name].merge == "forest_union"


def test_unknown_algorithm_lists_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown algorithm 'svm'.*random_forest_classifier"):
        validate_params("svm", {})


def test_unknown_parameter_names_accepted_ones() -> None:
    err = param_error(RFC, {"n_estimator": 10})
    assert err.param == "n_estimator"
    assert "did you mean 'n_estimators'" in str(err)
    assert "max_depth" in str(err)


def test_bad_value_carries_sklearn_reason() -> None:
    err = param_error(RFC, {"n_estimators": 0})
    assert err.param == "n_estimators"
    assert "range [1, inf)" in str(err)

    err = param_error(RFC, {"criterion": "mse"})
    assert err.param == "criterion"
    assert "gini" in str(err)

    err = param_error("random_forest_regressor", {"max_features": "foo"})
    assert err.param == "max_features"


def test_bool_where_number_expected_is_refused() -> None:
    assert param_error(RFC, {"n_estimators": True}).param == "n_estimators"
    assert param_error(RFC, {"bootstrap": 1}).param == "bootstrap"


@pytest.mark.parametrize("name", ["n_jobs", "random_state", "warm_start", "verbose", "oob_score"])
def test_controlled_params_are_refused(name: str) -> None:
    err = param_error(RFC, {name: 1})
    assert err.param == name
    assert "zootrain sets it" in str(err)


def test_ceilings() -> None:
    err = param_error(RFC, {"n_estimators": MAX_N_ESTIMATORS + 1})
    assert err.param == "n_estimators"
    assert str(MAX_N_ESTIMATORS) in str(err)
    err = param_error("extra_trees_regressor", {"max_depth": MAX_DEPTH + 1})
    assert err.param == "max_depth"
    assert str(MAX_DEPTH) in str(err)
    validate_params(RFC, {"n_estimators": MAX_N_ESTIMATORS, "max_depth": MAX_DEPTH})


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"class_weight": {"0": 1.0}}, "class_weight"),
        ({"class_weight": [1, 2]}, "class_weight"),
        ({"max_depth": float("nan")}, "max_depth"),
        ({"max_features": object()}, "max_features"),
        ({"max_features": np.int64(3)}, "max_features"),
        ({"monotonic_cst": [1, 2]}, "monotonic_cst"),
        ({"max_samples": 0.5, "bootstrap": False}, "max_samples"),
        ({"min_samples_leaf": [[1]]}, "min_samples_leaf"),
    ],
)
def test_non_json_and_cross_param_errors(params: dict[str, Any], param: str) -> None:
    assert param_error(RFC, params).param == param


def test_extra_trees_max_samples_needs_bootstrap() -> None:
    # ExtraTrees defaults to bootstrap=False, unlike RandomForest.
    assert param_error("extra_trees_classifier", {"max_samples": 0.5}).param == "max_samples"
    validate_params("extra_trees_classifier", {"max_samples": 0.5, "bootstrap": True})


def test_good_params_pass_and_are_cleaned() -> None:
    params = {
        "n_estimators": 50,
        "max_depth": None,
        "max_features": np.float64(0.5),
        "criterion": "entropy",
        "min_samples_leaf": 2,
        "class_weight": "balanced",
        "monotonic_cst": (0, 1, -1),
        "bootstrap": True,
        "max_samples": 0.8,
    }
    cleaned = validate_params(RFC, params)
    assert cleaned == {**params, "max_features": 0.5, "monotonic_cst": [0, 1, -1]}
    assert type(cleaned["max_features"]) is float
    assert validate_params(RFC, {}) == {}


def test_build_estimator_sets_seed_and_one_core() -> None:
    est = build_estimator(RFC, {"n_estimators": 7}, random_state=123)
    assert isinstance(est, RandomForestClassifier)
    assert est.get_params()["n_estimators"] == 7
    assert est.get_params()["random_state"] == 123
    assert est.get_params()["n_jobs"] == 1
    with pytest.raises(ParamError):
        build_estimator(RFC, {"n_jobs": 4}, random_state=0)
    with pytest.raises(ValueError, match="random_state"):
        build_estimator(RFC, {}, random_state=-1)


def test_check_task() -> None:
    check_task(RFC, "classification")
    check_task("extra_trees_regressor", "regression")
    with pytest.raises(ValueError, match="for classification but the dataset is a regression"):
        check_task(RFC, "regression")
    with pytest.raises(ValueError, match="random_forest_classifier"):
        check_task("random_forest_regressor", "classification")
    with pytest.raises(ValueError, match="unknown algorithm"):
        check_task("nope", "regression")
