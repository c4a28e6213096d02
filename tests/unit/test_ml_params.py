from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression, SGDClassifier, SGDRegressor

from zootrain.ml.algorithms import (
    ALGORITHMS,
    MAX_BOOTSTRAP_SAMPLES,
    MAX_DEPTH,
    MAX_INTEGER,
    MAX_ITER,
    MAX_LEAF_NODES,
    MAX_N_CLUSTERS,
    MAX_N_ESTIMATORS,
    MAX_SAMPLES_FRACTION,
    ParamError,
    build_estimator,
    check_task,
    validate_params,
)
from zootrain.ml.partition import shard_sizes
from zootrain.shape_bounds import check_shape, fit_rows

RFC = "random_forest_classifier"


def param_error(algorithm: str, params: dict[str, Any]) -> ParamError:
    with pytest.raises(ParamError) as info:
        validate_params(algorithm, params)
    return info.value


def test_required_algorithms_exist() -> None:
    families = {
        "random_forest_classifier": "forest_union",
        "random_forest_regressor": "forest_union",
        "extra_trees_classifier": "forest_union",
        "extra_trees_regressor": "forest_union",
        "sgd_classifier": "linear_average",
        "sgd_regressor": "linear_average",
        "logistic_regression": "softmax_average",
        "linear_regression": "normal_equations",
        "ridge": "normal_equations",
        "gaussian_nb": "gaussian_nb",
        "multinomial_nb": "multinomial_nb",
        "kmeans": "kmeans_centroids",
    }
    assert {name: alg.merge for name, alg in ALGORITHMS.items()} == families
    assert {name for name, alg in ALGORITHMS.items() if alg.replicable} == {
        "random_forest_classifier",
        "random_forest_regressor",
        "extra_trees_classifier",
        "extra_trees_regressor",
    }
    assert ALGORITHMS["kmeans"].task == "clustering"


# (algorithm, a misspelt parameter and its suggestion, a bad value, a good set)
NEW_ALGORITHMS: list[tuple[str, str, str, dict[str, Any], dict[str, Any]]] = [
    ("sgd_classifier", "los", "loss", {"loss": "mse"}, {"loss": "log_loss", "alpha": 1e-3}),
    ("sgd_regressor", "epsilonn", "epsilon", {"alpha": -1.0}, {"penalty": "l1", "average": 10}),
    ("logistic_regression", "c", "C", {"C": 0}, {"C": 0.5, "l1_ratio": 1, "solver": "saga"}),
    ("linear_regression", "fit_intercepts", "fit_intercept", {"fit_intercept": 1}, {}),
    ("ridge", "alhpa", "alpha", {"alpha": -0.5}, {"alpha": [2.0], "solver": "svd"}),
    ("gaussian_nb", "var_smooth", "var_smoothing", {"var_smoothing": -1e-9}, {"priors": [0.5] * 2}),
    ("multinomial_nb", "alpah", "alpha", {"fit_prior": "yes"}, {"alpha": 0.5, "fit_prior": False}),
    ("kmeans", "n_cluster", "n_clusters", {"n_clusters": 0}, {"n_clusters": 3, "init": "random"}),
]


@pytest.mark.parametrize(("algorithm", "typo", "meant", "bad", "good"), NEW_ALGORITHMS)
def test_new_algorithms_validate_params(
    algorithm: str, typo: str, meant: str, bad: dict[str, Any], good: dict[str, Any]
) -> None:
    err = param_error(algorithm, {typo: 1})
    assert err.param == typo
    assert f"did you mean {meant!r}" in str(err)
    assert param_error(algorithm, bad).param == next(iter(bad))
    assert validate_params(algorithm, good) == good
    assert validate_params(algorithm, {}) == {}
    # random_state is refused wherever the estimator has one (zootrain seeds it).
    if "random_state" in ALGORITHMS[algorithm].default_params():
        assert "zootrain sets it" in str(param_error(algorithm, {"random_state": 1}))


@pytest.mark.parametrize(
    ("algorithm", "params", "param", "match"),
    [
        ("sgd_classifier", {"class_weight": {"0": 2}}, "class_weight", "JSON number"),
        ("sgd_classifier", {"alpha": 0.0}, "alpha", "alpha must be > 0"),
        ("sgd_regressor", {"learning_rate": "pa1"}, "loss", "epsilon_insensitive"),
        ("sgd_regressor", {"max_iter": MAX_ITER + 1}, "max_iter", "limit"),
        ("logistic_regression", {"l1_ratio": 1}, "solver", "lbfgs supports only"),
        ("logistic_regression", {"l1_ratio": 0.5, "solver": "sag"}, "solver", "elasticnet"),
        ("logistic_regression", {"dual": True}, "solver", "dual"),
        # scikit-learn refused it only in fit(), every shard ("eps <= 0").
        ("logistic_regression", {"solver": "liblinear", "tol": 0}, "tol", "tol > 0"),
        ("logistic_regression", {"n_jobs": 2}, "n_jobs", "zootrain sets it"),
        ("linear_regression", {"positive": True}, "positive", "not supported"),
        ("ridge", {"positive": True}, "positive", "normal equations"),
        ("ridge", {"solver": "lbfgs"}, "solver", "requires positive"),
        ("ridge", {"alpha": [1.0, 2.0]}, "alpha", "one target"),
        ("gaussian_nb", {"priors": [0.5, 0.6]}, "priors", "sum to 1"),
        ("gaussian_nb", {"priors": [1.5, -0.5]}, "priors", "non-negative"),
        ("gaussian_nb", {"priors": ["a", "b"]}, "priors", "non-negative numbers"),
        ("multinomial_nb", {"class_prior": [-0.1, 1.1]}, "class_prior", "non-negative"),
        ("multinomial_nb", {"alpha": [1.0, -1.0]}, "alpha", "non-negative"),
        ("kmeans", {"init": [1.0, 2.0]}, "init", "'k-means\\+\\+' or 'random'"),
        ("kmeans", {"n_clusters": MAX_N_CLUSTERS + 1}, "n_clusters", "limit"),
        ("kmeans", {"n_jobs": 1}, "n_jobs", "unknown parameter"),
    ],
)
def test_new_algorithm_rules(
    algorithm: str, params: dict[str, Any], param: str, match: str
) -> None:
    err = param_error(algorithm, params)
    assert err.param == param
    assert re.search(match, str(err)), str(err)


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


FORESTS = [name for name, alg in ALGORITHMS.items() if alg.merge == "forest_union"]


@pytest.mark.parametrize("algorithm", FORESTS)
@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (1e308, "limit of 1 (as a fraction)"),  # n_samples x 1e308 is inf: OverflowError in fit
        (1e9, "limit of 1 (as a fraction)"),  # 1e9 x rows indices per tree
        (1.5, "limit of 1 (as a fraction)"),
        (MAX_BOOTSTRAP_SAMPLES + 1, f"limit of {MAX_BOOTSTRAP_SAMPLES}"),
        (10**18, f"limit of {MAX_BOOTSTRAP_SAMPLES}"),
    ],
)
def test_max_samples_is_bounded_as_a_fraction_and_as_a_count(
    algorithm: str, value: float, shown: str
) -> None:
    err = param_error(algorithm, {"max_samples": value, "bootstrap": True})
    assert err.param == "max_samples"
    assert shown in str(err)


@pytest.mark.parametrize("algorithm", FORESTS)
def test_max_samples_at_its_limits_trains(algorithm: str) -> None:
    """The largest values accepted fit (a fraction of every row; a count past the rows, which
    scikit-learn >= 1.9 draws with replacement), so the bound refuses only what cannot."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    y = (X[:, 0] > 0).astype(int)
    for value in (MAX_SAMPLES_FRACTION, 0.5, 30):
        params = {"max_samples": value, "bootstrap": True, "n_estimators": 3}
        build_estimator(algorithm, validate_params(algorithm, params), 0).fit(X, y)


@pytest.mark.parametrize(
    ("algorithm", "params", "param"),
    [
        (RFC, {"max_leaf_nodes": MAX_LEAF_NODES + 1}, "max_leaf_nodes"),
        (RFC, {"max_leaf_nodes": 10**18}, "max_leaf_nodes"),  # 2 x 10**18 nodes allocated
        (RFC, {"min_samples_split": 2**63}, "min_samples_split"),  # C ssize_t: OverflowError
        (RFC, {"min_samples_leaf": 10**30}, "min_samples_leaf"),
        (RFC, {"max_features": MAX_INTEGER + 1}, "max_features"),
        ("sgd_classifier", {"average": 10**18}, "average"),  # a C int
        ("sgd_regressor", {"n_iter_no_change": 2**63}, "n_iter_no_change"),  # a C long
    ],
)
def test_integers_past_what_scikit_learn_can_hold_are_refused(
    algorithm: str, params: dict[str, Any], param: str
) -> None:
    err = param_error(algorithm, params)
    assert err.param == param
    assert "exceeds zootrain's limit" in str(err)


def test_every_integer_parameter_accepted_fits_in_a_c_int() -> None:
    """Submit-time validation and the schema agree: no integer branch of any algorithm's
    params is unbounded (a JSON integer has no size; scikit-learn's C code does)."""
    from zootrain.ml import param_schema

    for algorithm, table in param_schema.load().items():
        for name, schema in table["properties"].items():
            for branch in schema.get("anyOf", [schema]):
                if branch.get("type") == "integer":
                    assert branch.get("maximum", math.inf) <= MAX_INTEGER, (algorithm, name)
    validate_params(RFC, {"min_samples_split": MAX_INTEGER, "max_leaf_nodes": MAX_LEAF_NODES})


def test_forest_params_that_count_features_are_checked_against_the_dataset() -> None:
    for algorithm in FORESTS:
        with pytest.raises(ParamError) as info:
            check_shape(algorithm, {"max_features": 5}, features=4, rows=100)
        assert info.value.param == "max_features"
        assert "4 features" in str(info.value)
        with pytest.raises(ParamError) as info:
            check_shape(algorithm, {"monotonic_cst": [1, 0, -1]}, features=4, rows=100)
        assert info.value.param == "monotonic_cst"
        fitting = {"max_features": 4, "monotonic_cst": [0] * 4}
        check_shape(algorithm, fitting, features=4, rows=1)  # a forest's rows: any
        # Monotonic constraints: regression and binary classification only.
        constrained = {"monotonic_cst": [1, 0, -1, 0]}
        check_shape(algorithm, constrained, features=4, rows=100, classes=2)
        check_shape(algorithm, {"monotonic_cst": [0] * 4}, features=4, rows=100, classes=3)
        if ALGORITHMS[algorithm].task == "classification":
            with pytest.raises(ParamError) as info:
                check_shape(algorithm, constrained, features=4, rows=100, classes=3)
            assert info.value.param == "monotonic_cst"
            assert "3 classes" in str(info.value)
        else:  # a regressor fits the labels as numbers
            check_shape(algorithm, constrained, features=4, rows=100, classes=3)
        check_shape(algorithm, {"max_features": 0.5}, features=4, rows=100)  # a fraction: any
    check_shape("kmeans", {"n_clusters": 50}, features=4, rows=50)  # not a feature count


def test_kmeans_clusters_are_checked_against_the_rows_one_fit_sees() -> None:
    with pytest.raises(ParamError) as info:
        check_shape("kmeans", {"n_clusters": 51}, features=4, rows=50)
    assert info.value.param == "n_clusters"
    assert "50 rows" in str(info.value)
    # Left out, n_clusters is KMeans' default of 8 (checked against scikit-learn at import).
    with pytest.raises(ParamError):
        check_shape("kmeans", {}, features=4, rows=7)
    check_shape("kmeans", {}, features=4, rows=8)


@pytest.mark.parametrize(
    ("algorithm", "param"), [("gaussian_nb", "priors"), ("multinomial_nb", "class_prior")]
)
def test_naive_bayes_priors_are_one_per_class(algorithm: str, param: str) -> None:
    for priors in ([], [0.5, 0.5], [0.25] * 4):
        with pytest.raises(ParamError) as info:
            check_shape(algorithm, {param: priors}, features=4, rows=100, classes=3)
        assert info.value.param == param
        assert f"{len(priors)} values" in str(info.value)
        assert "3 classes" in str(info.value)
    check_shape(algorithm, {param: [0.2, 0.3, 0.5]}, features=4, rows=100, classes=3)
    check_shape(algorithm, {}, features=4, rows=100, classes=3)
    # The class count unknown (no classifier fitted): nothing to check it against.
    check_shape(algorithm, {param: [0.5, 0.5]}, features=4, rows=100)


def test_multinomial_nb_alpha_as_a_list_is_one_per_feature() -> None:
    for alpha in ([], [1.0], [1.0] * 5):
        with pytest.raises(ParamError) as info:
            check_shape("multinomial_nb", {"alpha": alpha}, features=4, rows=100, classes=3)
        assert info.value.param == "alpha"
        assert f"{len(alpha)} values" in str(info.value)
        assert "4 features" in str(info.value)
    check_shape("multinomial_nb", {"alpha": [1.0] * 4}, features=4, rows=100, classes=3)
    check_shape("multinomial_nb", {"alpha": 0.5}, features=4, rows=100, classes=3)


def test_liblinear_is_refused_on_more_than_two_classes() -> None:
    liblinear = {"solver": "liblinear"}
    with pytest.raises(ParamError) as info:
        check_shape("logistic_regression", liblinear, features=4, rows=100, classes=3)
    assert info.value.param == "solver"
    assert "3 classes" in str(info.value)
    with pytest.raises(ValueError, match="liblinear"):  # scikit-learn's own refusal, in fit()
        X, y = np.random.default_rng(0).normal(size=(30, 2)), np.arange(30) % 3
        LogisticRegression(solver="liblinear").fit(X, y)
    check_shape("logistic_regression", liblinear, features=4, rows=100, classes=2)
    check_shape("logistic_regression", {"solver": "saga"}, features=4, rows=100, classes=3)


@pytest.mark.parametrize("rows", [6, 9, 30, 31])
@pytest.mark.parametrize("fraction", [0.01, 0.1, 0.3, 0.5, 0.9, 0.99, 0.9999999999999999])
@pytest.mark.parametrize("classes", [None, 2, 3])
def test_sgd_early_stopping_split_is_refused_exactly_when_scikit_learn_refuses_it(
    rows: int, fraction: float, classes: int | None
) -> None:
    """CI's fuzz found validation_fraction 0.9999999999999999 accepted, then failing in every
    shard: scikit-learn's own split (ShuffleSplit, stratified for a classifier) is the judge."""
    params = {"early_stopping": True, "validation_fraction": fraction, "max_iter": 5}
    x = np.random.default_rng(0).normal(size=(rows, 2))
    if classes is None:
        algorithm, estimator = "sgd_regressor", SGDRegressor(**params, tol=None)
        y = x[:, 0]
    else:
        algorithm, estimator = "sgd_classifier", SGDClassifier(**params, tol=None)
        y = np.arange(rows) % classes  # every class at least twice
    try:
        estimator.fit(x, y)
    except ValueError:
        fits = False
    else:
        fits = True
    try:
        check_shape(algorithm, params, features=2, rows=rows, classes=classes)
    except ParamError as exc:
        assert exc.param == "validation_fraction"
        assert f"{rows} rows" in str(exc)
        accepted = False
    else:
        accepted = True
    assert accepted == fits
    # Without early stopping nothing is held out: any fraction fits.
    check_shape(algorithm, {"validation_fraction": fraction}, features=2, rows=rows)


def test_the_rows_one_fit_sees() -> None:
    assert fit_rows(112, 4, whole=False) == 28
    assert fit_rows(113, 4, whole=False) == 28  # the smaller shards
    assert fit_rows(113, 4, whole=True) == 113  # partition replicate
    # A search's candidate: all training rows but the largest fold (KFold rounds up).
    assert fit_rows(112, 1, whole=True, folds=3) == 112 - 38
    assert fit_rows(112, 8, whole=False, folds=5) == 112 - 23


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


def test_build_estimator_fixed_params() -> None:
    sgd = build_estimator("sgd_classifier", {}, random_state=5)
    assert isinstance(sgd, SGDClassifier)
    assert (sgd.n_jobs, sgd.random_state) == (1, 5)
    # Setting n_jobs on LogisticRegression warns since scikit-learn 1.8 (it is ignored).
    logistic = build_estimator("logistic_regression", {"C": 2.0}, random_state=5)
    assert isinstance(logistic, LogisticRegression)
    assert (logistic.n_jobs, logistic.random_state, logistic.C) == (None, 5, 2.0)
    assert "n_jobs" not in build_estimator("kmeans", {}, random_state=0).get_params()


def test_check_task() -> None:
    check_task(RFC, "classification")
    check_task("extra_trees_regressor", "regression")
    with pytest.raises(ValueError, match="for classification but the dataset is a regression"):
        check_task(RFC, "regression")
    with pytest.raises(ValueError, match="random_forest_classifier"):
        check_task("random_forest_regressor", "classification")
    with pytest.raises(ValueError, match="unknown algorithm"):
        check_task("nope", "regression")
    # Clustering fits any dataset, and is offered as an alternative.
    check_task("kmeans", "regression")
    check_task("kmeans", "classification")
    with pytest.raises(ValueError, match=r"use one of: .*kmeans.*ridge"):
        check_task("gaussian_nb", "regression")


@pytest.mark.parametrize("rows,shards", [(120, 4), (121, 4), (7, 7), (1000, 3), (47, 16)])
def test_fit_rows_is_the_smallest_shard_the_partition_makes(rows: int, shards: int) -> None:
    assert fit_rows(rows, shards, whole=False) == min(shard_sizes(rows, shards))
