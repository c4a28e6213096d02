from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from sklearn.base import BaseEstimator
from sklearn.linear_model import LinearRegression, Ridge
from sklearn.preprocessing import StandardScaler

from zootrain.ml.datasets import BuiltinDataset, Split, load_dataset, split_dataset
from zootrain.ml.linear import PAD_MARGIN
from zootrain.ml.merge import merge_models
from zootrain.ml.partition import Strategy
from zootrain.ml.training import fit_shard, fit_shards

# Exact merges must match a fit on all rows to this absolute tolerance (no rtol slack).
EXACT = {"rtol": 0.0, "atol": 1e-8}


def _split(name: str, task: Any) -> Split:
    X, y = load_dataset(BuiltinDataset(kind="builtin", name=name))
    if task == "classification":
        # Scaled so that the iterative solvers converge in a few iterations.
        X = StandardScaler().fit_transform(X)
    return split_dataset(X, y, task=task, test_size=0.2, seed=0)


@pytest.fixture(scope="module")
def wine() -> Split:
    return _split("wine", "classification")


@pytest.fixture(scope="module")
def diabetes() -> Split:
    return _split("diabetes", "regression")


def _shards(
    algorithm: str,
    params: dict[str, Any],
    split: Split,
    shards: int,
    strategy: Strategy = "random",
) -> tuple[list[BaseEstimator], list[int]]:
    return fit_shards(algorithm, params, split, shards, strategy, job_seed=1, partition_seed=3)


def _fit(algorithm: str, X: np.ndarray, y: np.ndarray, classes: Any, **params: Any) -> Any:
    return fit_shard(algorithm, params, X=X, y=y, classes=classes, random_state=0)


# -- parameter mixing ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("algorithm", "params"),
    [
        ("sgd_classifier", {}),
        ("sgd_classifier", {"loss": "log_loss", "average": True}),
        ("logistic_regression", {}),
    ],
)
def test_classifier_merge_is_the_row_weighted_average(
    algorithm: str, params: dict[str, Any], wine: Split
) -> None:
    models, rows = _shards(algorithm, params, wine, shards=3, strategy="stratified")
    merged = merge_models(algorithm, models, rows)
    # Every shard saw every class, so every row is a plain weighted average.
    assert all(m.coef_fitted_.all() for m in models)
    coef = np.average([m.coef_ for m in models], axis=0, weights=rows)
    intercept = np.average([m.intercept_ for m in models], axis=0, weights=rows)
    assert np.allclose(merged.coef_, coef, rtol=0, atol=1e-12)
    assert np.allclose(merged.intercept_, intercept, rtol=0, atol=1e-12)
    assert merged.coef_.shape == (3, 13)
    assert np.array_equal(merged.classes_, [0, 1, 2])
    assert merged.coef_fitted_.all()
    assert merged.get_params() == models[0].get_params()
    accuracy = np.mean(merged.predict(wine.X_test) == wine.y_test)
    assert accuracy >= 0.9


def test_liblinear_without_an_intercept_merges() -> None:
    """liblinear with fit_intercept=False leaves intercept_ the scalar 0.0: every shard failed
    on it (TypeError), found by trying parameter pairs at the schema's values."""
    split = _split("breast_cancer", "classification")
    params = {"solver": "liblinear", "fit_intercept": False}
    models, rows = _shards("logistic_regression", params, split, shards=3)
    merged = merge_models("logistic_regression", models, rows)
    coef = np.average([m.coef_ for m in models], axis=0, weights=rows)
    assert np.allclose(merged.coef_, coef, rtol=0, atol=1e-12)
    assert np.array_equal(merged.intercept_, [0.0])
    assert np.mean(merged.predict(split.X_test) == split.y_test) >= 0.9


def test_regressor_merge_is_the_row_weighted_average(diabetes: Split) -> None:
    models, rows = _shards("sgd_regressor", {}, diabetes, shards=4, strategy="range")
    merged = merge_models("sgd_regressor", models, rows)
    assert merged.coef_.shape == (10,)
    assert merged.intercept_.shape == (1,)
    assert np.allclose(merged.coef_, np.average([m.coef_ for m in models], axis=0, weights=rows))
    pred = merged.predict(diabetes.X_test)
    expected = np.average([m.predict(diabetes.X_test) for m in models], axis=0, weights=rows)
    assert np.allclose(pred, expected)


@pytest.mark.parametrize(
    ("algorithm", "scale"), [("sgd_classifier", 1.0), ("logistic_regression", 0.5)]
)
def test_binary_shard_is_expanded_into_the_job_layout(
    algorithm: str, scale: float, wine: Split
) -> None:
    params = {"loss": "log_loss"} if algorithm == "sgd_classifier" else {}
    keep = wine.y_train != 1
    X, y = wine.X_train[keep], wine.y_train[keep]
    plain = _fit(algorithm, X, y, None, **params)  # sklearn's binary layout, classes [0, 2]
    aligned = _fit(algorithm, X, y, np.array([0, 1, 2]), **params)
    assert plain.coef_.shape == (1, 13)
    assert aligned.coef_.shape == (3, 13)
    w, b = plain.coef_[0], plain.intercept_[0]
    # One-vs-rest: "0 vs rest" on a two-class shard is the negated "2 vs rest".
    # Softmax: logits (-z/2, +z/2) give the same probabilities as sigmoid(z).
    assert np.allclose(aligned.coef_[[0, 2]], [-scale * w, scale * w], rtol=0, atol=1e-15)
    assert np.allclose(aligned.intercept_[[0, 2]], [-scale * b, scale * b], rtol=0, atol=1e-15)
    assert np.all(aligned.coef_[1] == 0)
    assert aligned.intercept_[1] <= aligned.decision_function(X)[:, [0, 2]].min() - PAD_MARGIN
    assert aligned.coef_fitted_.tolist() == [True, False, True]

    assert np.array_equal(aligned.predict(wine.X_test), plain.predict(wine.X_test))
    proba = aligned.predict_proba(wine.X_test)
    assert np.allclose(proba[:, [0, 2]], plain.predict_proba(wine.X_test), rtol=0, atol=1e-12)
    assert np.all(proba[:, 1] < 1e-15)


def test_shard_with_some_classes_keeps_its_rows(wine: Split) -> None:
    X = np.vstack([wine.X_train, wine.X_train[:30] + 3.0])
    y = np.concatenate([wine.y_train, np.full(30, 3)])
    keep = y != 1
    plain = _fit("logistic_regression", X[keep], y[keep], None)  # classes [0, 2, 3]
    aligned = _fit("logistic_regression", X[keep], y[keep], np.array([0, 1, 2, 3]))
    assert np.array_equal(aligned.coef_[[0, 2, 3]], plain.coef_)
    assert np.array_equal(aligned.intercept_[[0, 2, 3]], plain.intercept_)
    assert aligned.coef_fitted_.tolist() == [True, False, True, True]
    proba = aligned.predict_proba(X)
    assert np.allclose(proba[:, [0, 2, 3]], plain.predict_proba(X), rtol=0, atol=1e-12)


@pytest.mark.parametrize("algorithm", ["sgd_classifier", "logistic_regression"])
def test_single_class_shard_is_constant_and_does_not_vote(algorithm: str, wine: Split) -> None:
    classes = np.array([0, 1, 2])
    only_2 = wine.y_train == 2
    constant = _fit(algorithm, wine.X_train[only_2], wine.y_train[only_2], classes)
    assert np.all(constant.predict(wine.X_test) == 2)
    assert not constant.coef_fitted_.any()
    assert np.all(constant.coef_ == 0)
    if algorithm == "logistic_regression":
        assert np.allclose(constant.predict_proba(wine.X_test), [0.0, 0.0, 1.0], atol=1e-15)

    full = _fit(algorithm, wine.X_train, wine.y_train, classes)
    merged = merge_models(algorithm, [full, constant], [len(wine.X_train), int(only_2.sum())])
    # The constant shard carries no boundary, so the merge is the other shard.
    assert np.array_equal(merged.coef_, full.coef_)
    assert np.array_equal(merged.intercept_, full.intercept_)

    with pytest.raises(ValueError, match="no shard saw two or more classes"):
        merge_models(algorithm, [constant, constant], [10, 10])


def test_single_class_shard_in_a_binary_job(wine: Split) -> None:
    keep = wine.y_train != 2
    X, y = wine.X_train[keep], wine.y_train[keep]
    classes = np.array([0, 1])
    for label in (0, 1):
        constant = _fit("logistic_regression", X[y == label], y[y == label], classes)
        assert constant.coef_.shape == (1, 13)
        assert np.all(constant.predict(X) == label)
        assert np.allclose(constant.predict_proba(X)[:, label], 1.0)
    both = _fit("logistic_regression", X, y, classes)
    merged = merge_models("logistic_regression", [both, constant], [len(X), 5])
    assert np.array_equal(merged.coef_, both.coef_)


def test_each_class_row_is_averaged_over_the_shards_that_saw_it(wine: Split) -> None:
    classes = np.array([0, 1, 2])
    half = len(wine.X_train) // 2
    a = _fit("sgd_classifier", wine.X_train[:half], wine.y_train[:half], classes)
    rest_x, rest_y = wine.X_train[half:], wine.y_train[half:]
    b = _fit("sgd_classifier", rest_x[rest_y != 1], rest_y[rest_y != 1], classes)
    rows = [half, int((rest_y != 1).sum())]
    merged = merge_models("sgd_classifier", [a, b], rows)
    assert np.array_equal(merged.coef_[1], a.coef_[1])
    assert merged.intercept_[1] == a.intercept_[1]
    for k in (0, 2):
        assert np.allclose(
            merged.coef_[k], np.average([a.coef_[k], b.coef_[k]], axis=0, weights=rows)
        )


def test_class_no_shard_saw_is_never_predicted(wine: Split) -> None:
    classes = np.array([0, 1, 2, 7])  # 7: e.g. a class that only occurs in the test set
    halves = [np.arange(len(wine.X_train))[i::2] for i in range(2)]
    models = [
        _fit("logistic_regression", wine.X_train[rows], wine.y_train[rows], classes)
        for rows in halves
    ]
    merged = merge_models("logistic_regression", models, [len(rows) for rows in halves])
    assert merged.coef_fitted_.tolist() == [True, True, True, False]
    assert np.all(merged.coef_[3] == 0)
    assert merged.intercept_[3] == min(m.intercept_[3] for m in models)
    assert 7 not in merged.predict(wine.X_test)
    assert np.all(merged.predict_proba(wine.X_test)[:, 3] < 1e-15)


def test_inputs_are_not_mutated(wine: Split) -> None:
    models, rows = _shards("sgd_classifier", {}, wine, shards=2)
    before = [(m.coef_.copy(), m.intercept_.copy()) for m in models]
    merged = merge_models("sgd_classifier", models, rows)
    merged.coef_[:] = 0
    merged.classes_[0] = 99
    for m, (coef, intercept) in zip(models, before, strict=True):
        assert np.array_equal(m.coef_, coef)
        assert np.array_equal(m.intercept_, intercept)
        assert m.classes_[0] == 0


# -- exact least squares -------------------------------------------------------------------------


def _reference(algorithm: str, params: dict[str, Any]) -> LinearRegression | Ridge:
    return LinearRegression(**params) if algorithm == "linear_regression" else Ridge(**params)


def _offset_regression() -> Split:
    # Large feature means: centring must happen before pooling, not after.
    rng = np.random.RandomState(0)
    X = rng.normal(size=(300, 6)) * [1, 2, 3, 0.5, 10, 1] + [1e4, -5e3, 0, 7, 1e3, 2e4]
    y = X @ [0.5, -1.0, 2.0, 3.0, 0.1, -0.2] + rng.normal(size=300)
    return split_dataset(X, y, task="regression", test_size=0.2, seed=0)


_NORMAL_EQUATION_CASES = [
    ("diabetes", "linear_regression", {}),
    ("diabetes", "linear_regression", {"fit_intercept": False}),
    ("diabetes", "ridge", {"alpha": 2.5}),
    ("diabetes", "ridge", {"alpha": 2.5, "fit_intercept": False}),
    ("diabetes", "ridge", {"alpha": [1e4]}),
    # Not without an intercept: uncentred, these features make XᵀX so ill-conditioned
    # (~1e9) that even sklearn's own answer is only good to ~1e-7.
    ("offset", "linear_regression", {}),
    ("offset", "ridge", {"alpha": 2.5}),
]


@pytest.mark.parametrize(("dataset", "algorithm", "params"), _NORMAL_EQUATION_CASES)
@pytest.mark.parametrize(("shards", "strategy"), [(4, "random"), (5, "range")])
def test_normal_equations_merge_equals_a_fit_on_all_rows(
    dataset: str,
    algorithm: str,
    params: dict[str, Any],
    shards: int,
    strategy: Strategy,
    diabetes: Split,
) -> None:
    split = diabetes if dataset == "diabetes" else _offset_regression()
    models, rows = _shards(algorithm, params, split, shards=shards, strategy=strategy)
    merged = merge_models(algorithm, models, rows)
    full = _reference(algorithm, params).fit(split.X_train, split.y_train)
    assert np.allclose(merged.coef_, full.coef_, **EXACT)
    assert np.allclose(merged.intercept_, full.intercept_, **EXACT)
    assert np.allclose(merged.predict(split.X_test), full.predict(split.X_test), **EXACT)
    assert merged.n_samples_seen_ == len(split.X_train)
    if algorithm == "linear_regression":
        assert merged.rank_ == full.rank_
        assert np.allclose(merged.singular_, full.singular_, rtol=1e-9, atol=0)
    # No shard alone is the full model.
    assert not np.allclose(models[0].coef_, full.coef_, **EXACT)


def test_ridge_does_not_penalise_the_intercept(diabetes: Split) -> None:
    models, rows = _shards("ridge", {"alpha": 1e12}, diabetes, shards=3)
    merged = merge_models("ridge", models, rows)
    # All weight on the penalty: coefficients vanish, the intercept is the mean target.
    assert np.allclose(merged.coef_, 0.0, atol=1e-6)
    assert np.isclose(merged.intercept_, diabetes.y_train.mean(), rtol=0, atol=1e-6)


def test_merged_statistics_merge_again(diabetes: Split) -> None:
    models, rows = _shards("linear_regression", {}, diabetes, shards=4)
    left = merge_models("linear_regression", models[:2], rows[:2])
    right = merge_models("linear_regression", models[2:], rows[2:])
    again = merge_models("linear_regression", [left, right], [sum(rows[:2]), sum(rows[2:])])
    direct = merge_models("linear_regression", models, rows)
    assert np.allclose(again.coef_, direct.coef_, **EXACT)
    assert np.allclose(again.xtx_, direct.xtx_, rtol=1e-12, atol=0)


def test_shards_carry_their_sufficient_statistics(diabetes: Split) -> None:
    X, y = diabetes.X_train[:50], diabetes.y_train[:50]
    model = _fit("ridge", X, y, None)
    assert model.n_samples_seen_ == 50
    assert np.allclose(model.x_mean_ * 50, X.sum(axis=0))
    assert np.isclose(model.y_mean_ * 50, y.sum())
    # Centred XᵀX / Xᵀy: the uncentred ones are recovered with the means.
    assert np.allclose(model.xtx_ + 50 * np.outer(model.x_mean_, model.x_mean_), X.T @ X)
    assert np.allclose(model.xty_ + 50 * model.x_mean_ * model.y_mean_, X.T @ y)


def test_normal_equations_merge_errors(diabetes: Split) -> None:
    models, rows = _shards("ridge", {}, diabetes, shards=2)
    with pytest.raises(ValueError, match=r"fitted on \d+ rows but rows\[0\]"):
        merge_models("ridge", models, [rows[0] + 1, rows[1]])
    bare = Ridge().fit(diabetes.X_train, diabetes.y_train)
    with pytest.raises(ValueError, match="no sufficient statistics"):
        merge_models("ridge", [bare, models[1]], [len(diabetes.X_train), rows[1]])
