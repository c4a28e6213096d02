"""Dataset specifications, whole-dataset loading and the whole-dataset held-out split.

Training tasks no longer load a dataset whole: they read or generate only their own rows
(zootrain.ml.rows, zootrain.ml.selection, zootrain.ml.synthetic). ``load_dataset`` and
``split_dataset`` remain for small data (bundled datasets are loaded whole), for tools and tests,
and as the previous data path the benchmark compares with; like everything here they are
deterministic: same spec, same arrays, on every machine.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, assert_never

import numpy as np

# The dataset specs (pydantic only) live in zootrain.spec, which the processes that never train
# import; they are re-exported here beside the loaders. scikit-learn is imported where data is
# loaded or split.
from zootrain.ml.selection import split_sizes
from zootrain.spec import BUILTINS, needs_record
from zootrain.spec import CLUSTERS_PER_CLASS as CLUSTERS_PER_CLASS
from zootrain.spec import DATASET_ADAPTER as DATASET_ADAPTER
from zootrain.spec import DATASET_ID_PATTERN as DATASET_ID_PATTERN
from zootrain.spec import DEFAULT_INFORMATIVE as DEFAULT_INFORMATIVE
from zootrain.spec import MAX_CLUSTER_STD as MAX_CLUSTER_STD
from zootrain.spec import MAX_COLUMN_NAME_CHARS as MAX_COLUMN_NAME_CHARS
from zootrain.spec import MAX_FEATURE_COLUMNS as MAX_FEATURE_COLUMNS
from zootrain.spec import MAX_SEED as MAX_SEED
from zootrain.spec import MAX_SYNTHETIC_CLASSES as MAX_SYNTHETIC_CLASSES
from zootrain.spec import MAX_SYNTHETIC_FEATURES as MAX_SYNTHETIC_FEATURES
from zootrain.spec import MAX_SYNTHETIC_ROWS as MAX_SYNTHETIC_ROWS
from zootrain.spec import MAX_SYNTHETIC_VALUES as MAX_SYNTHETIC_VALUES
from zootrain.spec import AnyDataset as AnyDataset
from zootrain.spec import BuiltinDataset as BuiltinDataset
from zootrain.spec import BuiltinName as BuiltinName
from zootrain.spec import DatasetSpec as DatasetSpec
from zootrain.spec import SyntheticDataset as SyntheticDataset
from zootrain.spec import SyntheticTask as SyntheticTask
from zootrain.spec import Task as Task
from zootrain.spec import UploadedDataset as UploadedDataset
from zootrain.spec import dataset_classes as dataset_classes
from zootrain.spec import dataset_shape as dataset_shape
from zootrain.spec import dataset_task as dataset_task
from zootrain.spec import parse_dataset as parse_dataset


def _loader(name: str) -> Callable[..., Any]:
    from sklearn import datasets as skdatasets

    loader: Callable[..., Any] = getattr(skdatasets, BUILTINS[name].loader_name)
    return loader


def load_dataset(spec: AnyDataset) -> tuple[np.ndarray, np.ndarray]:
    """Materialise (X, y); X is float64. Deterministic for a given spec."""
    match spec:
        case BuiltinDataset():
            X, y = _loader(spec.name)(return_X_y=True)
        case SyntheticDataset():
            X, y = _make_synthetic(spec)
        case UploadedDataset():
            raise needs_record(spec)
        case _:
            assert_never(spec)
    return np.ascontiguousarray(X, dtype=np.float64), np.ascontiguousarray(y)


def _make_synthetic(spec: SyntheticDataset) -> tuple[np.ndarray, np.ndarray]:
    from sklearn import datasets as skdatasets

    X: np.ndarray  # scikit-learn ships no types: say what its generators return
    y: np.ndarray
    if spec.task == "blobs":
        X, y = skdatasets.make_blobs(
            n_samples=spec.n_samples,
            n_features=spec.n_features,
            centers=spec.n_classes,
            cluster_std=spec.cluster_std,
            random_state=spec.random_state,
        )
        return X, y
    if spec.task == "classification":
        X, y = skdatasets.make_classification(
            n_samples=spec.n_samples,
            n_features=spec.n_features,
            n_informative=spec.informative,
            # Non-informative columns are pure noise, which keeps the spec easy to read.
            n_redundant=0,
            n_repeated=0,
            n_classes=spec.n_classes,
            n_clusters_per_class=CLUSTERS_PER_CLASS,
            random_state=spec.random_state,
        )
        return X, y
    X, y = skdatasets.make_regression(
        n_samples=spec.n_samples,
        n_features=spec.n_features,
        n_informative=spec.informative,
        noise=spec.noise,
        random_state=spec.random_state,
    )
    return X, y


# eq=False: the generated __eq__ would compare arrays elementwise and raise.
@dataclass(frozen=True, eq=False)
class Split:
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    # Sorted labels of the whole dataset (None for regression). Shards and the test set
    # may each miss some labels; models and metrics are aligned to this instead.
    classes: np.ndarray | None


def split_dataset(
    X: np.ndarray, y: np.ndarray, *, task: Task, test_size: float, seed: int
) -> Split:
    """Cut the held-out test set (before sharding the rest). Deterministic from seed.

    Stratified for classification whenever that is possible; otherwise a plain
    shuffled split, so that rare classes never make a job fail.
    """
    n = len(X)
    if len(y) != n:
        raise ValueError(f"X has {n} rows but y has {len(y)}")
    # Same rounding as train_test_split, so the checks below match what it will do.
    n_train, n_test = split_sizes(n, test_size)
    if not 0 <= seed <= MAX_SEED:
        raise ValueError(f"seed must be in [0, {MAX_SEED}], got {seed}")

    classes: np.ndarray | None = None
    stratify: np.ndarray | None = None
    if task == "classification":
        classes, counts = np.unique(y, return_counts=True)
        # train_test_split refuses to stratify unless every class can appear on both
        # sides; fall back to a plain split rather than failing the job.
        if counts.min() >= 2 and min(n_test, n_train) >= len(classes):
            stratify = y

    from sklearn.model_selection import train_test_split

    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=test_size, random_state=seed, shuffle=True, stratify=stratify
    )
    return Split(X_train=X_train, y_train=y_train, X_test=X_test, y_test=y_test, classes=classes)
