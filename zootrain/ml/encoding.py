"""An uploaded table's description and a job's encoding plan of it: pure Python, no pandas.

The job service describes a file once, at upload, in a child process (zootrain.ml.tabular,
with pandas and pyarrow, run by app.upload_check); what comes back is a ``Table`` of
``ColumnInfo``s, kept in the dataset's record. A job's submit turns that description into an
``EncodingPlan`` (``make_plan``) in the job service itself, which imports this module and
zootrain.spec only. ``sniff`` tells the format from a file's first bytes, before anything reads it.

Encoding, decided at submit and fixed in the job's record:

- integer and float columns are features as float64; booleans as 0.0 / 1.0;
- text (and any other non-numeric) columns with at most ``MAX_CATEGORIES`` distinct values,
  each at most ``MAX_LEVEL_CHARS`` characters, are one-hot encoded over their sorted distinct
  values (one 0/1 column per value, in that order); other text columns cannot be features;
- a feature column with a missing value (empty, ``NA``, ``NaN``, ``null``…; ±inf counts as
  missing in numeric columns) is refused, naming the column: nothing is imputed;
- the target: a classifier takes any labels (text, integers, floats, booleans), encoded over
  the job's full label set as for every dataset; a regressor needs a numeric target.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from zootrain.spec import (
    ColumnKind,
    EncodingPlan,
    FeatureEncoding,
    Format,
    Task,
    algorithm_info,
)

MAX_CATEGORIES = 50
"""Distinct values of a text column that is still one-hot encoded."""
MAX_LEVEL_CHARS = 100
"""Longest category value that is one-hot encoded (values are kept in ZooKeeper records)."""
MAX_CLASSES = 1000
"""Distinct labels of a classification target."""
MAX_ENCODED_VALUES = 100_000_000
"""rows x encoded features that one task of a job holds (800 MB): a shard holds its own rows
and its slice of the held-out rows, the merge the held-out rows, the baseline and search
candidates every training row."""
SNIFF_BYTES = 8192

PARQUET_SUFFIXES = frozenset({".parquet", ".pq"})
CSV_SUFFIXES = frozenset({"", ".csv", ".txt"})
PARQUET_TYPES = frozenset(
    {"application/vnd.apache.parquet", "application/x-parquet", "application/parquet"}
)
_PARQUET_MAGIC = b"PAR1"
_OTHER_FORMATS = {
    b"PK\x03\x04": "a ZIP archive (e.g. xlsx)",
    b"\x1f\x8b": "gzip-compressed",
    b"\xd0\xcf\x11\xe0": "an OLE2 document (e.g. xls)",
    b"BZh": "bzip2-compressed",
    b"\xfd7zXZ\x00": "xz-compressed",
    b"\x28\xb5\x2f\xfd": "zstd-compressed",
    b"ARROW1": "an Arrow IPC file",
    b"Obj\x01": "an Avro file",
    b"ORC": "an ORC file",
    b"%PDF": "a PDF document",
    b"\x89PNG": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
    b"SQLite format 3\x00": "an SQLite database",
}


class TableError(ValueError):
    """The file cannot be used as a dataset. ``unsupported``: it is not CSV or Parquet at all."""

    def __init__(self, message: str, *, unsupported: bool = False) -> None:
        super().__init__(message)
        self.unsupported = unsupported

    def __reduce__(self) -> tuple[Any, ...]:
        # Raised in the job service's table-checking child: it must cross the process boundary
        # whole (the default pickling would drop the keyword argument).
        return (_table_error, (str(self), self.unsupported))


def _table_error(message: str, unsupported: bool) -> TableError:
    return TableError(message, unsupported=unsupported)


class PlanError(ValueError):
    """A job's dataset settings do not fit the dataset; ``field`` names the spec field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


# -- describing a table ------------------------------------------------------------------------


class ColumnInfo(BaseModel):
    """One column of an uploaded dataset, as read at upload."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    name: str
    dtype: str = Field(description="The column's type as pandas reads it (int64, float64, str…)")
    kind: ColumnKind = Field(description="integer, float, boolean or text (anything else)")
    numeric: bool = Field(description="Usable as a number: integer, float or boolean")
    non_null: int = Field(description="Rows with a value (±inf counts as missing)")
    distinct: int = Field(description="Distinct non-missing values")
    categories: int | None = Field(
        None, description="Distinct values of a non-numeric column; null for numeric ones"
    )
    levels: list[str] | None = Field(
        None,
        description=f"The sorted distinct values of a text column that can be one-hot encoded "
        f"(at most {MAX_CATEGORIES}, each at most {MAX_LEVEL_CHARS} characters); null otherwise",
    )


@dataclass(frozen=True)
class Table:
    rows: int
    columns: list[ColumnInfo]


def sniff(head: bytes, filename: str | None, content_type: str | None) -> Format:
    """The format of a file from its first bytes (and its name and type, to explain refusals)."""
    name = (filename or "").replace("\\", "/")
    suffix = PurePosixPath(name).suffix.lower()
    declared_type = (content_type or "").split(";")[0].strip().lower()
    if head.startswith(_PARQUET_MAGIC):
        return "parquet"
    if suffix in PARQUET_SUFFIXES or declared_type in PARQUET_TYPES:
        raise TableError("not a Parquet file: it does not start with the PAR1 magic bytes")
    for magic, what in _OTHER_FORMATS.items():
        if head.startswith(magic):
            raise TableError(f"the file is {what}; upload CSV or Parquet", unsupported=True)
    if b"\x00" in head:
        raise TableError(
            "the file is binary (it holds NUL bytes) and not Parquet; upload CSV or Parquet",
            unsupported=True,
        )
    if suffix not in CSV_SUFFIXES:
        raise TableError(
            f"unsupported file type {suffix!r}: upload a .csv or .parquet file", unsupported=True
        )
    return "csv"


# -- the encoding plan --------------------------------------------------------------------------


def make_plan(
    columns: Sequence[ColumnInfo],
    rows: int,
    *,
    algorithm: str,
    target: str,
    features: Sequence[str] | None,
    task_rows: int | None = None,
) -> tuple[EncodingPlan, Task]:
    """Check a job's target and features against a table; PlanError names what is wrong.

    ``task_rows``: the most rows one task of the job reads (default: all of them)."""
    by_name = {c.name: c for c in columns}
    if target not in by_name:
        raise PlanError(
            "dataset.target", f"column {target!r} is not in the dataset; {_listing(columns)}"
        )
    label = by_name[target]
    task = _task(algorithm, label)
    if label.non_null < rows:
        raise PlanError(
            "dataset.target",
            f"column {target!r} has {rows - label.non_null} missing values; the target needs "
            "a value on every row",
        )
    if task == "classification":
        if label.distinct < 2:
            raise PlanError(
                "dataset.target",
                f"column {target!r} has a single value; a classifier needs at least 2 classes",
            )
        if label.distinct > MAX_CLASSES:
            raise PlanError(
                "dataset.target",
                f"column {target!r} has {label.distinct} distinct values, over the "
                f"{MAX_CLASSES} classes a classifier may have (a regressor fits numbers)",
            )

    names = list(features) if features is not None else [c.name for c in columns]
    names = [n for n in names if n != target]
    if not names:
        raise PlanError("dataset.features", "no feature columns: the dataset has only its target")
    encodings = [_feature(by_name, name, rows, columns) for name in names]
    plan = EncodingPlan(
        target=target,
        target_kind=label.kind,
        target_encoding="labels" if task == "classification" else "numeric",
        features=encodings,
    )
    held = rows if task_rows is None else task_rows
    if held * plan.n_features > MAX_ENCODED_VALUES:
        raise PlanError(
            "dataset",
            f"{held} rows (the most one task of this job reads) x {plan.n_features} encoded "
            f"features = {held * plan.n_features:,} values, over the limit of "
            f"{MAX_ENCODED_VALUES:,}; use fewer feature columns or more shards",
        )
    return plan, task


def _task(algorithm: str, label: ColumnInfo) -> Task:
    alg = algorithm_info(algorithm)
    if alg.task == "regression":
        if not label.numeric:
            raise PlanError(
                "dataset.target",
                f"column {label.name!r} is {label.kind} ({label.dtype}); {algorithm} is a "
                "regressor and needs a numeric target (a classifier takes any labels)",
            )
        return "regression"
    if alg.task == "classification":
        return "classification"
    # Clustering ignores the target; it only scores the clusters. Labels (anything but a float
    # column) are compared with the clusters (adjusted_rand); a float target is not.
    return "regression" if label.kind == "float" else "classification"


def _feature(
    by_name: dict[str, ColumnInfo], name: str, rows: int, columns: Sequence[ColumnInfo]
) -> FeatureEncoding:
    column = by_name.get(name)
    if column is None:
        raise PlanError(
            "dataset.features", f"column {name!r} is not in the dataset; {_listing(columns)}"
        )
    if column.non_null < rows:
        raise PlanError(
            "dataset.features",
            f"column {name!r} has {rows - column.non_null} missing values; features may not "
            "have missing values (fill them in before uploading, or leave the column out by "
            "listing the features to use in dataset.features)",
        )
    if column.kind in ("integer", "float"):
        return FeatureEncoding(column=name, encoding="numeric")
    if column.kind == "boolean":
        return FeatureEncoding(column=name, encoding="boolean")
    if column.levels is None:
        reason = (
            f"{column.categories} distinct values (more than {MAX_CATEGORIES})"
            if (column.categories or 0) > MAX_CATEGORIES
            else f"values longer than {MAX_LEVEL_CHARS} characters"
        )
        raise PlanError(
            "dataset.features",
            f"column {name!r} is {column.kind} ({column.dtype}) with {reason}, so it cannot "
            f"be encoded (one-hot takes at most {MAX_CATEGORIES} distinct values); leave it "
            "out by listing the features to use in dataset.features",
        )
    return FeatureEncoding(column=name, encoding="onehot", levels=list(column.levels))


def _listing(columns: Sequence[ColumnInfo]) -> str:
    names = [c.name for c in columns]
    shown = ", ".join(repr(n) for n in names[:20])
    more = f" and {len(names) - 20} more" if len(names) > 20 else ""
    return f"its columns are {shown}{more}"
