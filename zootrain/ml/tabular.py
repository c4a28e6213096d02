"""Uploaded tables (CSV, Parquet): reading and describing them, and loading (X, y).

Pure: no ZooKeeper and no artifact store. The job service describes a file once, at upload
(``describe``, in its table-checking child: this module imports pandas and pyarrow); a job's
submit turns that description into an ``EncodingPlan`` (zootrain.ml.encoding.make_plan, which
also says how every column is encoded); every worker then loads the same (X, y) from the same
bytes and plan (``load_uploaded``), reading only the columns the plan names.
"""

from __future__ import annotations

import contextlib
import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import IO

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from zootrain.ml.columnar import Manifest

# What needs neither pandas nor pyarrow (the description of a table, its encoding plan, the
# format sniffing) lives in zootrain.ml.encoding and zootrain.spec, which the job service
# imports; re-exported here beside the readers.
from zootrain.ml.encoding import CSV_SUFFIXES as CSV_SUFFIXES
from zootrain.ml.encoding import MAX_CATEGORIES as MAX_CATEGORIES
from zootrain.ml.encoding import MAX_CLASSES as MAX_CLASSES
from zootrain.ml.encoding import MAX_ENCODED_VALUES as MAX_ENCODED_VALUES
from zootrain.ml.encoding import MAX_LEVEL_CHARS as MAX_LEVEL_CHARS
from zootrain.ml.encoding import PARQUET_SUFFIXES as PARQUET_SUFFIXES
from zootrain.ml.encoding import PARQUET_TYPES as PARQUET_TYPES
from zootrain.ml.encoding import SNIFF_BYTES as SNIFF_BYTES
from zootrain.ml.encoding import ColumnInfo as ColumnInfo
from zootrain.ml.encoding import PlanError as PlanError
from zootrain.ml.encoding import Table as Table
from zootrain.ml.encoding import TableError as TableError
from zootrain.ml.encoding import make_plan as make_plan
from zootrain.ml.encoding import sniff as sniff
from zootrain.spec import MAX_COLUMN_NAME_CHARS
from zootrain.spec import ColumnKind as ColumnKind
from zootrain.spec import DatasetSource as DatasetSource
from zootrain.spec import Encoding as Encoding
from zootrain.spec import EncodingPlan as EncodingPlan
from zootrain.spec import FeatureEncoding as FeatureEncoding
from zootrain.spec import Format as Format
from zootrain.spec import Task as Task

Source = Path | bytes


# -- describing a table ------------------------------------------------------------------------


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
