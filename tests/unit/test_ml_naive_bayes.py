from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from sklearn.base import BaseEstimator
from sklearn.naive_bayes import GaussianNB, MultinomialNB

from zootrain.ml.datasets import BuiltinDataset, Split, load_dataset, split_dataset
from zootrain.ml.merge import merge_models
from zootrain.ml.partition import Strategy
from zootrain.ml.training import fit_shard, fit_shards

EXACT = {"rtol": 0.0, "atol": 1e-8}


@pytest.fixture(scope="module")
def digits() -> Split:
    X, y = load_dataset(BuiltinDataset(kind="builtin", name="digits"))
    return split_dataset(X, y, task="classification", test_size=0.2, seed=0)


@pytest.fixture(scope="module")
def sorted_digits(digits: Split) -> Split:
    """Training rows ordered by class: range shards each miss most classes."""
    order = np.argsort(digits.y_train, kind="stable")
    return Split(
        X_train=digits.X_train[order],
        y_train=digits.y_train[order],
        X_test=digits.X_test,
        y_test=digits.y_test,
        classes=digits.classes,
    )


def _shards(
    algorithm: str, params: dict[str, Any], split: Split, shards: int, strategy: Strategy
) -> tuple[list[BaseEstimator], list[int]]:
    # Naive Bayes draws nothing at random: the shards' seeds do not matter, only their rows.
    return fit_shards(algorithm, params, split, shards, strategy, job_seed=5)


_REFERENCE = {"gaussian_nb": GaussianNB, "multinomial_nb": MultinomialNB}
_ATTRS = {
    "gaussian_nb": ("class_count_", "class_prior_", "theta_", "var_", "epsilon_"),
    "multinomial_nb": ("class_count_", "feature_count_", "feature_log_prob_", "class_log_prior_"),
}


@pytest.mark.parametrize(
    ("algorithm", "params"),
    [
        ("gaussian_nb", {}),
        ("gaussian_nb", {"var_smoothing": 0.01}),
        ("gaussian_nb", {"priors": [0.1] * 10}),
        ("multinomial_nb", {}),
        ("multinomial_nb", {"alpha": 0.3, "fit_prior": False}),
        ("multinomial_nb", {"class_prior": [0.05] * 5 + [0.15] * 5}),
    ],
)
@pytest.mark.parametrize(("shards", "strategy"), [(4, "random"), (7, "range")])
def test_merge_equals_a_fit_on_all_rows(
    algorithm: str,
    params: dict[str, Any],
    shards: int,
    strategy: Strategy,
    sorted_digits: Split,
) -> None:
    split = sorted_digits
    models, rows = _shards(algorithm, params, split, shards, strategy)
    if strategy == "range":
        # The hard case: most shards see only one or two classes.
        assert all((m.class_count_ == 0).sum() >= 7 for m in models)
    merged = merge_models(algorithm, models, rows)
    full = _REFERENCE[algorithm](**params).fit(split.X_train, split.y_train)
    for attr in _ATTRS[algorithm]:
        assert np.allclose(getattr(merged, attr), getattr(full, attr), **EXACT), attr
    assert np.array_equal(merged.classes_, full.classes_)
    proba = merged.predict_proba(split.X_test)
    assert np.allclose(proba, full.predict_proba(split.X_test), **EXACT)
    assert np.array_equal(merged.predict(split.X_test), full.predict(split.X_test))
    assert merged.get_params() == models[0].get_params()


def test_gaussian_epsilon_comes_from_all_rows(sorted_digits: Split) -> None:
    # Each range shard sees a few classes, so its own feature variances (and epsilon)
    # differ from those of all rows; the merge must not use any shard's epsilon.
    models, rows = _shards("gaussian_nb", {"var_smoothing": 0.1}, sorted_digits, 4, "range")
    full = GaussianNB(var_smoothing=0.1).fit(sorted_digits.X_train, sorted_digits.y_train)
    assert all(abs(m.epsilon_ - full.epsilon_) > 1e-3 for m in models)
    merged = merge_models("gaussian_nb", models, rows)
    assert merged.epsilon_ == pytest.approx(full.epsilon_, rel=1e-12)


def test_shard_missing_classes_gets_zero_rows(digits: Split) -> None:
    keep = digits.y_train < 7
    for algorithm in ("gaussian_nb", "multinomial_nb"):
        model = fit_shard(
            algorithm,
            {},
            X=digits.X_train[keep],
            y=digits.y_train[keep],
            classes=digits.classes,
            random_state=0,
        )
        assert np.array_equal(model.classes_, digits.classes)
        assert np.all(model.class_count_[7:] == 0)
        with np.errstate(divide="ignore"):  # log(prior 0) for the unseen classes
            proba = model.predict_proba(digits.X_test)
        assert proba.shape == (len(digits.X_test), 10)
        assert np.all(proba[:, 7:] == 0)


def test_multinomial_refuses_negative_features(digits: Split) -> None:
    X = digits.X_train.copy()
    X[3, 5] = -1.0
    with pytest.raises(ValueError, match=r"non-negative features .* columns 5 have negative"):
        fit_shard(
            "multinomial_nb", {}, X=X, y=digits.y_train, classes=digits.classes, random_state=0
        )


def test_merge_checks_row_counts(digits: Split) -> None:
    models, rows = _shards("multinomial_nb", {}, digits, 2, "random")
    with pytest.raises(ValueError, match=r"fitted on \d+ rows but rows\[1\]"):
        merge_models("multinomial_nb", models, [rows[0], rows[1] - 1])


def test_inputs_are_not_mutated(digits: Split) -> None:
    models, rows = _shards("gaussian_nb", {}, digits, 3, "random")
    before = [(m.theta_.copy(), m.var_.copy(), m.class_count_.copy()) for m in models]
    merged = merge_models("gaussian_nb", models, rows)
    merged.theta_[:] = 0
    merged.classes_[0] = 99
    for m, (theta, var, counts) in zip(models, before, strict=True):
        assert np.array_equal(m.theta_, theta)
        assert np.array_equal(m.var_, var)
        assert np.array_equal(m.class_count_, counts)
        assert m.classes_[0] == 0
