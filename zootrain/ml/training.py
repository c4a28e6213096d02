"""Fitting one shard's model.

A shard is a slice of the training rows and may lack some of the job's classes.
How a shard is fitted belongs to its algorithm's merge family (zootrain.ml.merge):
classifiers are aligned to the job's full label set right after fitting, and exact
families record the statistics their merge needs, so that shard models can be
merged and also used on their own.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator

from zootrain.ml.algorithms import Algorithm, build_estimator, get_algorithm
from zootrain.ml.datasets import Split
from zootrain.ml.merge import shard_fitter
from zootrain.ml.partition import Strategy, shard_rows

_UINT32 = 0xFFFFFFFF


def shard_seed(job_seed: int, index: int) -> int:
    """Per-shard random_state in [0, 2**32): stable, and distinct across indexes.

    Both steps are bijections on uint32, so for a fixed job seed no two shard
    indexes below 2**32 share a seed and no shard grows the same trees as another.
    """
    if job_seed < 0 or index < 0:
        raise ValueError(f"job_seed and index must be >= 0, got {job_seed}, {index}")
    return _mix32((_mix32(job_seed & _UINT32) + index) & _UINT32)


def _mix32(x: int) -> int:
    # MurmurHash3's finaliser: an invertible avalanche, so nearby inputs such as
    # consecutive shard indexes map to unrelated seeds.
    x ^= x >> 16
    x = (x * 0x85EBCA6B) & _UINT32
    x ^= x >> 13
    x = (x * 0xC2B2AE35) & _UINT32
    x ^= x >> 16
    return x


def fit_shard(
    algorithm: str,
    params: dict[str, Any],
    *,
    X: np.ndarray,
    y: np.ndarray | None,
    classes: np.ndarray | None,
    random_state: int,
) -> BaseEstimator:
    """Fit `algorithm` on one shard; classifiers come back with classes_ == classes.

    Clustering algorithms ignore y and classes (the target only scores them).
    """
    alg = get_algorithm(algorithm)
    if alg.task == "clustering":
        y, classes = None, None
    else:
        classes = _check_target(alg, X, y, classes)
    if len(X) == 0:
        raise ValueError("cannot fit on an empty shard")

    model = build_estimator(algorithm, params, random_state)
    shard_fitter(alg.merge)(model, X, y, classes)
    return model


def fit_job_shard(
    algorithm: str,
    params: dict[str, Any],
    index: int,
    *,
    X: np.ndarray,
    y: np.ndarray | None,
    classes: np.ndarray | None,
    job_seed: int,
) -> BaseEstimator:
    """Shard ``index`` of a job on its rows: ``fit_shard`` with the shard's own seed, so that
    no two shards of a job grow the same trees."""
    return fit_shard(
        algorithm, params, X=X, y=y, classes=classes, random_state=shard_seed(job_seed, index)
    )


def fit_shards(
    algorithm: str,
    params: dict[str, Any],
    split: Split,
    shards: int,
    partition: Strategy,
    *,
    job_seed: int,
    partition_seed: int | None = None,
) -> tuple[list[BaseEstimator], list[int]]:
    """Every shard of a job fitted here, one after another, as the workers fit them one a
    process: shard i on its part of ``split``'s training rows (``shard_rows``, seeded with
    ``partition_seed``, by default ``job_seed``). The models and their row counts, which is what
    ``merge_models`` takes. For tools, tests and benchmarks: a worker reads only its own rows."""
    seed = job_seed if partition_seed is None else partition_seed
    models, sizes = [], []
    for index in range(shards):
        rows = shard_rows(len(split.X_train), shards, index, partition, seed, y=split.y_train)
        models.append(
            fit_job_shard(
                algorithm,
                params,
                index,
                X=split.X_train[rows],
                y=split.y_train[rows],
                classes=split.classes,
                job_seed=job_seed,
            )
        )
        sizes.append(len(rows))
    return models, sizes


def _check_target(
    alg: Algorithm, X: np.ndarray, y: np.ndarray | None, classes: np.ndarray | None
) -> np.ndarray | None:
    if y is None:
        raise ValueError(f"{alg.name} needs the target y")
    if len(X) != len(y):
        raise ValueError(f"X has {len(X)} rows but y has {len(y)}")
    if alg.task == "regression":
        if classes is not None:
            raise ValueError(f"{alg.name} is a regressor; classes must be None")
        return None
    if classes is None:
        return None
    classes = np.asarray(classes)
    if classes.ndim != 1 or len(classes) == 0:
        raise ValueError("classes must be a non-empty 1-d array")
    if len(classes) > 1 and not np.all(classes[:-1] < classes[1:]):
        raise ValueError("classes must be sorted and unique")
    unknown = np.setdiff1d(np.unique(y), classes)
    if len(unknown):
        raise ValueError(f"shard labels {unknown.tolist()} are not among the job's classes")
    return classes
