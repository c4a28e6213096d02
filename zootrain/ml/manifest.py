"""The manifest of a stored dataset: its two Parquet files, their row groups and every column
chunk's byte range and sha256 (zootrain.ml.columnar writes and reads the files it names).

Pydantic only: the job service reads a manifest (to delete a dataset's objects) and receives one
from its upload child, without numpy or pyarrow.
"""

from __future__ import annotations

import json
from typing import Literal

from pydantic import BaseModel, ConfigDict


class ChunkRef(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    offset: int
    length: int
    sha256: str


class RowGroupRef(BaseModel):
    """One row group: its first row, row count, and one (offset, length, sha256) per column, in
    the file's column order."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    first: int
    rows: int
    offsets: list[int]
    lengths: list[int]
    sha256: list[str]


class ParquetRef(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    key: str
    sha256: str
    size: int
    columns: list[str]
    footer: ChunkRef
    row_groups: list[RowGroupRef]


class Manifest(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    format_version: Literal[1] = 1
    rows: int
    seed: int
    original: ParquetRef
    shuffled: ParquetRef

    def dump(self) -> bytes:
        return json.dumps(self.model_dump(mode="json"), separators=(",", ":")).encode()
