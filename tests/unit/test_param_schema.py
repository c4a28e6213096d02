"""The committed params schemas (zootrain/ml/param_schemas.json) against scikit-learn and
zootrain's own validation: current, and agreeing with validate_params value by value."""

from __future__ import annotations

import math
from typing import Any

import jsonschema_rs
import pytest

from zootrain.ml import algorithms, param_schema
from zootrain.ml.algorithms import ALGORITHMS, ParamError, validate_params

TABLE = param_schema.load()


def test_the_committed_table_is_what_scikit_learn_and_zootrain_say() -> None:
    assert param_schema.generate() == TABLE, (
        "scikit-learn's constraints or zootrain's rules changed: regenerate the table with "
        "`make openapi` (python -m zootrain.ml.param_schema) and commit it"
    )


def test_every_algorithm_and_every_accepted_parameter_has_a_schema() -> None:
    assert sorted(TABLE) == sorted(ALGORITHMS)
    for name, alg in ALGORITHMS.items():
        schema = TABLE[name]
        assert schema["additionalProperties"] is False
        assert sorted(schema["properties"]) == alg.accepted_params()
        assert not set(schema["properties"]) & alg.controlled
    assert param_schema.MAX_LIST_LENGTH == algorithms.MAX_LIST_LENGTH


def test_ceilings_are_in_the_schema() -> None:
    forest = TABLE["random_forest_classifier"]["properties"]
    assert forest["n_estimators"]["maximum"] == algorithms.MAX_N_ESTIMATORS
    assert forest["max_depth"]["anyOf"][0]["maximum"] == algorithms.MAX_DEPTH
    kmeans = TABLE["kmeans"]["properties"]
    assert kmeans["n_clusters"]["maximum"] == algorithms.MAX_N_CLUSTERS
    assert kmeans["n_init"]["anyOf"][1]["maximum"] == algorithms.MAX_N_INIT
    assert TABLE["sgd_classifier"]["properties"]["max_iter"]["maximum"] == algorithms.MAX_ITER


# Values every parameter is tried with, besides each schema's own bounds and options.
GENERIC: list[Any] = [
    None, True, False, 0, 1, -1, 2, 3, 0.5, 1.0, 2.0, 1.5, -0.5, 0.0, 1e9, 10**12,
    "auto", "x", "sqrt", "", "a" * 101,
    [], [0], [1], [0.5], [1, 0], [0.5, 0.5], [-1], [1.0], ["x"], [True], [None], [[1]],
    [0] * 501, {"a": 1},
]  # fmt: skip

# A value the schema allows may still be refused for how it combines with another parameter's
# default (JSON Schema states one value, not combinations): with these companions it must pass.
COMPANIONS: dict[tuple[str, str], dict[str, Any]] = {
    ("extra_trees_classifier", "max_samples"): {"bootstrap": True},
    ("extra_trees_regressor", "max_samples"): {"bootstrap": True},
    ("sgd_classifier", "alpha"): {"learning_rate": "constant"},
    ("sgd_regressor", "learning_rate"): {"loss": "epsilon_insensitive"},
    ("logistic_regression", "dual"): {"solver": "liblinear"},
    ("logistic_regression", "penalty"): {"solver": "saga"},
    ("logistic_regression", "l1_ratio"): {"solver": "saga"},
}
# Rules no JSON Schema keyword states: the allowed direction is not checked for these.
UNSTATED = {("gaussian_nb", "priors")}  # the priors must sum to 1


def _candidates(schema: dict[str, Any]) -> list[Any]:
    values = list(GENERIC)
    for branch in schema.get("anyOf", [schema]):
        for key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
            if key in branch:
                values += [branch[key] + d for d in (0, 1, -1, 0.001, -0.001, 0.5)]
        values += branch.get("enum", [])
    if "default" in schema:
        values.append(schema["default"])
    return values


def _accepted(algorithm: str, params: dict[str, Any]) -> bool:
    try:
        validate_params(algorithm, params)
    except (ParamError, ValueError):
        return False
    return True


def _spellings(value: Any) -> list[Any]:
    """The JSON spellings of one value: JSON has one number type, so a schema cannot tell 2
    from 2.0 while zootrain (like scikit-learn) wants an int where it counts."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return [value]
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return [value, int(value)]
    return [value, float(value)] if isinstance(value, int) else [value]


PARAMS = [(name, param) for name, schema in TABLE.items() for param in schema["properties"]]


@pytest.mark.parametrize(("algorithm", "param"), PARAMS, ids=[f"{a}.{p}" for a, p in PARAMS])
def test_schema_and_validation_agree_value_by_value(algorithm: str, param: str) -> None:
    schema = TABLE[algorithm]["properties"][param]
    valid = jsonschema_rs.validator_for(schema).is_valid
    companion = COMPANIONS.get((algorithm, param), {})
    for value in _candidates(schema):
        accepted = _accepted(algorithm, {param: value})
        # What zootrain accepts, the schema allows: a fuzzer's "invalid" request is refused.
        if accepted:
            assert valid(value), f"{algorithm}.{param}={value!r} is accepted but the schema refuses"
        # What the schema allows, zootrain accepts (in some spelling, with the companions).
        if valid(value) and (algorithm, param) not in UNSTATED:
            assert any(_accepted(algorithm, {**companion, param: v}) for v in _spellings(value)), (
                f"{algorithm}.{param}={value!r} is allowed by the schema but refused"
            )


def test_the_fuzz_hooks_know_every_algorithm_by_its_task() -> None:
    # tests/contract/fuzz_hooks.py names the regressors and forests without scikit-learn.
    from tests.contract import fuzz_hooks

    def named(task_or_forest: str) -> set[str]:
        if task_or_forest == "forest":
            return {n for n, a in ALGORITHMS.items() if a.replicable}
        return {n for n, a in ALGORITHMS.items() if a.task == task_or_forest}

    hooks = (fuzz_hooks.REGRESSORS, fuzz_hooks.FORESTS, fuzz_hooks.CLUSTERING)
    assert hooks == (named("regression"), named("forest"), named("clustering"))
