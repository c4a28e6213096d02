from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier
from sklearn.metrics import accuracy_score, f1_score

from zootrain.ml.datasets import BuiltinDataset, load_dataset
from zootrain.ml.scoring import evaluate
from zootrain.ml.training import fit_shard, shard_seed


def test_shard_seed_is_stable_distinct_and_uint32() -> None:
    seeds = [shard_seed(42, i) for i in range(1000)]
    assert len(set(seeds)) == 1000
    assert all(0 <= s < 2**32 for s in seeds)
    assert seeds == [shard_seed(42, i) for i in range(1000)]
    assert shard_seed(42, 0) != shard_seed(43, 0)
    assert shard_seed(2**40, 3) < 2**32
    # Pinned: workers on different machines must derive the same seed.
    assert shard_seed(0, 0) == 0
    assert shard_seed(1, 0) == 804215951
    with pytest.raises(ValueError):
        shard_seed(-1, 0)


@pytest.mark.parametrize("algorithm", ["random_forest_classifier", "extra_trees_classifier"])
def test_shard_missing_classes_is_padded_exactly(algorithm: str) -> None:
    X, y = load_dataset(BuiltinDataset(kind="builtin", name="wine"))
    keep = y != 1
    params = {"n_estimators": 5}
    plain = fit_shard(algorithm, params, X=X[keep], y=y[keep], classes=None, random_state=3)
    aligned = fit_shard(
        algorithm, params, X=X[keep], y=y[keep], classes=np.array([0, 1, 2]), random_state=3
    )
    assert plain.classes_.tolist() == [0, 2]
    assert aligned.classes_.tolist() == [0, 1, 2]
    assert aligned.n_classes_ == 3
    for tree in aligned.estimators_:
        assert tree.n_classes_ == 3
        assert tree.tree_.n_classes.tolist() == [3]
    proba = aligned.predict_proba(X)
    assert proba.shape == (len(X), 3)
    # Same trees, same probabilities; the missing class just gets a zero column.
    assert np.array_equal(proba[:, [0, 2]], plain.predict_proba(X))
    assert np.all(proba[:, 1] == 0)
    assert np.array_equal(aligned.predict(X), plain.predict(X))


def test_single_class_shard() -> None:
    X, y = load_dataset(BuiltinDataset(kind="builtin", name="iris"))
    model = fit_shard(
        "random_forest_classifier",
        {"n_estimators": 2},
        X=X[y == 2],
        y=y[y == 2],
        classes=np.array([0, 1, 2]),
        random_state=0,
    )
    assert model.predict_proba(X).tolist() == [[0.0, 0.0, 1.0]] * len(X)


def test_fit_shard_errors() -> None:
    X, y = load_dataset(BuiltinDataset(kind="builtin", name="iris"))
    with pytest.raises(ValueError, match=r"labels \[2\] are not among"):
        fit_shard(
            "random_forest_classifier", {}, X=X, y=y, classes=np.array([0, 1]), random_state=0
        )
    with pytest.raises(ValueError, match="classes must be None"):
        fit_shard(
            "random_forest_regressor", {}, X=X, y=y, classes=np.array([0, 1, 2]), random_state=0
        )
    with pytest.raises(ValueError, match="needs the target y"):
        fit_shard("gaussian_nb", {}, X=X, y=None, classes=None, random_state=0)
    with pytest.raises(ValueError, match="sorted"):
        fit_shard(
            "random_forest_classifier", {}, X=X, y=y, classes=np.array([2, 1, 0]), random_state=0
        )


def test_evaluate_gives_json_safe_floats() -> None:
    X, y = load_dataset(BuiltinDataset(kind="builtin", name="iris"))
    keep = y != 0
    model = fit_shard(
        "extra_trees_classifier",
        {"n_estimators": 5},
        X=X[keep],
        y=y[keep],
        classes=np.array([0, 1, 2]),
        random_state=0,
    )
    scores = evaluate(model, X, y, task="classification", classes=np.array([0, 1, 2]))
    assert set(scores) == {"accuracy", "f1_macro", "log_loss"}
    assert all(type(v) is float and math.isfinite(v) for v in scores.values())
    # Class 0 was never seen, so its rows are all wrong, but log_loss stays finite.
    assert scores["accuracy"] == pytest.approx(2 / 3, abs=0.05)

    Xr, yr = load_dataset(BuiltinDataset(kind="builtin", name="diabetes"))
    reg = fit_shard(
        "random_forest_regressor", {"n_estimators": 5}, X=Xr, y=yr, classes=None, random_state=0
    )
    scores = evaluate(reg, Xr, yr, task="regression", classes=None)
    assert set(scores) == {"r2", "rmse"}
    assert all(type(v) is float for v in scores.values())
    with pytest.raises(ValueError, match="y is needed"):
        evaluate(reg, Xr, None, task="regression", classes=None)
    # r2 is undefined on one row: left out rather than NaN.
    assert set(evaluate(reg, Xr[:1], yr[:1], task="regression", classes=None)) == {"rmse"}


@pytest.mark.parametrize("forest", [RandomForestClassifier, ExtraTreesClassifier])
def test_a_forest_is_scored_from_one_pass_with_predicts_own_answers(forest: type) -> None:
    X, y = make_classification(n_samples=600, n_classes=3, n_informative=5, random_state=3)
    model = forest(n_estimators=7, random_state=0).fit(X[:400], y[:400])
    scores = evaluate(model, X[400:], y[400:], task="classification", classes=None)
    predicted = model.predict(X[400:])
    assert scores["accuracy"] == pytest.approx(accuracy_score(y[400:], predicted))
    assert scores["f1_macro"] == pytest.approx(f1_score(y[400:], predicted, average="macro"))
