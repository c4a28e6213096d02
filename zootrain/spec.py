"""The job spec and the types a job record holds: pydantic only, no scikit-learn, no numpy.

Everything a process needs to read, write or show a job lives here: the job spec and its
dataset specs, an uploaded dataset's resolved source and encoding plan, and a plain table of
the algorithms (name, task, merge kind). Every process imports this module (the job service, a
worker's main process, the client, the CLI), and none of them should pay for scikit-learn,
scipy, pandas or numpy to do it: those cost a process about 170 MB and a CLI command a third of
a second. tests/unit/test_boundary.py holds the line.

A spec parsed here is checked field by field (types, ranges, patterns, the dataset's own
consistency) and nothing more. What needs scikit-learn (the parameters against the estimator's
own constraints, a search's candidates, the scorer's name) and what a submit checks across
fields (the algorithm against the dataset, shards against rows) is one explicit call,
``zootrain.ml.validation.validate_submission``, made by the submit route and by the training
child. Reading a record back from ZooKeeper never runs it: the record was written by a submit
that did.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Self, assert_never, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationInfo,
    computed_field,
    field_validator,
    model_validator,
)

# -- the algorithms ----------------------------------------------------------------------------

Task = Literal["classification", "regression"]
AlgorithmTask = Literal["classification", "regression", "clustering"]
"""What an algorithm learns. Clustering ignores the target, so it fits any dataset."""
MergeKind = Literal[
    "forest_union",
    "linear_average",
    "softmax_average",
    "normal_equations",
    "gaussian_nb",
    "multinomial_nb",
    "kmeans_centroids",
]


@dataclass(frozen=True)
class AlgorithmInfo:
    """What a process that never trains needs to know of an algorithm. zootrain.ml.algorithms
    (the estimators, with scikit-learn) checks at import that it agrees with this table."""

    name: str
    task: AlgorithmTask
    merge: MergeKind
    """Merge family in zootrain.ml.merge: how a shard is fitted and shard models combined."""
    replicable: bool = False
    """Shards may all train on every row (partition "replicate"): only for ensembles whose
    shards grow different members from their own seeds."""


ALGORITHM_TABLE: dict[str, AlgorithmInfo] = {
    a.name: a
    for a in (
        AlgorithmInfo("random_forest_classifier", "classification", "forest_union", True),
        AlgorithmInfo("random_forest_regressor", "regression", "forest_union", True),
        AlgorithmInfo("extra_trees_classifier", "classification", "forest_union", True),
        AlgorithmInfo("extra_trees_regressor", "regression", "forest_union", True),
        AlgorithmInfo("sgd_classifier", "classification", "linear_average"),
        AlgorithmInfo("sgd_regressor", "regression", "linear_average"),
        AlgorithmInfo("logistic_regression", "classification", "softmax_average"),
        AlgorithmInfo("linear_regression", "regression", "normal_equations"),
        AlgorithmInfo("ridge", "regression", "normal_equations"),
        AlgorithmInfo("gaussian_nb", "classification", "gaussian_nb"),
        AlgorithmInfo("multinomial_nb", "classification", "multinomial_nb"),
        AlgorithmInfo("kmeans", "clustering", "kmeans_centroids"),
    )
}
ALGORITHM_NAMES: tuple[str, ...] = tuple(ALGORITHM_TABLE)
ROUNDS_ALGORITHMS: tuple[str, ...] = (
    "logistic_regression",
    "kmeans",
    "sgd_classifier",
    "sgd_regressor",
)
"""Algorithms that train in rounds by default (zootrain.ml.round_steps), unless the spec asks
for one-shot averaging (``merge: "average"``) or, for SGD, sets what rounds cannot honour."""
ROUNDS_CAPABLE: tuple[str, ...] = ROUNDS_ALGORITHMS
"""Algorithms that can train in rounds (``merge: "rounds"``)."""


def logistic_penalty(params: Mapping[str, Any]) -> str | None:
    """The penalty a LogisticRegression with ``params`` applies: ``penalty`` when set, else (its
    default, "deprecated" since scikit-learn 1.8) what ``l1_ratio`` makes it."""
    penalty = params.get("penalty", "deprecated")
    if penalty != "deprecated":
        return str(penalty) if penalty is not None else None
    l1_ratio = params.get("l1_ratio")
    return "l2" if not l1_ratio else "l1" if l1_ratio == 1 else "elasticnet"


def one_shot_only(algorithm: str, params: dict[str, Any]) -> str | None:
    """The parameter that keeps ``algorithm`` from training in rounds, if one does: SGD's
    ``average`` (its averaged weights are not what the next epoch starts from),
    ``early_stopping`` and ``class_weight: "balanced"`` (scikit-learn's ``partial_fit``, which
    runs a round's epoch, refuses both); a logistic regression's L1 or elastic-net penalty
    (not smooth: L-BFGS cannot minimise it), its ``class_weight`` (the rounds' loss weighs
    every row alike) and the ``liblinear`` solver (whose objective penalises the intercept).
    Such a spec averages once by default."""
    if algorithm == "logistic_regression":
        if logistic_penalty(params) in ("l1", "elasticnet"):
            return "penalty" if params.get("penalty", "deprecated") != "deprecated" else "l1_ratio"
        if params.get("class_weight") is not None:
            return "class_weight"
        if params.get("solver") == "liblinear":
            return "solver"
        return None
    if algorithm not in ("sgd_classifier", "sgd_regressor"):
        return None
    if params.get("average") not in (None, False, 0):
        return "average"
    if params.get("early_stopping") not in (None, False):
        return "early_stopping"
    if params.get("class_weight") == "balanced":
        return "class_weight"
    return None


class ParamError(ValueError):
    """A user-supplied parameter is unknown, reserved or has a bad value."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param

    def __reduce__(self) -> tuple[Any, ...]:
        # Crosses process boundaries whole (the default pickling would drop ``param``).
        return (ParamError, (self.param, str(self)))


def algorithm_info(name: str) -> AlgorithmInfo:
    try:
        return ALGORITHM_TABLE[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown algorithm {name!r}; known algorithms: {', '.join(sorted(ALGORITHM_TABLE))}"
        ) from None


def check_task(algorithm: str, task: Task) -> None:
    """Refuse e.g. a classifier on a regression dataset (clustering fits any dataset)."""
    alg = algorithm_info(algorithm)
    if alg.task not in (task, "clustering"):
        fitting = sorted(a.name for a in ALGORITHM_TABLE.values() if a.task in (task, "clustering"))
        raise ValueError(
            f"algorithm {alg.name!r} is for {alg.task} but the dataset is a {task} task; "
            f"use one of: {', '.join(fitting)}"
        )


def check_features(algorithm: str, dataset: object) -> None:
    """Refuse what the dataset's kind settles before a row is loaded: multinomial naive Bayes
    needs non-negative features, and a synthetic dataset's are Gaussian (always some negative),
    so such a job could only fail on every attempt. (An uploaded dataset is checked when its
    rows are read; the builtin classification datasets are non-negative.)"""
    if algorithm == "multinomial_nb" and getattr(dataset, "kind", None) == "synthetic":
        raise ValueError(
            "algorithm 'multinomial_nb' needs non-negative features (counts or frequencies) "
            "but a synthetic dataset's features are Gaussian, with negative values; use a "
            "builtin or uploaded dataset of counts"
        )


# -- partitions --------------------------------------------------------------------------------

Strategy = Literal["random", "stratified", "range", "replicate"]
STRATEGIES: tuple[Strategy, ...] = get_args(Strategy)
Partition = Literal["random", "stratified", "range", "replicate", "auto"]
"""What a spec may ask for: a strategy, or "auto", which the submit turns into one
(zootrain.shard_plan) before the job is recorded: workers only ever see a strategy."""


def check_partition(algorithm: str, strategy: Partition, task: Task) -> None:
    """Refuse a strategy that makes no sense for this algorithm and dataset task.

    `stratified` balances labels, so it needs a classification dataset. `replicate`
    trains every shard on all rows, which only adds anything for ensembles whose
    shards grow different members from their own seeds (AlgorithmInfo.replicable); any
    other merge would average S copies of nearly the same model or, for the exact
    merges, count every row S times.
    """
    alg = algorithm_info(algorithm)
    if strategy == "auto":
        return  # any algorithm: the submit chooses a strategy that fits it
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown partition {strategy!r}; expected one of {list(STRATEGIES)}")
    if strategy == "stratified" and task != "classification":
        raise ValueError(
            f"partition 'stratified' balances class labels across shards, but the dataset "
            f"is a {task} task; use 'random' or 'range'"
        )
    if strategy == "replicate" and not alg.replicable:
        ensembles = sorted(a.name for a in ALGORITHM_TABLE.values() if a.replicable)
        raise ValueError(
            f"partition 'replicate' gives every shard all rows, which only helps ensembles "
            f"whose shards grow different trees ({', '.join(ensembles)}); {alg.name} would "
            "fit the same model on every shard: use 'random', 'stratified' or 'range'"
        )


# -- datasets ----------------------------------------------------------------------------------

# What a synthetic dataset is generated by: make_classification, make_regression or
# make_blobs. Blobs are a classification dataset whose labels are the blob ids.
SyntheticTask = Literal["classification", "regression", "blobs"]
BuiltinName = Literal["iris", "wine", "breast_cancer", "digits", "diabetes"]

MAX_SYNTHETIC_ROWS = 2_000_000
MAX_SYNTHETIC_FEATURES = 500
# The cap is on rows x features (100M float64 values = 800 MB), not on either dimension alone:
# a shard generates only its rows, but the baseline, search candidates and replicate shards
# generate every training row.
MAX_SYNTHETIC_VALUES = 100_000_000
MAX_SYNTHETIC_CLASSES = 50
DATASET_ID_PATTERN = r"^[0-9a-f]{20}$"
MAX_COLUMN_NAME_CHARS = 256
MAX_FEATURE_COLUMNS = 10_000
MAX_CLUSTER_STD = 1e6
MAX_SEED = 2**32 - 1
DEFAULT_INFORMATIVE = 10
# sklearn's default; make_classification puts this many Gaussian clusters per class on
# the vertices of a hypercube in the informative subspace.
CLUSTERS_PER_CLASS = 2


@dataclass(frozen=True)
class BuiltinInfo:
    loader_name: str  # a function of sklearn.datasets (zootrain.ml.datasets calls it)
    task: Task
    shape: tuple[int, int]
    classes: int | None  # distinct labels of a classification dataset


# Shapes are hard-coded so that sizing a job (shard counts, limits) never touches disk.
# tests/unit/test_ml_datasets.py checks them against the real loaders.
BUILTINS: dict[str, BuiltinInfo] = {
    "iris": BuiltinInfo("load_iris", "classification", (150, 4), 3),
    "wine": BuiltinInfo("load_wine", "classification", (178, 13), 3),
    "breast_cancer": BuiltinInfo("load_breast_cancer", "classification", (569, 30), 2),
    "digits": BuiltinInfo("load_digits", "classification", (1797, 64), 10),
    "diabetes": BuiltinInfo("load_diabetes", "regression", (442, 10), None),
}


class BuiltinDataset(BaseModel):
    """A small dataset bundled with scikit-learn (no network access needed)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    kind: Literal["builtin"]
    name: BuiltinName


class SyntheticDataset(BaseModel):
    """A generated dataset: sklearn's make_classification / make_regression / make_blobs.

    task="blobs" draws n_classes isotropic Gaussian blobs (standard deviation
    cluster_std) in n_features dimensions; the label of a row is its blob.
    """

    model_config = ConfigDict(extra="forbid", strict=True)

    kind: Literal["synthetic"]
    task: SyntheticTask
    n_samples: int = Field(ge=20, le=MAX_SYNTHETIC_ROWS)
    n_features: int = Field(default=20, ge=1, le=MAX_SYNTHETIC_FEATURES)
    n_informative: int | None = Field(default=None, ge=1, le=MAX_SYNTHETIC_FEATURES)
    n_classes: int = Field(default=2, ge=2, le=MAX_SYNTHETIC_CLASSES)
    noise: float = Field(default=0.0, ge=0.0, le=1e6, allow_inf_nan=False)
    cluster_std: float = Field(default=1.0, gt=0.0, le=MAX_CLUSTER_STD, allow_inf_nan=False)
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
        # round-trips for every task.
        if self.task == "regression" and self.n_classes != 2:
            raise ValueError("n_classes only applies to task='classification' or 'blobs'")
        if self.task != "regression" and self.noise != 0.0:
            raise ValueError("noise only applies to task='regression'")
        if self.task != "blobs" and self.cluster_std != 1.0:
            raise ValueError("cluster_std only applies to task='blobs'")
        if self.task == "blobs" and self.n_informative is not None:
            # Every blob dimension carries signal; there is nothing to choose.
            raise ValueError("n_informative does not apply to task='blobs'")
        if self.task == "classification":
            needed = self.n_classes * CLUSTERS_PER_CLASS
            available = 2**self.informative
            if needed > available:
                raise ValueError(
                    f"n_classes={self.n_classes} needs n_classes * {CLUSTERS_PER_CLASS} "
                    f"clusters per class = {needed} <= 2**n_informative = {available}; "
                    f"raise n_informative (now {self.informative}) or lower n_classes"
                )
        return self


class UploadedDataset(BaseModel):
    """A dataset uploaded with POST /v1/datasets: one column is the target, the rest features.

    Its task, size and columns are known only from its record in ZooKeeper, so a job on it is
    checked against that record at submit (zootrain.uploads), which also fixes how every
    column is encoded; workers load it from that resolved source, not from this spec alone.
    """

    model_config = ConfigDict(extra="forbid", strict=True)

    kind: Literal["uploaded"]
    id: str = Field(
        pattern=DATASET_ID_PATTERN,
        description="Dataset id, as returned by POST /v1/datasets.",
        examples=["0192f3a4b5c6d7e8f9a0"],
    )
    target: str = Field(
        min_length=1,
        max_length=MAX_COLUMN_NAME_CHARS,
        description="The column to predict; every other column is a feature by default.",
    )
    features: list[Annotated[str, Field(min_length=1, max_length=MAX_COLUMN_NAME_CHARS)]] | None = (
        Field(
            default=None,
            min_length=1,
            max_length=MAX_FEATURE_COLUMNS,
            description="The feature columns, in this order (default: all but the target, in file "
            "order). Leave out columns that cannot be encoded or have missing values.",
        )
    )

    @model_validator(mode="after")
    def _check_columns(self) -> Self:
        if self.features is not None:
            seen: set[str] = set()
            for name in self.features:
                if name in seen:
                    raise ValueError(f"features: column {name!r} is listed twice")
                seen.add(name)
            if self.target in seen:
                raise ValueError(f"features: the target {self.target!r} cannot be a feature")
        return self


_SYNTHETIC_TASKS: dict[SyntheticTask, Task] = {
    "classification": "classification",
    "regression": "regression",
    "blobs": "classification",
}


# To add a dataset kind: define its model, add it to this union, and handle it in
# the `match` statements below and in zootrain.ml.datasets (mypy's assert_never flags any
# that are missed).
AnyDataset = BuiltinDataset | SyntheticDataset | UploadedDataset
DatasetSpec = Annotated[AnyDataset, Field(discriminator="kind")]
DATASET_ADAPTER: TypeAdapter[AnyDataset] = TypeAdapter(DatasetSpec)


def parse_dataset(data: Any) -> AnyDataset:
    """Validate a JSON-like object into a dataset spec (raises pydantic.ValidationError)."""
    return DATASET_ADAPTER.validate_python(data)


def needs_record(spec: UploadedDataset) -> ValueError:
    return ValueError(
        f"uploaded dataset {spec.id}: its task, shape and data come from its record "
        "(zootrain.uploads resolves them at submit; workers load it with "
        "zootrain.ml.tabular.load_uploaded)"
    )


def dataset_task(spec: AnyDataset) -> Task:
    """The task of a builtin or synthetic dataset; an uploaded one's depends on its record."""
    match spec:
        case BuiltinDataset():
            return BUILTINS[spec.name].task
        case SyntheticDataset():
            return _SYNTHETIC_TASKS[spec.task]
        case UploadedDataset():
            raise needs_record(spec)
        case _:
            assert_never(spec)


def dataset_shape(spec: AnyDataset) -> tuple[int, int]:
    """(rows, features), without loading the data."""
    match spec:
        case BuiltinDataset():
            return BUILTINS[spec.name].shape
        case SyntheticDataset():
            return spec.n_samples, spec.n_features
        case UploadedDataset():
            raise needs_record(spec)
        case _:
            assert_never(spec)


def dataset_classes(spec: AnyDataset) -> int | None:
    """The distinct labels of a builtin or synthetic classification dataset (None: not one)."""
    match spec:
        case BuiltinDataset():
            return BUILTINS[spec.name].classes
        case SyntheticDataset():
            return spec.n_classes if _SYNTHETIC_TASKS[spec.task] == "classification" else None
        case UploadedDataset():
            raise needs_record(spec)
        case _:
            assert_never(spec)


# -- an uploaded dataset as a job resolved it --------------------------------------------------

Format = Literal["csv", "parquet"]
ColumnKind = Literal["integer", "float", "boolean", "text"]
Encoding = Literal["numeric", "boolean", "onehot"]


class FeatureEncoding(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    column: str
    encoding: Encoding
    levels: list[str] | None = Field(
        None, description="onehot: the sorted values, one 0/1 feature each, in this order"
    )

    @property
    def width(self) -> int:
        return len(self.levels or ()) if self.encoding == "onehot" else 1

    def names(self) -> list[str]:
        if self.encoding == "onehot":
            return [f"{self.column}={level}" for level in self.levels or ()]
        return [self.column]


class EncodingPlan(BaseModel):
    """How a job turns the table's columns into X (float64) and y; identical on every shard."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    target: str
    target_kind: ColumnKind
    target_encoding: Literal["labels", "numeric"] = Field(
        description="labels: the column's values as class labels; numeric: float64"
    )
    features: list[FeatureEncoding]

    @computed_field(  # type: ignore[prop-decorator]
        description="The model's input columns, in order: what predict's instances hold"
    )
    @property
    def encoded_features(self) -> list[str]:
        return [name for feature in self.features for name in feature.names()]

    @property
    def n_features(self) -> int:
        return sum(feature.width for feature in self.features)

    def columns(self) -> list[str]:
        """The table columns to read: the features, then the target."""
        return list(dict.fromkeys([*(f.column for f in self.features), self.target]))


class DatasetSource(BaseModel):
    """An uploaded dataset as a job resolved it at submit: where its bytes are and how to
    encode them. Kept in the job's record, so a later change to the dataset cannot reach it."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    dataset_id: str
    format: Format
    artifact: str = Field(description="The stored dataset: its manifest's key in the store")
    sha256: str = Field(description="sha256 of the uploaded file")
    artifact_sha256: str | None = Field(
        None,
        description="sha256 of the manifest; null for a dataset stored before the columnar "
        "form, whose artifact is the uploaded file itself",
    )
    size: int
    rows: int
    task: Task
    plan: EncodingPlan


# -- search spaces -----------------------------------------------------------------------------

MAX_CANDIDATES = 256
MAX_SEARCH_KEYS = 16
"""Parameters a search may vary: more than any estimator zootrain trains has."""
MAX_SAMPLED_SPACE = 10**15
"""Points of a param_distributions space. ParameterSampler indexes the space's points with a
C integer (2**63 - 1): a bigger space fails inside scikit-learn instead of being sampled."""


def space_size(space: dict[str, list[Any]]) -> int:
    """The number of points of a grid: the product of its lists' lengths, never the points."""
    return math.prod(len(values) for values in space.values())


def candidate_count(
    grid: dict[str, list[Any]] | None, distributions: dict[str, list[Any]] | None, n_iter: int
) -> int:
    """How many candidates a search makes, computed without making them."""
    if grid is not None:
        return space_size(grid)
    if distributions is not None:
        # ParameterSampler draws lists without replacement: never more than the space holds.
        return min(n_iter, space_size(distributions))
    raise ValueError("a search needs param_grid or param_distributions")


def check_space(
    grid: dict[str, list[Any]] | None, distributions: dict[str, list[Any]] | None, n_iter: int
) -> int:
    """Refuse a search space that is too large *before* anything expands it; its count.

    A grid's candidates are the product of its lists' lengths: four lists of 50 values are 6.25
    million candidates, which scikit-learn's ParameterGrid would build (seconds of CPU and GBs of
    memory) before any check on the list of them could run.
    """
    space = grid if grid is not None else distributions
    if space is None:
        raise ValueError("a search needs param_grid or param_distributions")
    if len(space) > MAX_SEARCH_KEYS:
        raise ValueError(f"the search varies {len(space)} parameters; at most {MAX_SEARCH_KEYS}")
    if grid is not None:
        count = space_size(grid)
        if count > MAX_CANDIDATES:
            lengths = " x ".join(str(len(v)) for v in grid.values())
            raise ValueError(
                f"param_grid has {count:,} candidates ({lengths}); at most {MAX_CANDIDATES}"
            )
        return count
    points = space_size(space)
    if points > MAX_SAMPLED_SPACE:
        raise ValueError(
            f"param_distributions spans {points:.3g} points; at most {MAX_SAMPLED_SPACE:.0e}"
        )
    return min(n_iter, points)


def oversized_search(spec: JobSpec) -> str | None:
    """Why a search's space is too large to expand, reckoned from its lists' lengths alone
    (None when it is not, or the spec is no search): the job service refuses such a spec
    before handing it to a child process that would only refuse it too. validate_submission
    makes the same check, with the same words."""
    search = spec.search
    if spec.kind != "search" or search is None or spec.baseline:
        return None
    try:
        check_space(search.param_grid, search.param_distributions, search.n_iter)
    except ValueError as exc:
        return f"search: {exc}"
    return None


# -- the job spec (what a user submits) --------------------------------------------------------

MODEL_NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,62}$"
JOB_ID_PATTERN = r"^[0-9a-f]{20}$"
MAX_ATTEMPTS = 20
MAX_TIME_LIMIT = 7 * 86_400

TaskRole = Literal["shard", "baseline", "candidate"]


class SearchSpec(BaseModel):
    """A hyper-parameter search: a grid, or lists to sample ``n_iter`` candidates from."""

    model_config = ConfigDict(extra="forbid", strict=True)

    param_grid: dict[str, Annotated[list[Any], Field(min_length=1, max_length=100)]] | None = Field(
        None,
        max_length=MAX_SEARCH_KEYS,
        description=f"Every combination is a candidate: at most {MAX_CANDIDATES} in all (the "
        "product of the lists' lengths)",
        examples=[{"max_depth": [4, 8, None], "n_estimators": [20, 50]}],
    )
    param_distributions: (
        dict[str, Annotated[list[Any], Field(min_length=1, max_length=1000)]] | None
    ) = Field(
        None,
        max_length=MAX_SEARCH_KEYS,
        description="Values sampled uniformly, n_iter candidates in all",
    )
    n_iter: int = Field(10, ge=1, le=MAX_CANDIDATES)
    cv: int = Field(3, ge=2, le=10, description="Cross-validation folds per candidate")
    scoring: str | None = Field(
        None, description="A scikit-learn scorer name; default: the estimator's own score"
    )

    @model_validator(mode="after")
    def _one_space(self) -> SearchSpec:
        if (self.param_grid is None) == (self.param_distributions is None):
            raise ValueError("give exactly one of param_grid and param_distributions")
        return self


ALIAS_PATTERN = r"^[a-z][a-z0-9_-]{0,62}$"
RESERVED_ALIASES = frozenset({"latest"})
"""Names an alias cannot take: ``latest`` already means the newest version."""


class PublishSpec(BaseModel):
    """What the merge does with a model's alias once the new version is published."""

    model_config = ConfigDict(extra="forbid", strict=True)

    alias: str = Field(
        pattern=ALIAS_PATTERN,
        description="The alias the new version takes (created if the model has none yet)",
        examples=["champion"],
    )
    if_better: bool = Field(
        False,
        description="Take the alias only if the new version's held-out score is at least the "
        "current holder's, both scored by the merging worker on this job's own test rows "
        "(accuracy for classifiers, r2 for regressors, adjusted_rand or -inertia for "
        "clusterers). false: take it in any case.",
    )

    @field_validator("alias")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        if value in RESERVED_ALIASES:
            raise ValueError(f"{value!r} is reserved")
        return value


class JobSpec(BaseModel):
    """A training job. Validated completely before anything is written to ZooKeeper."""

    # strict: "3" is not a number of shards; the schema says integer and so do we.
    model_config = ConfigDict(extra="forbid", strict=True)

    model_name: Annotated[
        str,
        Field(
            pattern=MODEL_NAME_PATTERN,
            description="Name of the model the job publishes a new version of.",
            examples=["iris-forest"],
        ),
    ]
    algorithm: Annotated[
        str,
        Field(
            description="Estimator to train on every shard.",
            json_schema_extra={"enum": sorted(ALGORITHM_NAMES)},
            examples=["random_forest_classifier"],
        ),
    ]
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="Estimator parameters, validated against the estimator's own constraints.",
        examples=[{"n_estimators": 50, "max_depth": 8}],
    )
    dataset: DatasetSpec
    shards: int = Field(4, ge=1, le=256, description="Number of data shards (one model each).")
    partition: Partition = Field(
        "auto",
        description=(
            "How training rows are assigned to shards, deterministically from random_state: "
            "random, stratified (classification), range (contiguous blocks), replicate "
            "(forests: every shard sees all rows and grows its share of the trees), or auto "
            "(the default): for a forest, replicate when the training rows fit a shard's "
            "memory budget (the server's ZOOTRAIN_SHARD_MEMORY) and random data shards "
            "otherwise; random for every other algorithm. The submit records the choice and "
            "why in the job's partition_choice, and spec.partition then names the strategy."
        ),
    )
    test_size: float = Field(
        0.2, gt=0.0, lt=1.0, description="Fraction of rows held out to score every model."
    )
    random_state: int = Field(0, ge=0, le=2**32 - 1, description="Seed for split and shards.")
    max_attempts: int = Field(
        3, ge=1, le=MAX_ATTEMPTS, description="Tries per task (each shard, and the merge)."
    )
    time_limit: int | None = Field(
        None,
        ge=1,
        le=MAX_TIME_LIMIT,
        description="Seconds one attempt of a task (a shard, or the merge) may run; past it "
        "the training process is killed and the attempt fails with 'time limit of N s "
        "exceeded'. Default: the worker's ZOOTRAIN_TASK_TIME_LIMIT.",
    )
    priority: int = Field(5, ge=0, le=9, description="0 (lowest) to 9 (highest).")
    baseline: bool = Field(
        False,
        description=(
            "Also train one model on all training rows (a forest with all the shards' trees) "
            "as one more task, and publish merged minus single on the version."
        ),
    )
    kind: Literal["train", "search"] = Field(
        "train",
        description=(
            "train: one model per data shard, merged. search: one task per hyper-parameter "
            "candidate (see `search`); the best cross-validated candidate is refit on all rows."
        ),
    )
    search: SearchSpec | None = None
    publish: PublishSpec | None = Field(
        None,
        description="Move an alias to the published version, in the publishing transaction; "
        "with if_better only if it scores at least as well as the alias's holder.",
        examples=[{"alias": "champion", "if_better": True}],
    )
    merge: Literal["rounds", "average"] | None = Field(
        None,
        description=(
            "How shards are combined, for the algorithms that can train in rounds "
            f"({', '.join(ROUNDS_CAPABLE)}): rounds (the shards compute in lockstep rounds "
            "synchronised by ZooKeeper: L-BFGS, Lloyd or SGD parameter mixing; the default, "
            "except for SGD whose params set average, early_stopping or class_weight "
            "'balanced', and logistic regression whose params set an l1 or elasticnet "
            "penalty (or l1_ratio), class_weight or solver 'liblinear', which rounds cannot "
            "honour) or average (one round: shard models "
            "fitted apart and averaged, approximate). Other algorithms merge as their family "
            "does and refuse rounds."
        ),
    )

    @field_validator("merge")
    @classmethod
    def _rounds_can_honour_params(cls, value: str | None, info: ValidationInfo) -> str | None:
        # A field validator (not the model's), so that the 422 names the field: merge.
        algorithm, params = info.data.get("algorithm"), info.data.get("params")
        if value == "rounds" and isinstance(algorithm, str) and isinstance(params, dict):
            name = one_shot_only(algorithm, params)
            if name is not None:
                raise ValueError(
                    f"merge 'rounds' cannot honour {algorithm}'s params.{name} "
                    f"({params[name]!r}); leave merge out or ask for 'average' to average once"
                )
        return value

    @field_validator("algorithm")
    @classmethod
    def _known_algorithm(cls, value: str) -> str:
        if value not in ALGORITHM_TABLE:
            known = ", ".join(sorted(ALGORITHM_NAMES))
            raise ValueError(f"unknown algorithm {value!r}; known: {known}")
        return value

    @model_validator(mode="after")
    def _merge_fits_algorithm(self) -> Self:
        if self.merge == "rounds" and self.algorithm not in ROUNDS_CAPABLE:
            raise ValueError(
                f"merge 'rounds' is for {', '.join(ROUNDS_CAPABLE)}, not {self.algorithm}"
            )
        if self.merge == "rounds" and self.kind == "search":
            raise ValueError("merge 'rounds' trains one model; a search fits its candidates apart")
        if self.merge == "rounds" and self.partition == "replicate":
            raise ValueError("merge 'rounds' needs data shards, not partition 'replicate'")
        return self

    @property
    def rounds(self) -> bool:
        """Whether the job's shards train in rounds (zootrain/rounds.py): the default for the
        algorithms that can, unless the spec asks for one-shot averaging."""
        if self.merge is not None:
            return self.merge == "rounds"
        return (
            self.algorithm in ROUNDS_ALGORITHMS
            and self.kind == "train"
            and self.partition != "replicate"
            and one_shot_only(self.algorithm, self.params) is None
        )

    @property
    def strategy(self) -> Strategy:
        """The partition as the shards use it: a recorded job's is never "auto" (the submit
        chose)."""
        if self.partition == "auto":
            raise ValueError("partition 'auto' is resolved at submit (zootrain.shard_plan)")
        return self.partition

    @property
    def tasks(self) -> int:
        """Task records the job has: its shards (or candidates), and the baseline if asked."""
        return self.shards + (1 if self.baseline else 0)

    def role(self, index: int) -> TaskRole:
        if self.kind == "search":
            return "candidate"
        return "baseline" if index >= self.shards else "shard"

    def candidate_params(self) -> list[dict[str, Any]]:
        """Every candidate's full parameters (scikit-learn's ParameterGrid / ParameterSampler:
        only a process that trains or validates calls this)."""
        from zootrain.ml.search import candidates

        assert self.search is not None
        return candidates(
            self.params,
            self.search.param_grid,
            self.search.param_distributions,
            self.search.n_iter,
            self.random_state,
        )

    def fingerprint(self) -> str:
        """A digest of the request's meaning, for Idempotency-Key replays."""
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()
