"""Dataset specifications, loading and the held-out test split.

Every worker loads the whole dataset from its spec and then takes its own shard,
so loading must be deterministic: same spec, same arrays, on every machine.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Self, assert_never

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator
from sklearn import datasets as skdatasets
from sklearn.model_selection import train_test_split

Task = Literal["classification", "regression"]
BuiltinName = Literal["iris", "wine", "breast_cancer", "digits", "diabetes"]

MAX_SYNTHETIC_ROWS = 2_000_000
MAX_SYNTHETIC_FEATURES = 500
# Every worker materialises the full dataset before taking its shard, so the cap is on
# rows x features (100M float64 values = 800 MB), not on either dimension alone.
MAX_SYNTHETIC_VALUES = 100_000_000
MAX_SYNTHETIC_CLASSES = 50
MAX_SEED = 2**32 - 1
DEFAULT_INFORMATIVE = 10
# sklearn's default; make_classification puts this many Gaussian clusters per class on
# the vertices of a hypercube in the informative subspace.
CLUSTERS_PER_CLASS = 2


@dataclass(frozen=True)
class _Builtin:
    loader: Callable[..., Any]
    task: Task
    shape: tuple[int, int]


# Shapes are hard-coded so that sizing a job (shard counts, limits) never touches disk.
# tests/unit/test_ml_datasets.py checks them against the real loaders.
_BUILTINS: dict[str, _Builtin] = {
    "iris": _Builtin(skdatasets.load_iris, "classification", (150, 4)),
    "wine": _Builtin(skdatasets.load_wine, "classification", (178, 13)),
    "breast_cancer": _Builtin(skdatasets.load_breast_cancer, "classification", (569, 30)),
    "digits": _Builtin(skdatasets.load_digits, "classification", (1797, 64)),
    "diabetes": _Builtin(skdatasets.load_diabetes, "regression", (442, 10)),
}


class BuiltinDataset(BaseModel):
    """A small dataset bundled with scikit-learn (no network access needed)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["builtin"]
    name: BuiltinName


class SyntheticDataset(BaseModel):
    """A generated dataset: sklearn's make_classification / make_regression."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["synthetic"]
    task: Task
    n_samples: int = Field(ge=20, le=MAX_SYNTHETIC_ROWS)
    n_features: int = Field(default=20, ge=1, le=MAX_SYNTHETIC_FEATURES)
    n_informative: int | None = Field(default=None, ge=1, le=MAX_SYNTHETIC_FEATURES)
    n_classes: int = Field(default=2, ge=2, le=MAX_SYNTHETIC_CLASSES)
    noise: float = Field(default=0.0, ge=0.0, le=1e6, allow_inf_nan=False)
    random_state: int = Field(default=0, ge=0, le=MAX_SEED)

    @property
    def informative(self) -> int:
        """n_informative with the default resolved."""
        if self.n_informative is None:
            return min(self.n_features, DEFAULT_INFORMATIVE)
        return self.n_informative

    @model_validator(mode="after")
    def _check_consistent(self) -> Self:
        if self.n_informative is not None and self.n_informative > self.n_features:
            raise ValueError(
                f"n_informative ({self.n_informative}) must be <= n_features ({self.n_features})"
            )
        values = self.n_samples * self.n_features
        if values > MAX_SYNTHETIC_VALUES:
            raise ValueError(
                f"n_samples * n_features = {values:,} exceeds the limit of "
                f"{MAX_SYNTHETIC_VALUES:,} values; reduce n_samples or n_features"
            )
        # Only non-default values are rejected so that model_dump() -> model_validate()
        # round-trips for both tasks.
        if self.task == "regression" and self.n_classes != 2:
            raise ValueError("n_classes only applies to task='classification'")
        if self.task == "classification":
            if self.noise != 0.0:
                raise ValueError("noise only applies to task='regression'")
            needed = self.n_classes * CLUSTERS_PER_CLASS
            available = 2**self.informative
            if needed > available:
                raise ValueError(
                    f"n_classes={self.n_classes} needs n_classes * {CLUSTERS_PER_CLASS} "
                    f"clusters per class = {needed} <= 2**n_informative = {available}; "
                    f"raise n_informative (now {self.informative}) or lower n_classes"
                )
        return self


# To add a dataset kind: define its model, add it to this union, and handle it in
# the `match` statements below (mypy's assert_never flags any that are missed).
AnyDataset = BuiltinDataset | SyntheticDataset
DatasetSpec = Annotated[AnyDataset, Field(discriminator="kind")]
DATASET_ADAPTER: TypeAdapter[AnyDataset] = TypeAdapter(DatasetSpec)


def parse_dataset(data: Any) -> AnyDataset:
    """Validate a JSON-like object into a dataset spec (raises pydantic.ValidationError)."""
    return DATASET_ADAPTER.validate_python(data)


def dataset_task(spec: AnyDataset) -> Task:
    match spec:
        case BuiltinDataset():
            return _BUILTINS[spec.name].task
        case SyntheticDataset():
            return spec.task
        case _:
            assert_never(spec)


def dataset_shape(spec: AnyDataset) -> tuple[int, int]:
    """(rows, features), without loading the data."""
    match spec:
        case BuiltinDataset():
            return _BUILTINS[spec.name].shape
        case SyntheticDataset():
            return spec.n_samples, spec.n_features
        case _:
            assert_never(spec)


def load_dataset(spec: AnyDataset) -> tuple[np.ndarray, np.ndarray]:
    """Materialise (X, y); X is float64. Deterministic for a given spec."""
    match spec:
        case BuiltinDataset():
            X, y = _BUILTINS[spec.name].loader(return_X_y=True)
        case SyntheticDataset():
            X, y = _make_synthetic(spec)
        case _:
            assert_never(spec)
    return np.ascontiguousarray(X, dtype=np.float64), np.ascontiguousarray(y)


def _make_synthetic(spec: SyntheticDataset) -> tuple[np.ndarray, np.ndarray]:
    if spec.task == "classification":
        return skdatasets.make_classification(
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
    return skdatasets.make_regression(
        n_samples=spec.n_samples,
        n_features=spec.n_features,
        n_informative=spec.informative,
        noise=spec.noise,
        random_state=spec.random_state,
    )


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
    if not 0.0 < test_size < 1.0:
        raise ValueError(f"test_size must be strictly between 0 and 1, got {test_size}")
    if not 0 <= seed <= MAX_SEED:
        raise ValueError(f"seed must be in [0, {MAX_SEED}], got {seed}")
    # Same rounding as train_test_split, so the checks below match what it will do.
    n_test = math.ceil(test_size * n)
    n_train = n - n_test
    if n_test < 1 or n_train < 1:
        raise ValueError(
            f"test_size={test_size} on {n} rows leaves {n_train} training and "
            f"{n_test} test rows; both must be at least 1"
        )

    classes: np.ndarray | None = None
    stratify: np.ndarray | None = None
    if task == "classification":
        classes, counts = np.unique(y, return_counts=True)
        # train_test_split refuses to stratify unless every class can appear on both
        # sides; fall back to a plain split rather than failing the job.
        if counts.min() >= 2 and min(n_test, n_train) >= len(classes):
            stratify = y

    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=test_size, random_state=seed, shuffle=True, stratify=stratify
    )
    return Split(X_train=X_train, y_train=y_train, X_test=X_test, y_test=y_test, classes=classes)
