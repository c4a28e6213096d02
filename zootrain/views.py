"""Shapes of the job service's requests and responses (shared by the service and the client)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from zootrain.records import ALIAS_PATTERN, JobRecord, JobState, ShardRecord

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
        description="The newest version not deleted (served by default unless the model has a "
        "champion alias: see serving_version)"
    )
    versions: int = Field(description="Versions recorded, deleted ones included")
    aliases: dict[str, int] = Field(
        default_factory=dict, description="The model's aliases: alias -> version"
    )
    serving_version: int | None = Field(
        None,
        description="The version predictions and downloads without a version or alias use: "
        "the champion alias's if set, else latest_version",
    )
    serving: Literal["champion", "latest"] | None = Field(
        None, description="Why serving_version is served: its champion alias, or latest"
    )


class ModelView(ModelSummary):
    """GET /v1/models/{name}: the model, its aliases, and what it serves by default."""

    owner: str | None = Field(
        None,
        description="The token whose job published the model's first version kept: it may "
        "move the model's aliases with the submit scope",
    )
    aliases_version: int = Field(
        description="Version of the model's alias record (also its ETag): send it as If-Match "
        "to move an alias only if nobody moved one since"
    )
    aliases_updated_at: datetime | None = None
    aliases_updated_by: str | None = None


class AliasRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    version: int = Field(ge=1, le=9_999_999_999, description="The version the alias points at")


Scalar = str | int | FiniteFloat | bool | None


class DataframeSplit(BaseModel):
    """MLflow's scoring format: the column names, and the rows' values in that order."""

    model_config = ConfigDict(extra="forbid")

    columns: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        min_length=1, max_length=10_000
    )
    data: list[list[Scalar]] = Field(min_length=1)
    index: list[Any] | None = Field(None, description="Accepted for MLflow's sake and ignored")


class PredictRequest(BaseModel):
    """Exactly one of instances (encoded feature vectors), records or dataframe_split (raw
    rows with the table's own columns, for a model trained on an uploaded dataset)."""

    model_config = ConfigDict(extra="forbid")

    instances: list[Annotated[list[FiniteFloat], Field(min_length=1)]] | None = Field(
        None,
        min_length=1,
        description="Rows of encoded feature values (the version's n_features each)",
        examples=[[[5.1, 3.5, 1.4, 0.2]]],
    )
    version: int | None = Field(
        None, ge=1, description="Defaults to the champion alias's version, else the latest"
    )
    records: list[dict[str, Scalar]] | None = Field(
        None,
        min_length=1,
        description="Raw rows, column name -> value, as in the uploaded table; encoded with the "
        "version's own plan (its input_schema)",
        examples=[[{"length": 5.1, "color": "red"}]],
    )
    dataframe_split: DataframeSplit | None = Field(
        None, description="Raw rows in MLflow's split format; encoded like records"
    )
    alias: str | None = Field(
        None, pattern=ALIAS_PATTERN, description="Serve the version this alias points at"
    )

    @model_validator(mode="after")
    def _one_input(self) -> Self:
        given = [
            k for k in ("instances", "records", "dataframe_split") if getattr(self, k) is not None
        ]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of instances, records and dataframe_split"
                + (f" (got {', '.join(given)})" if given else "")
            )
        if self.version is not None and self.alias is not None:
            raise ValueError("give version or alias, not both")
        return self

    @property
    def rows(self) -> int:
        if self.instances is not None:
            return len(self.instances)
        if self.records is not None:
            return len(self.records)
        assert self.dataframe_split is not None
        return len(self.dataframe_split.data)


class PredictResponse(BaseModel):
    model: str
    version: int
    predictions: list[Any]
    alias: str | None = Field(
        None, description="The alias the version was served by (asked for, or the champion)"
    )


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
