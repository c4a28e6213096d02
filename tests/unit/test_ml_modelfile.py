from __future__ import annotations

import io
import json
import operator
import zipfile
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


_PARAMS: dict[str, dict[str, Any]] = {
    **{name: {"n_estimators": 3} for name, a in ALGORITHMS.items() if a.merge == "forest_union"},
    "kmeans": {"n_clusters": 3},
}


def _features(seed: int, n_rows: int) -> np.ndarray:
    # Non-negative, because multinomial_nb only takes counts-like features.
    return np.abs(np.random.RandomState(seed).normal(size=(n_rows, 5)))


def _fitted(algorithm: str, seed: int, drop_class: int | None = None) -> tuple[BaseEstimator, int]:
    """A shard model (missing `drop_class`, if given) and its number of rows."""
    X = _features(seed, 80)
    y: np.ndarray
    if ALGORITHMS[algorithm].task == "regression":
        y = X[:, 0] * 2.0 + np.random.RandomState(seed).normal(size=80)
        classes: np.ndarray | None = None
    else:
        y = np.arange(80) % 3
        if drop_class is not None:
            X, y = X[y != drop_class], y[y != drop_class]
        classes = np.array([0, 1, 2])
    params = _PARAMS.get(algorithm, {})
    model = fit_shard(algorithm, params, X=X, y=y, classes=classes, random_state=seed)
    return model, len(X)


def _shards(algorithm: str, drop_class: int) -> tuple[list[BaseEstimator], list[int]]:
    (a, rows_a), (b, rows_b) = _fitted(algorithm, 0), _fitted(algorithm, 1, drop_class)
    return [a, b], [rows_a, rows_b]


def _shards_and_merged(algorithm: str, drop_class: int) -> list[BaseEstimator]:
    shards, rows = _shards(algorithm, drop_class)
    return [*shards, merge_models(algorithm, shards, rows)]


def _fitted_state(model: BaseEstimator) -> dict[str, Any]:
    """Public fitted attributes that are plain values (trees are checked via predict)."""
    return {
        k: v
        for k, v in vars(model).items()
        if k.endswith("_") and not k.startswith("_") and isinstance(v, np.ndarray | float | int)
    }


@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))
def test_roundtrip_of_shard_and_merged_models(algorithm: str) -> None:
    X = _features(9, 20)
    for model in _shards_and_merged(algorithm, drop_class=2):
        data = dumps(model)
        assert isinstance(data, bytes)
        loaded = loads(data)
        assert type(loaded) is type(model)
        assert np.array_equal(loaded.predict(X), model.predict(X))
        if hasattr(model, "predict_proba"):
            assert np.array_equal(loaded.predict_proba(X), model.predict_proba(X))
        # Everything the merge relies on (e.g. sufficient statistics) survives too.
        state, loaded_state = _fitted_state(model), _fitted_state(loaded)
        assert state.keys() == loaded_state.keys()
        for name, value in state.items():
            assert np.array_equal(loaded_state[name], value), name


def test_merge_statistics_survive_a_roundtrip() -> None:
    for algorithm, attrs in {
        "linear_regression": ("n_samples_seen_", "x_mean_", "y_mean_", "xtx_", "xty_"),
        "ridge": ("n_samples_seen_", "x_mean_", "y_mean_", "xtx_", "xty_"),
        "sgd_classifier": ("coef_fitted_",),
        "logistic_regression": ("coef_fitted_",),
        "kmeans": ("cluster_sizes_",),
    }.items():
        shards, rows = _shards(algorithm, drop_class=1)
        merged = merge_models(algorithm, shards, rows)
        for model in (shards[1], merged):
            loaded = loads(dumps(model))
            for attr in attrs:
                assert np.array_equal(getattr(loaded, attr), getattr(model, attr)), attr
        # Loaded shards merge to the same model as the originals.
        remerged = merge_models(algorithm, [loads(dumps(m)) for m in shards], rows)
        X = _features(3, 10)
        assert np.array_equal(remerged.predict(X), merged.predict(X))


def test_trusted_types_are_exactly_what_the_algorithms_need() -> None:
    needed: set[str] = set()
    for algorithm in ALGORITHMS:
        for model in _shards_and_merged(algorithm, drop_class=0):
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


@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))
def test_the_compact_file_is_skops_own_file_read_the_same(algorithm: str) -> None:
    """dumps writes skops' file with a compact schema: skops' own loader, its audit and the
    file of skops.io.dumps give the same model."""
    X = _features(9, 20)
    for model in _shards_and_merged(algorithm, drop_class=2):
        ours, theirs = dumps(model), sio.dumps(model)
        with (
            zipfile.ZipFile(io.BytesIO(ours)) as archive,
            zipfile.ZipFile(io.BytesIO(theirs)) as reference,
        ):
            # The arrays' file names are Python object ids: they differ between any two dumps.
            assert len(archive.namelist()) == len(reference.namelist())
            schema = json.loads(archive.read("schema.json"))
            assert schema.keys() == json.loads(reference.read("schema.json")).keys()
        assert len(ours) < len(theirs)
        assert sorted(sio.get_untrusted_types(data=ours)) == sorted(
            sio.get_untrusted_types(data=theirs)
        )
        a, b = loads(ours), loads(theirs)
        assert np.array_equal(a.predict(X), b.predict(X))
        assert _fitted_state(a).keys() == _fitted_state(b).keys()
