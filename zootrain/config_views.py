"""The live configuration's API shapes (GET/PATCH /v1/config), shared by the job service and
the client; the document itself and its rules are zootrain.liveconfig's."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class LiveSettingsView(BaseModel):
    """Every live setting, as this job-service process applies it."""

    paused: bool = Field(description="workers claim nothing new; running work finishes")
    worker_concurrency: int = Field(description="shards each worker trains at once")
    submit_rate: float = Field(description="submits per second per token (0: unlimited)")
    submit_burst: int
    max_queue: int = Field(description="unfinished jobs accepted before 429")
    retry_backoff: float
    retry_backoff_max: float
    task_time_limit: float = Field(description="seconds an attempt may run when its job sets none")
    job_retention: float = Field(description="seconds a finished job is kept")
    max_versions: int = Field(description="versions kept per model")


class LiveSettingsPatch(BaseModel):
    """A merge patch's settings: a value sets the key, null returns it to the environment's."""

    model_config = ConfigDict(extra="forbid")

    paused: bool | None = None
    worker_concurrency: int | None = Field(None, ge=1, le=64)
    submit_rate: float | None = Field(None, ge=0)
    submit_burst: int | None = Field(None, ge=1)
    max_queue: int | None = Field(None, ge=1)
    retry_backoff: float | None = Field(None, ge=0)
    retry_backoff_max: float | None = Field(None, ge=0)
    task_time_limit: float | None = Field(None, gt=0)
    job_retention: float | None = Field(None, gt=0)
    max_versions: int | None = Field(None, ge=1)


class ConfigPatch(BaseModel):
    """RFC 7396 JSON merge patch of the configuration (only ``settings`` can change)."""

    model_config = ConfigDict(extra="forbid")

    settings: LiveSettingsPatch | None = None


class RejectedDocument(BaseModel):
    version: int = Field(description="the znode version that does not validate")
    error: str


class ConfigView(BaseModel):
    version: int = Field(description="the <root>/config znode's version (0: never written)")
    settings: LiveSettingsView = Field(
        description="every live setting in effect: the document's, else this process's "
        "environment's"
    )
    overrides: dict[str, Any] = Field(
        description="the settings the document sets (the others come from the environment)"
    )
    updated_at: datetime | None = None
    updated_by: str | None = Field(None, description="the token name that made the change")
    rejected: RejectedDocument | None = Field(
        None,
        description="set when the stored document does not validate (written by hand): every "
        "process ignores it and keeps applying the version shown",
    )


class ConfigChange(BaseModel):
    version: int = Field(description="the version the change made")
    updated_at: datetime | None = None
    updated_by: str | None = None
    patch: dict[str, Any]
    settings: dict[str, Any] = Field(description="the document's settings after the change")
