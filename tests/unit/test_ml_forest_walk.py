"""zootrain.ml.forest_walk: a forest's predictions with its trees called in a loop are
scikit-learn's own, to the bit, for every kind of forest and input the service sees; anything
it does not walk keeps its own predict."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from sklearn.base import is_classifier
from sklearn.datasets import make_classification, make_regression
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LogisticRegression

from zootrain.ml import forest_walk, modelfile
from zootrain.ml.forest import fit_forest, merge_union

ROWS = [1, 7, 500]  # one row (a served prediction), a few, a held-out set


def _same(a: Any, b: Any) -> None:
    if isinstance(b, list):
        assert isinstance(a, list) and len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _same(x, y)
        return
    assert a.dtype == b.dtype and a.shape == b.shape
    assert a.tobytes() == b.tobytes()  # the bits, not closeness


def _classifiers() -> list[tuple[str, Any, np.ndarray]]:
    X, y = make_classification(
        n_samples=600, n_features=8, n_informative=5, n_classes=4, flip_y=0.2, random_state=0
    )
    words = np.array(["ant", "bee", "cat", "dog"])[y]
    multi = np.column_stack([y, (y + X[:, 0] > 1).astype(int)])
    gappy = X.copy()
    gappy[::7, 2] = np.nan  # forests learn where missing values go (scikit-learn >= 1.4)
    shards = [
        RandomForestClassifier(n_estimators=5, random_state=seed, n_jobs=1).fit(
            X[seed::3], y[seed::3]
        )
        for seed in range(3)
    ]
    # A shard that never saw class 3: its trees re-expressed over the job's four classes.
    lacking = []
    for seed, rows in enumerate((y != 3, np.ones(len(y), dtype=bool))):
        shard = RandomForestClassifier(n_estimators=4, random_state=seed, n_jobs=1)
        fit_forest(shard, X[rows], y[rows], np.arange(4))
        lacking.append(shard)
    return [
        ("random forest", RandomForestClassifier(n_estimators=30, random_state=0).fit(X, y), X),
        ("a shard lacking a class", merge_union(lacking, [450, 600]), X),
        ("extra trees", ExtraTreesClassifier(n_estimators=30, random_state=0).fit(X, y), X),
        ("string labels", RandomForestClassifier(n_estimators=10, random_state=1).fit(X, words), X),
        (
            "class weights, depth",
            RandomForestClassifier(
                n_estimators=10, max_depth=3, class_weight="balanced", random_state=2
            ).fit(X, y),
            X,
        ),
        ("two outputs", RandomForestClassifier(n_estimators=10, random_state=3).fit(X, multi), X),
        (
            "missing values",
            RandomForestClassifier(n_estimators=10, random_state=4).fit(gappy, y),
            gappy,
        ),
        ("merged shards", merge_union(shards, [200, 200, 200]), X),
    ]


def _regressors() -> list[tuple[str, Any, np.ndarray]]:
    X, y = make_regression(n_samples=600, n_features=8, noise=5.0, random_state=0)
    two = np.column_stack([y, y**2 / 100])
    return [
        ("random forest", RandomForestRegressor(n_estimators=20, random_state=0).fit(X, y), X),
        ("extra trees", ExtraTreesRegressor(n_estimators=20, random_state=0).fit(X, y), X),
        ("two outputs", RandomForestRegressor(n_estimators=10, random_state=1).fit(X, two), X),
    ]


@pytest.mark.parametrize(
    "name, model, X",
    [pytest.param(*c, id=f"classifier, {c[0]}") for c in _classifiers()]
    + [pytest.param(*c, id=f"regressor, {c[0]}") for c in _regressors()],
)
@pytest.mark.parametrize("rows", ROWS)
def test_a_forest_predicts_scikit_learns_bits(
    name: str, model: Any, X: np.ndarray, rows: int
) -> None:
    assert forest_walk.walks(model), name
    part = X[-rows:]
    if is_classifier(model):
        _same(forest_walk.predict_proba(model, part), model.predict_proba(part))
    _same(forest_walk.predict(model, part), model.predict(part))


def test_a_forest_read_back_from_its_file_walks_the_same() -> None:
    _, model, X = _classifiers()[0]
    loaded = modelfile.loads(modelfile.dumps(model))
    _same(forest_walk.predict_proba(loaded, X[:50]), model.predict_proba(X[:50]))


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
def test_rows_of_any_numeric_type_are_checked_and_cast_as_the_forest_does(dtype: Any) -> None:
    _, model, X = _classifiers()[0]
    part = (X[:20] * 10).astype(dtype)
    _same(forest_walk.predict(model, part), model.predict(part))
    _same(forest_walk.predict(model, part.tolist()), model.predict(part.tolist()))


def test_rows_the_forest_refuses_are_refused_with_its_error() -> None:
    _, model, X = _classifiers()[0]
    for bad in (X[:2, :5], [[np.inf] * X.shape[1]], [[1e300] * X.shape[1]]):
        with pytest.raises(ValueError) as ours:
            forest_walk.predict(model, bad)
        with pytest.raises(ValueError) as theirs:
            model.predict(bad)
        assert str(ours.value) == str(theirs.value)


def test_what_it_does_not_walk_keeps_its_own_predict() -> None:
    X, y = make_classification(n_samples=200, n_features=5, random_state=0)
    threaded = RandomForestClassifier(n_estimators=8, n_jobs=2, random_state=0).fit(X, y)
    linear = LogisticRegression().fit(X, y)
    for model in (threaded, linear):
        assert not forest_walk.walks(model)
        _same(forest_walk.predict(model, X[:9]), np.asarray(model.predict(X[:9])))
        _same(forest_walk.predict_proba(model, X[:9]), model.predict_proba(X[:9]))
    regressor = RandomForestRegressor(n_estimators=4, random_state=0).fit(X, X[:, 0])
    with pytest.raises(AttributeError):
        forest_walk.predict_proba(regressor, X[:2])  # as the regressor's own: it has none
