"""The records kept in ZooKeeper: JSON written from these pydantic models.

The job spec a job record holds, and the types of an uploaded dataset's resolved source, live in
zootrain.spec (pydantic only); they are re-exported here for the code that reads them with the
records. Nothing here imports scikit-learn or numpy, and loading a record checks its fields and
nothing more: the submit that wrote it validated the spec (zootrain.ml.validation).
"""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from zootrain.class_quality import ClassMetrics, ClassReport, RecallDrop
from zootrain.inputs import InputColumn
from zootrain.spec import ALIAS_PATTERN as ALIAS_PATTERN
from zootrain.spec import JOB_ID_PATTERN as JOB_ID_PATTERN
from zootrain.spec import MAX_ATTEMPTS as MAX_ATTEMPTS
from zootrain.spec import MAX_TIME_LIMIT as MAX_TIME_LIMIT
from zootrain.spec import MODEL_NAME_PATTERN as MODEL_NAME_PATTERN

# Re-exported: the job spec and its limits, where the records' readers have always found them.
from zootrain.spec import DatasetSource as DatasetSource
from zootrain.spec import EncodingPlan
from zootrain.spec import JobSpec as JobSpec
from zootrain.spec import SearchSpec as SearchSpec
from zootrain.spec import TaskRole as TaskRole
from zootrain.spec import UploadedDataset as UploadedDataset
from zootrain.states import JobState as JobState
from zootrain.states import ShardState as ShardState


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_job_id() -> str:
    """Time-ordered (so sorting ids sorts jobs by age) and unguessable enough to be unique."""
    return f"{time.time_ns() // 1_000_000:012x}{secrets.token_hex(4)}"


class Record(BaseModel):
    model_config = ConfigDict(extra="ignore")

    def dump(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def load(cls, data: bytes) -> Self:
        """Parse a record read from ZooKeeper: its fields are checked, nothing more (no
        scikit-learn: the submit that wrote a job record validated its spec)."""
        return cls.model_validate_json(data)


# -- records in ZooKeeper ----------------------------------------------------------------------


class PartitionChoice(BaseModel):
    """What partition 'auto' chose at submit, and why."""

    requested: str = Field("auto", description="What the spec asked for")
    strategy: str = Field(description="The strategy the shards use (also spec.partition)")
    reason: str
    train_rows: int | None = None
    estimated_bytes: int | None = Field(
        None, description="What one shard would hold of the training rows, replicated"
    )
    budget_bytes: int | None = Field(None, description="ZOOTRAIN_SHARD_MEMORY at the submit")


class ModelRef(BaseModel):
    name: str
    version: int


class RoundPoint(BaseModel):
    round: int
    objective: float | None
    """None when it was not finite: a diverging round's NaN or infinity is written to JSON as
    null, and a record that refused null could no longer be read by any process (the job
    stuck, every listing of jobs a 500)."""
    change: float | None = None


ROUND_HISTORY = 500
"""Rounds a job record keeps in its history (the latest); the job record stays small."""


class RoundProgress(BaseModel):
    """Where a job that trains in rounds is (zootrain/rounds.py), written with each round."""

    round: int = Field(description="The round the shards are computing now (or the last one).")
    objective: float | None = Field(
        None, description="The objective at the last combined round (loss or inertia)."
    )
    change: float | None = Field(
        None,
        description="Gradient norm (L-BFGS), squared centroid shift (Lloyd) at the last round.",
    )
    history: list[RoundPoint] = Field(
        default_factory=list, description=f"The objective by round (the last {ROUND_HISTORY})."
    )


HISTORY_LIMIT = 50  # attempts kept on a record: handbacks do not count against max_attempts


class TaskAttempt(BaseModel):
    """One claim of a task (a shard or a job's merge): by whom, from when, until when."""

    worker: str
    claimed_at: datetime
    ended_at: datetime | None = Field(
        None, description="When its outcome was written; null while it runs"
    )
    outcome: str | None = Field(
        None,
        description="done, failed (retried if attempts are left), handed_back (a graceful stop "
        "past its grace period), lost (its worker's session ended: another claim took over; "
        "ended_at is that re-claim), cancelled, or merged (a merge whose model was ready; the "
        "job's finished_at is its publish)",
    )
    error: str | None = None

    @staticmethod
    def claimed(history: list[TaskAttempt], worker: str, at: datetime) -> list[TaskAttempt]:
        """A claim at ``at``: an attempt still open is one whose worker lost its claim without
        writing an outcome (it died, or its session expired), so it ends as ``lost`` now."""
        history = TaskAttempt.ended(history, "lost", at)
        return [*history, TaskAttempt(worker=worker, claimed_at=at)][-HISTORY_LIMIT:]

    @staticmethod
    def ended(
        history: list[TaskAttempt], outcome: str, at: datetime, error: str | None = None
    ) -> list[TaskAttempt]:
        if not history or history[-1].ended_at is not None:
            return history
        last = history[-1].model_copy(update={"ended_at": at, "outcome": outcome, "error": error})
        return [*history[:-1], last]


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
    merge_attempts: int = Field(0, description="Merges started (each counts against max_attempts)")
    merge_error: str | None = Field(None, description="Why the latest merge attempt failed")
    merge_not_before: float | None = Field(
        None, description="epoch seconds before which a failed merge is not retried (backoff)"
    )
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
    partition_choice: PartitionChoice | None = Field(
        None,
        description="Set when the job asked for partition 'auto': the strategy chosen at submit "
        "(spec.partition holds it) and why",
    )
    warnings: list[str] = Field(
        default_factory=list,
        description="What the submit found doubtful but accepted, e.g. data shards too small "
        "for a forest to keep its accuracy",
    )
    recall_drops: list[RecallDrop] | None = Field(
        None,
        description="Set when the job publishes a classifier: the classes whose recall in the "
        "merged model fell by more than 10 points against the baseline or the best shard "
        "(empty: none did). The version's class_report has every class's metrics.",
    )
    rounds: RoundProgress | None = Field(
        None, description="A job training in rounds: its round and objective so far."
    )

    merges: list[TaskAttempt] = Field(
        default_factory=list,
        description="Every merge claim, oldest first: who merged, from when until the merged "
        "model was ready (or the attempt failed); the publish is finished_at",
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
    class_metrics: list[ClassMetrics] | None = Field(
        None, description="The baseline task: its per-class metrics on the held-out split"
    )
    history: list[TaskAttempt] = Field(
        default_factory=list,
        description="Every claim of this task, oldest first (the latest HISTORY_LIMIT): who "
        "claimed it, when, and how the attempt ended; what the dashboard's timeline draws",
    )

    def claimed(self, worker: str, at: datetime) -> list[TaskAttempt]:
        """The history with a new attempt by ``worker`` (see TaskAttempt.claimed)."""
        return TaskAttempt.claimed(self.history, worker, at)

    def ended(self, outcome: str, at: datetime, error: str | None = None) -> list[TaskAttempt]:
        """The history with the open attempt ended (see TaskAttempt.ended)."""
        return TaskAttempt.ended(self.history, outcome, at, error)


class ShardMetrics(BaseModel):
    index: int
    rows: int
    metrics: dict[str, float]


class Promotion(BaseModel):
    """What a job's ``publish`` did with the alias: taken, or refused with both scores."""

    alias: str
    if_better: bool
    promoted: bool
    reason: str = Field(description="Why it was or was not promoted, in words")
    metric: str | None = Field(None, description="The score compared (higher is better)")
    score: float | None = Field(None, description="This version's score on the job's test rows")
    holder_version: int | None = Field(
        None, description="The version that held the alias when the merge compared"
    )
    holder_score: float | None = Field(
        None, description="The holder's score on the same test rows, by the same worker"
    )


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
    class_report: ClassReport | None = Field(
        None,
        description="Classifiers: precision, recall, F1 and support per class for the merged "
        "model, the baseline and every shard on the held-out split, and the classes whose "
        "recall fell by more than 10 points (recall_drops). Regression and clustering: only "
        "a note saying there are none. Null on versions published before it existed.",
    )
    owner: str | None = Field(None, description="Name of the API token that submitted the job")
    aliases: list[str] = Field(
        default_factory=list,
        description="The model's aliases that point at this version (from the model's node)",
    )
    encoding: EncodingPlan | None = Field(
        None,
        description="Uploaded datasets: how raw rows are encoded for this version (its job's "
        "plan, kept with the version so a raw-row prediction never depends on the job record)",
    )
    input_schema: list[InputColumn] | None = Field(
        None,
        description="The columns a raw row (predict's records or dataframe_split) must hold: "
        "name, type, and the categories seen in training; null when the model takes only "
        "encoded instances",
    )
    promotion: Promotion | None = Field(
        None, description="What the job's publish did with its alias (spec.publish)"
    )


WorkerState = Literal["active", "paused", "draining"]


class DrainRecord(Record):
    """/drains/<worker id>: a worker asked to finish what it holds and claim nothing new."""

    worker_id: str
    requested_at: datetime
    requested_by: str


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
    current_since: dict[str, datetime] = Field(
        default_factory=dict, description="when each of current was claimed, by its name"
    )
    state: WorkerState = Field(
        "active",
        description="active: claims work; paused: the cluster is paused (PATCH /v1/config); "
        "draining: asked to drain (POST /v1/workers/{id}/drain), finishes what it holds and "
        "claims nothing new",
    )
    config_version: int | None = Field(
        None, description="the live configuration version this worker applies"
    )


class ModelRecord(Record):
    """/models/<name> (the node's data): the model's aliases, alias -> version.

    One node holds them all, so an alias move is one version-checked setData (two concurrent
    moves cannot both win), and the publishing multi can move one atomically with the publish.
    Empty data (a model published before aliases existed) reads as no aliases.
    """

    aliases: dict[str, int] = Field(default_factory=dict)
    updated_at: datetime | None = None
    updated_by: str | None = None

    @classmethod
    def load(cls, data: bytes) -> Self:
        return cls() if not data.strip() else cls.model_validate_json(data)


class IdempotencyRecord(Record):
    """/idempotency/<sha256 of key>: which job a key created, and from which request."""

    job_id: str
    fingerprint: str
    created_at: datetime
