"""How an uploaded dataset is stored: Parquet with bounded row groups, in two row orders, and
read back a few row groups and columns at a time with every byte checked.

Whatever was uploaded (CSV or Parquet), the job service stores it as two Parquet files:

- ``original``: the rows in the uploaded order, for ``range`` shards (a time-ordered file cut
  into periods);
- ``shuffled``: the same rows in a seeded random order, with their original row number in a
  ``__row__`` column. Any contiguous run of it is a uniform random sample of the dataset, which
  is what ``random`` and ``stratified`` shards and the held-out split read
  (zootrain.ml.selection), so none of them reads more than its own rows.

Row groups hold at most ``ROW_GROUP_BYTES`` of values (between ``MIN_GROUP_ROWS`` and
``MAX_GROUP_ROWS`` rows), so a reader that needs a row range reads at most one partial group at
either end. A manifest (JSON, in the store beside the files, named by its sha256 like every
artifact) lists each file's sha256 and, for each row group, the byte range and sha256 of every
column chunk and of the footer: a shard fetches only the footer and the chunks of its row groups
and planned columns (ranged GETs on S3, coalesced; ``pread`` on a directory) and checks each
against the manifest, whose own sha256 is in the dataset's ZooKeeper record.
"""

from __future__ import annotations

import bisect
import contextlib
import ctypes
import hashlib
import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

# The manifest (pydantic only) lives in zootrain.ml.manifest: the job service reads it without
# numpy or pyarrow. Re-exported here beside the writer and the reader.
from zootrain.ml.manifest import ChunkRef as ChunkRef
from zootrain.ml.manifest import Manifest as Manifest
from zootrain.ml.manifest import ParquetRef as ParquetRef
from zootrain.ml.manifest import RowGroupRef as RowGroupRef

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from zootrain.artifacts import ArtifactStore

ROW_GROUP_BYTES = 4 * 1024 * 1024
MIN_GROUP_ROWS = 1024
MAX_GROUP_ROWS = 65_536
ROW_COLUMN = "__row__"
FETCH_BATCH_BYTES = 4 * 1024 * 1024
"""Column chunks fetched in one request batch (obstore coalesces and parallelises a batch)."""


def group_rows(n_columns: int, bytes_per_value: int = 8) -> int:
    """Rows per row group for a table this wide: about ROW_GROUP_BYTES of values."""
    rows = ROW_GROUP_BYTES // max(1, n_columns * bytes_per_value)
    return max(MIN_GROUP_ROWS, min(MAX_GROUP_ROWS, rows))


def shuffle_seed(sha256: str) -> int:
    """The shuffled copy's seed: fixed by the uploaded bytes, so re-uploading the same file
    stores the same objects."""
    return int(sha256[:8], 16)


def permutation(n_rows: int, seed: int) -> np.ndarray:
    # The legacy RandomState stream is frozen by NumPy's compatibility policy (NEP 19).
    return np.random.RandomState(seed).permutation(n_rows).astype(np.int64, copy=False)


# -- writing (the job service's upload child) ----------------------------------------------------


def to_arrow(frame: pd.DataFrame) -> pa.Table:
    """The frame as Arrow, its pandas types kept; a column Arrow cannot type (mixed Python
    objects) is stored as text, which is how the encoding reads such a column anyway."""
    import pandas as pd
    import pyarrow as pa

    arrays = []
    for name in frame.columns:
        series = frame[name]
        try:
            arrays.append(pa.Array.from_pandas(series))
        except (pa.ArrowException, TypeError, ValueError):
            text = series.astype(str).where(series.notna(), None)
            arrays.append(pa.Array.from_pandas(pd.Series(text, dtype=object), type=pa.string()))
    return pa.Table.from_arrays(arrays, names=[str(c) for c in frame.columns])


def write_files(
    table: pa.Table,
    directory: Path,
    seed: int,
    dictionary: Sequence[str] = (),
    rows_per_group: int | None = None,
) -> tuple[Manifest, list[Path]]:
    """Write the two Parquet files into ``directory``; the manifest names them by sha256.
    ``dictionary``: the columns with few distinct values, dictionary-encoded (a column of
    mostly distinct numbers only grows with a dictionary). ``rows_per_group``: default
    ``group_rows`` of the table's width."""
    import pyarrow as pa

    rows = table.num_rows
    per_group = rows_per_group or group_rows(table.num_columns)
    original = directory / "original.parquet"
    _write(table, original, per_group, dictionary)
    order = permutation(rows, seed)
    shuffled_table = table.take(pa.array(order)).append_column(ROW_COLUMN, pa.array(order))
    shuffled = directory / "shuffled.parquet"
    _write(shuffled_table, shuffled, per_group, dictionary)
    del shuffled_table
    manifest = Manifest(
        rows=rows, seed=seed, original=describe(original), shuffled=describe(shuffled)
    )
    return manifest, [original, shuffled]


def _write(table: pa.Table, path: Path, per_group: int, dictionary: Sequence[str]) -> None:
    import pyarrow.parquet as pq

    pq.write_table(
        table,
        path,
        row_group_size=per_group,
        use_dictionary=list(dictionary),
        compression="zstd",
        write_statistics=False,  # the footer stays small: readers find rows by position
        store_schema=True,
    )


def describe(path: Path) -> ParquetRef:
    """Byte ranges and sha256 of the footer and of every column chunk of a Parquet file."""
    import pyarrow.parquet as pq

    metadata = pq.ParquetFile(path).metadata
    size = path.stat().st_size
    groups: list[RowGroupRef] = []
    whole = hashlib.sha256()
    with path.open("rb") as handle:
        handle.seek(size - 8)
        footer_length = int.from_bytes(handle.read(4), "little")
        footer_start = size - 8 - footer_length
        first = 0
        for g in range(metadata.num_row_groups):
            group = metadata.row_group(g)
            offsets, lengths, digests = [], [], []
            for c in range(group.num_columns):
                column = group.column(c)
                start = column.data_page_offset
                if column.has_dictionary_page and column.dictionary_page_offset is not None:
                    start = min(start, column.dictionary_page_offset)
                length = column.total_compressed_size
                handle.seek(start)
                digests.append(hashlib.sha256(handle.read(length)).hexdigest())
                offsets.append(start)
                lengths.append(length)
            groups.append(
                RowGroupRef(
                    first=first,
                    rows=group.num_rows,
                    offsets=offsets,
                    lengths=lengths,
                    sha256=digests,
                )
            )
            first += group.num_rows
        handle.seek(footer_start)
        footer = ChunkRef(
            offset=footer_start,
            length=size - footer_start,
            sha256=hashlib.sha256(handle.read(size - footer_start)).hexdigest(),
        )
        handle.seek(0)
        while block := handle.read(8 * 1024 * 1024):
            whole.update(block)
    digest = whole.hexdigest()
    return ParquetRef(
        key=f"datasets/{digest}.parquet",
        sha256=digest,
        size=size,
        columns=list(metadata.schema.to_arrow_schema().names),
        footer=footer,
        row_groups=groups,
    )


# -- reading (training children) ----------------------------------------------------------------


def _trim() -> None:
    """Hand freed heap memory back to the system (glibc keeps it for reuse otherwise: a shard's
    peak would then include every batch's transient copies, not one batch's)."""
    with contextlib.suppress(OSError, AttributeError):
        _LIBC.malloc_trim(0)


_LIBC = ctypes.CDLL(None)


class _Sparse(io.RawIOBase):
    """A file of ``size`` bytes of which only some ranges were fetched (and checked); the rest
    reads as zeros. pyarrow's Parquet reader reads only the footer and the column chunks it is
    asked for, so it never interprets a byte that was not fetched."""

    def __init__(self, size: int, keep_from: int) -> None:
        self.size = size
        self.keep_from = keep_from  # the footer: kept for the reader's whole life
        self.position = 0
        self.starts: list[int] = []
        self.pieces: list[bytes] = []

    def add(self, offset: int, data: bytes) -> None:
        index = bisect.bisect_left(self.starts, offset)
        self.starts.insert(index, offset)
        self.pieces.insert(index, data)

    def drop(self) -> None:
        """Forget every fetched column chunk (a batch is done with them)."""
        kept = [
            (s, p) for s, p in zip(self.starts, self.pieces, strict=True) if s >= self.keep_from
        ]
        self.starts = [s for s, _ in kept]
        self.pieces = [p for _, p in kept]

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            self.position = offset
        elif whence == io.SEEK_CUR:
            self.position += offset
        else:
            self.position = self.size + offset
        return self.position

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        start = self.position
        end = min(self.size, start + len(view))
        if end <= start:
            return 0
        view[: end - start] = b"\x00" * (end - start)
        index = max(0, bisect.bisect_right(self.starts, start) - 1)
        while index < len(self.starts) and self.starts[index] < end:
            piece_start = self.starts[index]
            piece = self.pieces[index]
            lo = max(start, piece_start)
            hi = min(end, piece_start + len(piece))
            if lo < hi:
                view[lo - start : hi - start] = piece[lo - piece_start : hi - piece_start]
            index += 1
        self.position = end
        return end - start


@dataclass
class ParquetReader:
    """Reads chosen rows and columns of one stored Parquet file, one batch of row groups at a
    time, fetching only their chunks of those columns."""

    store: ArtifactStore
    ref: ParquetRef

    def __post_init__(self) -> None:
        import pyarrow.parquet as pq

        self._firsts = [g.first for g in self.ref.row_groups]
        self._index = {name: i for i, name in enumerate(self.ref.columns)}
        footer = self.ref.footer
        self._file = _Sparse(self.ref.size, footer.offset)
        self._file.add(
            footer.offset,
            self.store.get_range(self.ref.key, footer.offset, footer.length, footer.sha256),
        )
        self._parquet = pq.ParquetFile(self._file, pre_buffer=False)

    @property
    def rows(self) -> int:
        return sum(g.rows for g in self.ref.row_groups)

    def groups_of(self, rows: np.ndarray) -> list[int]:
        """The row groups holding ``rows`` (sorted positions)."""
        if len(rows) == 0:
            return []
        found = np.searchsorted(np.asarray(self._firsts), rows, side="right") - 1
        return [int(g) for g in np.unique(found)]

    def batches(
        self, columns: Sequence[str], rows: np.ndarray
    ) -> Iterator[tuple[np.ndarray, pa.Table]]:
        """(positions, table): for each batch of row groups, the wanted ``rows`` (sorted) in it
        and those rows of ``columns``, in order. Only one batch's bytes are held at a time."""
        rows = np.asarray(rows, dtype=np.int64)
        wanted = [self._index[c] for c in columns]
        groups = self.groups_of(rows)
        batch: list[int] = []
        size = 0
        for g in groups:
            group = self.ref.row_groups[g]
            batch.append(g)
            size += sum(group.lengths[c] for c in wanted)
            if size >= FETCH_BATCH_BYTES:
                yield from self._read(batch, wanted, columns, rows)
                batch, size = [], 0
        if batch:
            yield from self._read(batch, wanted, columns, rows)

    def _read(
        self, batch: list[int], wanted: list[int], columns: Sequence[str], rows: np.ndarray
    ) -> Iterator[tuple[np.ndarray, pa.Table]]:
        import pyarrow as pa

        ranges: list[tuple[int, int, str]] = []
        for g in batch:
            group = self.ref.row_groups[g]
            ranges.extend((group.offsets[c], group.lengths[c], group.sha256[c]) for c in wanted)
        for (offset, _, _), data in zip(
            ranges, self.store.get_ranges(self.ref.key, ranges), strict=True
        ):
            self._file.add(offset, data)
        try:
            for g in batch:
                group = self.ref.row_groups[g]
                lo = np.searchsorted(rows, group.first, side="left")
                hi = np.searchsorted(rows, group.first + group.rows, side="left")
                positions = rows[lo:hi]
                table = self._parquet.read_row_group(g, columns=list(columns), use_threads=False)
                yield positions, table.take(pa.array(positions - group.first))
        finally:
            self._file.drop()
            _trim()
