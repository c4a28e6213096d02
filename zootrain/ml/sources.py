"""The records of an uploaded dataset that a job keeps: its source and its encoding plan.

Defined apart from zootrain.ml.tabular (which reads tables with pandas and pyarrow) because
job records hold them, and every process that reads a job record imports them: the job
service, a worker's main process. zootrain.ml.tabular re-exports them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field

from zootrain.ml.datasets import Task

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
