"""The records kept in ZooKeeper (JSON written from these pydantic models) and the job spec."""

from __future__ import annotations

import functools
import hashlib
import json
import math
import secrets
import time
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

# Nothing here imports scikit-learn: the validators that need it (zootrain.ml.algorithms, the
# scorer names) import it when they first run, and a record loaded with TRUSTED (what a worker's
# main process reads back from ZooKeeper, validated at submit) never runs them.
from zootrain.ml.catalog import ALGORITHM_NAMES, ParamError
from zootrain.ml.datasets import DatasetSpec, UploadedDataset, dataset_shape, dataset_task
from zootrain.ml.partition import Strategy, check_partition
from zootrain.ml.search import (
    MAX_CANDIDATES,
    MAX_SEARCH_KEYS,
    candidates,
    check_candidates,
    check_space,
)
from zootrain.ml.sources import DatasetSource

MODEL_NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,62}$"
JOB_ID_PATTERN = r"^[0-9a-f]{20}$"
MAX_ATTEMPTS = 20


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_job_id() -> str:
    """Time-ordered (so sorting ids sorts jobs by age) and unguessable enough to be unique."""
    return f"{time.time_ns() // 1_000_000:012x}{secrets.token_hex(4)}"


class JobState(StrEnum):
    queued = "queued"
    running = "running"
    merging = "merging"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (JobState.succeeded, JobState.failed, JobState.cancelled)


class ShardState(StrEnum):
    pending = "pending"
    running = "running"
    done = "done"
    failed = "failed"
    cancelled = "cancelled"  # its job was cancelled before it finished


class Record(BaseModel):
    model_config = ConfigDict(extra="ignore")

    def dump(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def load(cls, data: bytes, *, trusted: bool = True) -> Any:
        """Parse a record read from ZooKeeper. ``trusted`` (the default): it was written by
        zootrain, whose submit validated its spec completely, so the checks that ask
        scikit-learn are not run again (the ones pydantic itself makes still are). Running them
        on every read cost a search job's GET, event or /metrics scrape one scikit-learn
        validation per candidate, on the event loop; a worker's training child validates the
        spec again before it trains. ``trusted=False`` validates as a submit does."""
        return cls.model_validate_json(data, context=TRUSTED if trusted else None)


TRUSTED = {"trusted": True}


def _trusted(info: ValidationInfo) -> bool:
    return bool(info.context and info.context.get("trusted"))


# -- the job spec (what a user submits) --------------------------------------------------------


TaskRole = Literal["shard", "baseline", "candidate"]


def _validated_params(algorithm: str, params: dict[str, Any]) -> dict[str, Any]:
    """validate_params, remembered: clients submit the same parameters again and again, and
    asking scikit-learn's constraints each time costs more than the rest of a submit."""
    from zootrain.ml.algorithms import validate_params

    try:
        key = json.dumps(params, sort_keys=True)
    except (TypeError, ValueError):
        return validate_params(algorithm, params)
    cleaned: dict[str, Any] = json.loads(_validated_params_json(algorithm, key))
    return cleaned


@functools.lru_cache(maxsize=4096)
def _validated_params_json(algorithm: str, params: str) -> str:
    from zootrain.ml.algorithms import validate_params

    return json.dumps(validate_params(algorithm, json.loads(params)))


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

    @field_validator("scoring")
    @classmethod
    def _known_scorer(cls, value: str | None, info: ValidationInfo) -> str | None:
        if _trusted(info):
            return value
        from sklearn.metrics import get_scorer_names

        if value is not None and value not in get_scorer_names():
            raise ValueError(f"unknown scorer {value!r}")
        return value

    @model_validator(mode="after")
    def _one_space(self) -> SearchSpec:
        if (self.param_grid is None) == (self.param_distributions is None):
            raise ValueError("give exactly one of param_grid and param_distributions")
        return self


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
    partition: Strategy = Field(
        "random",
        description=(
            "How training rows are assigned to shards, deterministically from random_state: "
            "random, stratified (classification), range (contiguous blocks), or replicate "
            "(forests: every shard sees all rows and grows its share of the trees)."
        ),
    )
    test_size: float = Field(
        0.2, gt=0.0, lt=1.0, description="Fraction of rows held out to score every model."
    )
    random_state: int = Field(0, ge=0, le=2**32 - 1, description="Seed for split and shards.")
    max_attempts: int = Field(3, ge=1, le=MAX_ATTEMPTS, description="Tries per shard.")
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

    @field_validator("algorithm")
    @classmethod
    def _known_algorithm(cls, value: str) -> str:
        if value not in ALGORITHM_NAMES:
            known = ", ".join(sorted(ALGORITHM_NAMES))
            raise ValueError(f"unknown algorithm {value!r}; known: {known}")
        return value

    @field_validator("params")
    @classmethod
    def _valid_params(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        algorithm = info.data.get("algorithm")
        if algorithm is None:
            return value  # the algorithm itself was invalid, and is reported
        if _trusted(info):
            return value  # cleaned at submit
        try:
            return _validated_params(algorithm, value)
        except ParamError as exc:
            raise ValueError(f"{exc.param}: {exc}") from None

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> JobSpec:
        if _trusted(info):
            return self  # checked at submit; a search's shards are its candidates already
        from zootrain.ml.algorithms import check_task

        if self.kind == "search" and isinstance(self.dataset, UploadedDataset):
            return self._with_candidates()
        if isinstance(self.dataset, UploadedDataset):
            # Task, columns and rows are in the dataset's record: checked against it at submit
            # (zootrain.datasets), before anything is written.
            return self
        check_task(self.algorithm, dataset_task(self.dataset))
        check_partition(self.algorithm, self.partition, dataset_task(self.dataset))
        if self.kind == "search":
            return self._with_candidates()
        if self.search is not None:
            raise ValueError("search: only a job of kind 'search' takes a search")
        rows, _ = dataset_shape(self.dataset)
        # The same rounding as split_dataset (train_test_split): the test set is ceil'd.
        train_rows = rows - math.ceil(rows * self.test_size)
        if self.shards > train_rows:
            raise ValueError(
                f"shards ({self.shards}) exceeds the {train_rows} training rows of the dataset"
            )
        if rows - train_rows < 2:
            raise ValueError("test_size leaves fewer than 2 held-out rows")
        return self

    def _with_candidates(self) -> JobSpec:
        if self.search is None:
            raise ValueError("search: a job of kind 'search' needs a search")
        if self.baseline:
            raise ValueError("baseline: a search job refits its best candidate on all rows")
        search = self.search
        try:
            # Counted from the lists' lengths first: nothing is expanded past the cap.
            check_space(search.param_grid, search.param_distributions, search.n_iter)
        except ValueError as exc:
            raise ValueError(f"search: {exc}") from None
        params = self.candidate_params()
        try:
            check_candidates(self.algorithm, params)
        except ParamError as exc:
            raise ValueError(f"search: candidate parameter {exc.param}: {exc}") from None
        # Each candidate is one task: the job's "shards" are its candidates.
        self.shards = len(params)
        return self

    @property
    def tasks(self) -> int:
        """Task records the job has: its shards (or candidates), and the baseline if asked."""
        return self.shards + (1 if self.baseline else 0)

    def role(self, index: int) -> TaskRole:
        if self.kind == "search":
            return "candidate"
        return "baseline" if index >= self.shards else "shard"

    def candidate_params(self) -> list[dict[str, Any]]:
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


# -- records in ZooKeeper ----------------------------------------------------------------------


class ModelRef(BaseModel):
    name: str
    version: int


class JobRecord(Record):
    """/jobs/<id>: the job's spec and lifecycle."""

    id: str
    state: JobState = JobState.queued
    spec: JobSpec
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: str | None = None
    model: ModelRef | None = None
    owner: str | None = Field(
        None, frozen=True, description="Name of the API token that submitted the job"
    )
    dataset_source: DatasetSource | None = Field(
        None,
        frozen=True,
        description="An uploaded dataset as resolved at submit: artifact, sha256, rows, task "
        "and encoding plan (plan.encoded_features is what predict's instances hold). Set when "
        "the job is created and never changed.",
    )

    @model_validator(mode="after")
    def _uploaded_is_resolved(self) -> JobRecord:
        if isinstance(self.spec.dataset, UploadedDataset) and self.dataset_source is None:
            raise ValueError("a job on an uploaded dataset needs its resolved dataset_source")
        return self


class ShardRecord(Record):
    """/jobs/<id>/shards/<index>: one unit of training."""

    index: int
    role: TaskRole = "shard"
    state: ShardState = ShardState.pending
    attempts: int = 0
    worker: str | None = None
    rows: int | None = None
    metrics: dict[str, float] | None = None
    artifact: str | None = None
    sha256: str | None = None
    error: str | None = None
    not_before: float | None = Field(
        None, description="epoch seconds before which a retried shard is not claimed (backoff)"
    )
    started_at: datetime | None = None
    finished_at: datetime | None = None
    train_seconds: float | None = None


class ShardMetrics(BaseModel):
    index: int
    rows: int
    metrics: dict[str, float]


class VersionRecord(Record):
    """/models/<name>/v-<seq>: a published model version."""

    model: str
    version: int = 0  # filled from the node name when read
    job_id: str
    algorithm: str
    task: str
    shards: int
    artifact: str
    sha256: str
    size: int
    n_features: int
    classes: list[Any] | None = None
    metrics: dict[str, float]
    shard_metrics: list[ShardMetrics]
    baseline_metrics: dict[str, float] | None = Field(
        None, description="A single model trained on all training rows (spec.baseline)"
    )
    baseline_gap: dict[str, float] | None = Field(
        None, description="Merged minus single, metric by metric"
    )
    search: dict[str, Any] | None = Field(
        None, description="Search jobs: every candidate's cross-validated score, and the best"
    )
    train_rows: int
    test_rows: int
    created_at: datetime
    deleted_at: datetime | None = Field(
        None,
        description="Set when an admin deleted the version: its file is gone and it is not "
        "served. The record stays, so its number is never given to another model.",
    )


class WorkerRecord(Record):
    """/workers/<id> (ephemeral): a live worker."""

    id: str
    host: str
    pid: int
    started_at: datetime
    capacity: int
    current: list[str] = Field(
        default_factory=list, description="shards being worked on, as '<job>/<index>'"
    )


class IdempotencyRecord(Record):
    """/idempotency/<sha256 of key>: which job a key created, and from which request."""

    job_id: str
    fingerprint: str
    created_at: datetime
