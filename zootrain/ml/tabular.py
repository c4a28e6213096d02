"""Uploaded tables (CSV, Parquet): reading, describing, the encoding plan, and loading (X, y).

Pure: no ZooKeeper and no artifact store. The job service describes a file once, at upload
(``describe``); a job's submit turns that description into an ``EncodingPlan`` (``make_plan``);
every worker then loads the same (X, y) from the same bytes and plan (``load_uploaded``), reading
only the columns the plan names.

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

import contextlib
import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field

from zootrain.ml.algorithms import get_algorithm
from zootrain.ml.columnar import Manifest
from zootrain.ml.datasets import MAX_COLUMN_NAME_CHARS, Task

# The models a job record holds live in zootrain.ml.sources (no pandas or pyarrow there).
from zootrain.ml.sources import ColumnKind as ColumnKind
from zootrain.ml.sources import DatasetSource as DatasetSource
from zootrain.ml.sources import Encoding as Encoding
from zootrain.ml.sources import EncodingPlan as EncodingPlan
from zootrain.ml.sources import FeatureEncoding as FeatureEncoding
from zootrain.ml.sources import Format as Format

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

Source = Path | bytes


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


def describe(source: Source, fmt: Format, *, max_rows: int, max_columns: int) -> Table:
    """Read a whole table and describe its columns; TableError if it cannot be a dataset."""
    return _describe(_checked_frame(source, fmt, max_rows=max_rows, max_columns=max_columns))


def _checked_frame(source: Source, fmt: Format, *, max_rows: int, max_columns: int) -> pd.DataFrame:
    """The whole table, once the ceilings and the column names are checked."""
    names, known_rows = _header(source, fmt)
    if known_rows is not None and known_rows > max_rows:
        raise TableError(
            f"the file has {known_rows} rows, over the limit of {max_rows} "
            "(ZOOTRAIN_MAX_DATASET_ROWS)"
        )
    if not names:
        raise TableError("the file has no columns")
    if len(names) > max_columns:
        raise TableError(
            f"the file has {len(names)} columns, over the limit of {max_columns} "
            "(ZOOTRAIN_MAX_DATASET_COLUMNS)"
        )
    for name in names:
        if len(name) > MAX_COLUMN_NAME_CHARS:
            raise TableError(
                f"column name {name[:40]!r}… is longer than {MAX_COLUMN_NAME_CHARS} characters"
            )
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise TableError(f"column name {name!r} appears twice; column names must be unique")
        seen.add(name)
    frame = read_frame(source, fmt, max_rows=max_rows)
    rows = len(frame)
    if rows > max_rows:
        raise TableError(
            f"the file has more than {max_rows} rows, the limit (ZOOTRAIN_MAX_DATASET_ROWS)"
        )
    if rows == 0:
        raise TableError("the file has a header but no rows")
    if len(frame.columns) == 0:
        raise TableError("the file has no columns")
    return frame


def _describe(frame: pd.DataFrame) -> Table:
    columns = [_describe_column(str(n), frame[n]) for n in frame.columns]
    return Table(rows=len(frame), columns=columns)


def ingest(
    source: Path, fmt: Format, directory: Path, *, sha256: str, max_rows: int, max_columns: int
) -> tuple[Table, Manifest, list[Path]]:
    """describe() the uploaded file, then write it in the stored form (zootrain.ml.columnar)
    into ``directory``: (its description, the manifest, the files to store)."""
    from zootrain.ml.columnar import shuffle_seed, to_arrow, write_files

    frame = _checked_frame(source, fmt, max_rows=max_rows, max_columns=max_columns)
    table = _describe(frame)
    arrow = to_arrow(frame)
    del frame
    few = [c.name for c in table.columns if c.distinct <= max(16, table.rows // 8)]
    manifest, files = write_files(arrow, directory, shuffle_seed(sha256), dictionary=few)
    return table, manifest, files


def read_frame(
    source: Source,
    fmt: Format,
    *,
    columns: Sequence[str] | None = None,
    max_rows: int | None = None,
) -> pd.DataFrame:
    """Read the table (only ``columns`` when given), the same way at upload and in workers.

    CSV: comma-separated UTF-8 with a header row; types are inferred per column by pandas,
    and pandas' default missing-value markers apply. Parquet: the file's own types.
    ``max_rows`` stops a CSV after one row more than that (enough to tell it is too long).
    """
    try:
        if fmt == "csv":
            _check_first_row(source)
            frame = pd.read_csv(
                _open(source),
                usecols=list(columns) if columns is not None else None,
                nrows=max_rows + 1 if max_rows is not None else None,
                index_col=False,
                low_memory=False,
                encoding="utf-8",
                engine="c",
            )
        else:
            frame = pd.read_parquet(
                _open(source),
                engine="pyarrow",
                columns=list(columns) if columns is not None else None,
            )
    except TableError:
        raise
    except pd.errors.EmptyDataError:
        raise TableError("the file has no columns") from None
    except UnicodeDecodeError as exc:
        raise TableError(f"not a UTF-8 text file ({exc.reason} at byte {exc.start})") from None
    except (ValueError, TypeError, OverflowError, csv.Error, pa.ArrowException, OSError) as exc:
        raise TableError(f"unreadable {fmt.upper()} file: {_short(exc)}") from None
    frame.columns = [str(c) for c in frame.columns]
    return frame


def _open(source: Source) -> Path | IO[bytes]:
    return io.BytesIO(source) if isinstance(source, bytes) else source


def _header(source: Source, fmt: Format) -> tuple[list[str], int | None]:
    """The column names (and a Parquet file's row count), read without the data, so that the
    ceilings are checked before anything is parsed."""
    if fmt == "parquet":
        try:
            parquet = pq.ParquetFile(_open(source))
            schema, rows = parquet.schema_arrow, parquet.metadata.num_rows
        except (ValueError, TypeError, pa.ArrowException, OSError) as exc:
            raise TableError(f"unreadable PARQUET file: {_short(exc)}") from None
        index = set(_pandas_index_columns(schema))
        return [name for name in schema.names if name not in index], rows
    header, _ = _csv_head(source)
    return header, None


def _pandas_index_columns(schema: pa.Schema) -> list[str]:
    metadata = schema.pandas_metadata or {}
    return [c for c in metadata.get("index_columns", []) if isinstance(c, str)]


def _csv_head(source: Source) -> tuple[list[str], list[str] | None]:
    """The header and the first data row (blank lines skipped, as pandas does)."""
    with contextlib.ExitStack() as stack:
        raw = (
            io.BytesIO(source)
            if isinstance(source, bytes)
            else stack.enter_context(source.open("rb"))
        )
        text = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
        rows = csv.reader(text)
        found: list[list[str]] = []
        try:
            for row in rows:
                if row:
                    found.append(row)
                if len(found) == 2:
                    break
        except UnicodeDecodeError as exc:
            raise TableError(f"not a UTF-8 text file ({exc.reason})") from None
        except csv.Error as exc:
            raise TableError(f"unreadable CSV file: {_short(exc)}") from None
        finally:
            text.detach()
    if not found:
        return [], None
    return found[0], found[1] if len(found) > 1 else None


def _check_first_row(source: Source) -> None:
    # With more fields in the first row than in the header, pandas would silently take the
    # first column as the index (or drop the extra values); every later row is checked by
    # pandas itself ("Expected 2 fields in line 3, saw 3").
    header, first = _csv_head(source)
    if first is not None and len(first) > len(header):
        raise TableError(
            f"unreadable CSV file: the first data row has {len(first)} fields but the header "
            f"has {len(header)}"
        )


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    message = text[0] if text else type(exc).__name__
    return message[:300]


def column_kind(series: pd.Series) -> ColumnKind:
    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return "text"
    if pd.api.types.is_bool_dtype(dtype):
        return "boolean"
    if pd.api.types.is_integer_dtype(dtype):
        return "integer"
    if pd.api.types.is_float_dtype(dtype):
        return "float"
    if pd.api.types.is_object_dtype(dtype):
        inferred = pd.api.types.infer_dtype(series, skipna=True)
        if inferred == "boolean":
            return "boolean"
        if inferred == "integer":
            return "integer"
        if inferred in ("floating", "mixed-integer-float", "decimal"):
            return "float"
    return "text"


def _describe_column(name: str, series: pd.Series) -> ColumnInfo:
    kind = column_kind(series)
    dtype = str(series.dtype)
    if kind in ("integer", "float"):
        values = _floats(series)
        finite = values[np.isfinite(values)]
        non_null, distinct = len(finite), len(pd.unique(finite))
    elif kind == "boolean":
        present = series[series.notna()]
        non_null, distinct = len(present), int(present.nunique())
    else:
        present = series[series.notna()]
        labels = pd.unique(np.asarray(present.astype(str), dtype=object))
        levels: list[str] | None = None
        if len(labels) <= MAX_CATEGORIES and all(len(v) <= MAX_LEVEL_CHARS for v in labels):
            levels = sorted(str(v) for v in labels)
        return ColumnInfo(
            name=name,
            dtype=dtype,
            kind=kind,
            numeric=False,
            non_null=len(present),
            distinct=len(labels),
            categories=len(labels),
            levels=levels,
        )
    return ColumnInfo(
        name=name, dtype=dtype, kind=kind, numeric=True, non_null=non_null, distinct=distinct
    )


def _floats(series: pd.Series) -> np.ndarray:
    numbers = pd.to_numeric(series, errors="coerce")
    return np.asarray(numbers.to_numpy(dtype=np.float64, na_value=np.nan), dtype=np.float64)


# -- the encoding plan -------------------------------------------------------------------------


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
    alg = get_algorithm(algorithm)
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


# -- loading -----------------------------------------------------------------------------------


def load_uploaded(source: DatasetSource, data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """(X, y) of an uploaded dataset from its (already sha256-verified) bytes and plan."""
    plan = source.plan
    frame = read_frame(data, source.format, columns=plan.columns())
    if len(frame) != source.rows:
        raise TableError(f"the dataset has {len(frame)} rows, its record says {source.rows}")
    X = encode_features(frame, plan)
    y = encode_target(frame[plan.target], plan)
    return np.ascontiguousarray(X, dtype=np.float64), np.ascontiguousarray(y)


def encode_features(frame: pd.DataFrame, plan: EncodingPlan) -> np.ndarray:
    """The plan's features as one float64 matrix (one-hot blocks in level order)."""
    rows = len(frame)
    X = np.zeros((rows, plan.n_features), dtype=np.float64)
    offset = 0
    for feature in plan.features:
        series = frame[feature.column]
        if feature.encoding == "onehot":
            codes = _codes(series, feature.levels or [])
            if (codes < 0).any():
                raise TableError(
                    f"column {feature.column!r} has a missing value or one outside its "
                    f"{feature.width} encoded categories"
                )
            X[np.arange(rows), offset + codes] = 1.0
        else:
            values = _booleans(series) if feature.encoding == "boolean" else _floats(series)
            if not np.isfinite(values).all():
                raise TableError(f"column {feature.column!r} has missing or infinite values")
            X[:, offset] = values
        offset += feature.width
    return X


def encode_target(series: pd.Series, plan: EncodingPlan) -> np.ndarray:
    if series.isna().any():
        raise TableError(f"the target column {plan.target!r} has missing values")
    if plan.target_encoding == "numeric":
        values = _booleans(series) if plan.target_kind == "boolean" else _floats(series)
        if not np.isfinite(values).all():
            raise TableError(f"the target column {plan.target!r} has non-finite values")
        return values
    match plan.target_kind:
        case "integer":
            return np.asarray(series.to_numpy(), dtype=np.int64)
        case "float":
            return _floats(series)
        case "boolean":
            return np.asarray(series.to_numpy(), dtype=bool)
        case _:
            # Fixed-width unicode, not object: sortable for the label set, and storable in a
            # model file without pickling.
            return np.asarray([str(v) for v in series.astype(str)], dtype=str)


def _codes(series: pd.Series, levels: list[str]) -> np.ndarray:
    labels = series.astype(str).where(series.notna())
    return np.asarray(pd.Categorical(labels, categories=levels).codes, dtype=np.int64)


def _booleans(series: pd.Series) -> np.ndarray:
    return np.asarray(
        series.astype(object).map({True: 1.0, False: 0.0}).to_numpy(dtype=np.float64),
        dtype=np.float64,
    )
