from __future__ import annotations

import operator
from typing import Any

import numpy as np
import pytest
import skops.io as sio
from sklearn.base import BaseEstimator
from sklearn.ensemble import RandomForestClassifier

from zootrain.ml.algorithms import ALGORITHMS
from zootrain.ml.merge import merge_models
from zootrain.ml.modelfile import TRUSTED_TYPES, UntrustedModelError, dumps, loads
from zootrain.ml.training import fit_shard

EXECUTED: list[str] = []


class Payload:
    """Stands in for an attacker's class: any code in it must never run on load."""

    def __init__(self) -> None:
        self.command = "echo pwned"

    def __setstate__(self, state: dict[str, Any]) -> None:
        EXECUTED.append("setstate")
        self.__dict__.update(state)


def _fitted(algorithm: str, seed: int, drop_class: int | None = None) -> BaseEstimator:
    rng = np.random.RandomState(seed)
    X = rng.normal(size=(80, 5))
    y: np.ndarray
    if ALGORITHMS[algorithm].task == "classification":
        y = np.arange(80) % 3
        if drop_class is not None:
            X, y = X[y != drop_class], y[y != drop_class]
        classes: np.ndarray | None = np.array([0, 1, 2])
    else:
        y = X[:, 0] * 2.0 + rng.normal(size=80)
        classes = None
    return fit_shard(algorithm, {"n_estimators": 3}, X=X, y=y, classes=classes, random_state=seed)


@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))
def test_roundtrip_of_shard_and_merged_models(algorithm: str) -> None:
    shards = [_fitted(algorithm, 0), _fitted(algorithm, 1, drop_class=2)]
    merged = merge_models(algorithm, shards, [80, 53])
    X = np.random.RandomState(9).normal(size=(20, 5))
    for model in [*shards, merged]:
        data = dumps(model)
        assert isinstance(data, bytes)
        loaded = loads(data)
        assert type(loaded) is type(model)
        assert np.array_equal(loaded.predict(X), model.predict(X))
        if hasattr(model, "predict_proba"):
            assert np.array_equal(loaded.predict_proba(X), model.predict_proba(X))


def test_trusted_types_are_exactly_what_the_algorithms_need() -> None:
    needed: set[str] = set()
    for algorithm in ALGORITHMS:
        shards = [_fitted(algorithm, 0), _fitted(algorithm, 1, drop_class=0)]
        for model in [*shards, merge_models(algorithm, shards, [80, 53])]:
            needed |= set(sio.get_untrusted_types(data=dumps(model)))
    assert needed == TRUSTED_TYPES


def test_object_of_unknown_class_is_refused_without_running_it() -> None:
    data = sio.dumps({"model": Payload()})
    EXECUTED.clear()
    with pytest.raises(UntrustedModelError, match="Payload") as info:
        loads(data)
    assert info.value.types == [f"{__name__}.Payload"]
    assert EXECUTED == []


def test_model_holding_a_function_is_refused() -> None:
    model = RandomForestClassifier(n_estimators=2, random_state=0).fit(
        np.eye(4), np.array([0, 1, 0, 1])
    )
    model.oob_score = operator.call  # any callable reference is a code pointer
    with pytest.raises(UntrustedModelError, match=r"_operator\.call"):
        loads(dumps(model))


def test_untrusted_error_is_a_value_error() -> None:
    assert issubclass(UntrustedModelError, ValueError)


@pytest.mark.parametrize("data", [b"", b"not a zip file", b"PK\x03\x04garbage"])
def test_garbage_is_refused(data: bytes) -> None:
    with pytest.raises(ValueError, match="not a skops model file"):
        loads(data)
