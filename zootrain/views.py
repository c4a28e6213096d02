"""Shapes of the job service's requests and responses (shared by the service and the client)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from zootrain.records import JobRecord, JobState, ShardRecord

FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]


class JobView(JobRecord):
    shards: list[ShardRecord] = Field(default_factory=list)


class JobList(BaseModel):
    items: list[JobRecord]
    next_cursor: str | None = Field(
        None, description="Pass as `cursor` for the next page; null on the last page"
    )


class ModelSummary(BaseModel):
    name: str
    latest_version: int | None = Field(
        description="The version predictions use by default: the newest not deleted"
    )
    versions: int = Field(description="Versions recorded, deleted ones included")


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    instances: list[Annotated[list[FiniteFloat], Field(min_length=1)]] = Field(
        min_length=1, description="Rows of feature values", examples=[[[5.1, 3.5, 1.4, 0.2]]]
    )
    version: int | None = Field(None, ge=1, description="Defaults to the latest version")


class PredictResponse(BaseModel):
    model: str
    version: int
    predictions: list[Any]


class Status(BaseModel):
    status: str


class Failure(BaseModel):
    job_id: str
    model_name: str
    algorithm: str
    error: str | None = Field(description="Why the job failed (the shard or merge and its error)")
    finished_at: datetime | None


class Overview(BaseModel):
    queue_depth: int = Field(description="Unfinished jobs in the queue (queued, running, merging)")
    jobs: dict[JobState, int] = Field(description="Jobs kept, by state (every state present)")
    recent_failures: list[Failure] = Field(description="Failed jobs, the latest finished first")
