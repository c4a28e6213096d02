from __future__ import annotations

import copy

import numpy as np
import pytest
from sklearn.base import BaseEstimator
from sklearn.ensemble import RandomForestClassifier

from zootrain.ml.algorithms import ALGORITHMS
from zootrain.ml.datasets import BuiltinDataset, Split, load_dataset, split_dataset
from zootrain.ml.merge import MERGERS, SHARD_FITTERS, merge_models, merger, shard_fitter
from zootrain.ml.scoring import evaluate
from zootrain.ml.training import fit_shard, fit_shards


@pytest.fixture(scope="module")
def digits() -> Split:
    X, y = load_dataset(BuiltinDataset(kind="builtin", name="digits"))
    return split_dataset(X, y, task="classification", test_size=0.2, seed=0)


@pytest.fixture(scope="module")
def diabetes() -> Split:
    X, y = load_dataset(BuiltinDataset(kind="builtin", name="diabetes"))
    return split_dataset(X, y, task="regression", test_size=0.2, seed=0)


def _accuracy(model: BaseEstimator, split: Split) -> float:
    scores = evaluate(
        model, split.X_test, split.y_test, task="classification", classes=split.classes
    )
    return scores["accuracy"]


def _classes(split: Split) -> np.ndarray:
    assert split.classes is not None
    return split.classes


def _shard_models(
    algorithm: str, split: Split, shards: int, n_estimators: int
) -> tuple[list[BaseEstimator], list[int]]:
    params = {"n_estimators": n_estimators}
    return fit_shards(algorithm, params, split, shards, "random", job_seed=5, partition_seed=11)


@pytest.mark.parametrize("algorithm", ["random_forest_classifier", "extra_trees_classifier"])
def test_forest_union_adds_up_trees(algorithm: str, digits: Split) -> None:
    models, rows = _shard_models(algorithm, digits, shards=3, n_estimators=4)
    merged = merge_models(algorithm, models, rows)
    assert type(merged) is type(models[0])
    assert merged.n_estimators == 12
    assert len(merged.estimators_) == 12
    assert np.array_equal(merged.classes_, _classes(digits))
    assert merged.n_classes_ == 10
    assert merged.n_features_in_ == 64
    assert merged.n_outputs_ == 1
    assert merged.predict_proba(digits.X_test).shape == (len(digits.X_test), 10)


def test_merged_accuracy_close_to_single_forest(digits: Split) -> None:
    models, rows = _shard_models("random_forest_classifier", digits, shards=4, n_estimators=25)
    merged = merge_models("random_forest_classifier", models, rows)
    single = RandomForestClassifier(n_estimators=100, random_state=0, n_jobs=1)
    single.fit(digits.X_train, digits.y_train)
    merged_acc, single_acc = _accuracy(merged, digits), _accuracy(single, digits)
    assert merged_acc >= single_acc - 0.04, (merged_acc, single_acc)
    # Pooling must beat the typical shard on its own.
    assert merged_acc >= float(np.mean([_accuracy(m, digits) for m in models]))


def test_shard_missing_classes_still_merges(digits: Split) -> None:
    algorithm = "random_forest_classifier"
    full, _ = _shard_models(algorithm, digits, shards=1, n_estimators=5)
    keep = digits.y_train < 7  # classes 7, 8, 9 absent from this shard
    partial = fit_shard(
        algorithm,
        {"n_estimators": 5},
        X=digits.X_train[keep],
        y=digits.y_train[keep],
        classes=digits.classes,
        random_state=1,
    )
    assert np.array_equal(partial.classes_, _classes(digits))
    proba = partial.predict_proba(digits.X_test)
    assert proba.shape == (len(digits.X_test), 10)
    assert np.all(proba[:, 7:] == 0)
    merged = merge_models(algorithm, [full[0], partial], [len(digits.X_train), int(keep.sum())])
    merged_proba = merged.predict_proba(digits.X_test)
    assert merged_proba.shape == (len(digits.X_test), 10)
    assert np.allclose(merged_proba.sum(axis=1), 1.0)
    assert set(merged.predict(digits.X_test)) <= set(_classes(digits).tolist())


def test_inputs_are_not_mutated(digits: Split) -> None:
    models, rows = _shard_models("extra_trees_classifier", digits, shards=2, n_estimators=3)
    before = [copy.deepcopy(m) for m in models]
    proba_before = [m.predict_proba(digits.X_test) for m in models]
    merged = merge_models("extra_trees_classifier", models, rows)
    merged.estimators_[0].tree_ = None
    merged.classes_[0] = 99
    for m, b, p in zip(models, before, proba_before, strict=True):
        assert m.n_estimators == b.n_estimators == 3
        assert len(m.estimators_) == 3
        assert m.classes_[0] == 0
        assert np.array_equal(m.predict_proba(digits.X_test), p)


@pytest.mark.parametrize("algorithm", ["random_forest_regressor", "extra_trees_regressor"])
def test_regressor_merge(algorithm: str, diabetes: Split) -> None:
    models, rows = _shard_models(algorithm, diabetes, shards=3, n_estimators=10)
    merged = merge_models(algorithm, models, rows)
    assert merged.n_estimators == 30
    assert not hasattr(merged, "classes_")
    pred = merged.predict(diabetes.X_test)
    # Every tree counts equally, so the merged prediction is the mean of shard predictions.
    mean = np.mean([m.predict(diabetes.X_test) for m in models], axis=0)
    assert np.allclose(pred, mean)
    scores = evaluate(merged, diabetes.X_test, diabetes.y_test, task="regression", classes=None)
    assert set(scores) == {"r2", "rmse"}
    assert scores["r2"] > 0.2


def test_merge_errors(digits: Split, diabetes: Split) -> None:
    models, rows = _shard_models("random_forest_classifier", digits, shards=2, n_estimators=2)
    with pytest.raises(ValueError, match="empty"):
        merge_models("random_forest_classifier", [], [])
    with pytest.raises(ValueError, match="row counts"):
        merge_models("random_forest_classifier", models, rows[:1])
    with pytest.raises(ValueError, match="expected ExtraTreesClassifier"):
        merge_models("extra_trees_classifier", models, rows)
    with pytest.raises(ValueError, match="not fitted"):
        merge_models("random_forest_classifier", [RandomForestClassifier()], [10])

    odd = copy.deepcopy(models[1])
    odd.classes_ = odd.classes_ + 1
    with pytest.raises(ValueError, match="classes_"):
        merge_models("random_forest_classifier", [models[0], odd], rows)

    narrow = fit_shard(
        "random_forest_classifier",
        {"n_estimators": 2},
        X=digits.X_train[:, :10],
        y=digits.y_train,
        classes=digits.classes,
        random_state=0,
    )
    with pytest.raises(ValueError, match="n_features_in_"):
        merge_models("random_forest_classifier", [models[0], narrow], [1, 1])


def test_every_algorithm_has_a_registered_family() -> None:
    for alg in ALGORITHMS.values():
        assert alg.merge in MERGERS, alg.name
        assert shard_fitter(alg.merge) is SHARD_FITTERS[alg.merge]
    with pytest.raises(ValueError, match="already registered"):
        merger("forest_union")(MERGERS["forest_union"])
    with pytest.raises(NotImplementedError, match="no merger registered"):
        shard_fitter("nope")
