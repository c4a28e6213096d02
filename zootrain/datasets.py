"""Uploaded datasets: their records in ZooKeeper, their files in the artifact store, and the
submit-time resolution of a job's ``{"kind": "uploaded"}`` dataset.

/datasets/<id> holds a DatasetRecord (columns, types, rows, the file's URI and sha256); the
bytes are the artifact ``datasets/<sha256>.<csv|parquet>``, shared by every record with the same
content. A file is written to a temporary name in the store's ``datasets/`` directory while it is
hashed, checked, then hard-linked to its final name; it is deleted with the last record that
names it, once no unfinished job uses it.

Sharing one file between records needs care when one record is deleted while an identical file
is uploaded: the uploader links the file before creating its record and links it again after
(from its own temporary file, which only it deletes); the deleter moves the file aside, looks
for records and jobs that use it again, and moves it back if any appeared. Whichever order the
steps interleave in, a record never outlives its file (a crash in between can leave an unused
file behind, never a record without one).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import os
import secrets
import tempfile
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from kazoo.exceptions import NodeExistsError, NoNodeError
from pydantic import BaseModel, Field

from zootrain.artifacts import ArtifactStore
from zootrain.errors import Conflict, InvalidRequest, NotFound, ZootrainError
from zootrain.ml.datasets import UploadedDataset
from zootrain.ml.partition import check_partition
from zootrain.ml.tabular import (
    SNIFF_BYTES,
    ColumnInfo,
    DatasetSource,
    Format,
    PlanError,
    Table,
    make_plan,
)
from zootrain.paths import Paths
from zootrain.queue import JobQueue
from zootrain.records import JobRecord, JobSpec, Record, new_job_id, utcnow
from zootrain.zk import TRANSIENT_ERRORS, ZnodeStat, ZooKeeper

MAX_RECORD_BYTES = 512 * 1024
"""A dataset record (and the plan a job copies from it) must stay well inside ZooKeeper's
1 MB limit on a node, and on the submit's multi that writes the job record."""
MAX_NAME_CHARS = 200
_READ_BATCH = 64


class ContentTooLarge(ZootrainError):
    status = 413
    title = "Content Too Large"


class MalformedUpload(ZootrainError):
    status = 400
    title = "Bad Request"


class UnsupportedContent(ZootrainError):
    status = 415
    title = "Unsupported Media Type"


class DatasetRecord(Record):
    """/datasets/<id>: an uploaded dataset."""

    id: str
    name: str | None = None
    format: Format
    artifact: str = Field(description="URI in the artifact store: datasets/<sha256>.<format>")
    sha256: str
    size: int = Field(description="bytes")
    rows: int
    columns: list[ColumnInfo]
    created_at: datetime
    owner: str | None = Field(
        None, description="Name of the API token that uploaded it (its upload quota counts it)"
    )


class DatasetSummary(BaseModel):
    """A dataset without its column descriptions (GET /v1/datasets/{id} has them)."""

    id: str
    name: str | None
    format: Format
    artifact: str
    sha256: str
    size: int
    rows: int
    n_columns: int
    created_at: datetime
    owner: str | None = None

    @classmethod
    def of(cls, record: DatasetRecord) -> DatasetSummary:
        return cls(
            **record.model_dump(exclude={"columns"}),
            n_columns=len(record.columns),
        )


class DatasetList(BaseModel):
    items: list[DatasetSummary]
    next_cursor: str | None = Field(
        None, description="Pass as `cursor` for the next page; null on the last page"
    )


def new_dataset_id() -> str:
    """Time-ordered like job ids: listing newest first is sorting ids."""
    return new_job_id()


# -- files --------------------------------------------------------------------------------------


class BlobWriter:
    """A temporary file in the store's datasets directory, hashed as it is written.

    Blocking (file I/O): the job service calls it from a thread.
    """

    def __init__(self, store: ArtifactStore, kind: str = "datasets") -> None:
        directory = store.root / kind
        directory.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=directory, prefix=".tmp-upload-")
        self.path = Path(name)
        self._file = os.fdopen(fd, "wb")
        self._hash = hashlib.sha256()
        self.size = 0
        self.head = b""

    def write(self, data: bytes) -> None:
        self._file.write(data)
        self._hash.update(data)
        self.size += len(data)
        if len(self.head) < SNIFF_BYTES:
            self.head += data[: SNIFF_BYTES - len(self.head)]

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    def close(self) -> None:
        if not self._file.closed:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            self._file.close()
        self.path.unlink(missing_ok=True)


def _link(source: Path, target: Path) -> None:
    """Give ``source``'s bytes the name ``target`` (atomic; the same content may be there)."""
    with contextlib.suppress(FileExistsError):
        os.link(source, target)


# -- the catalog --------------------------------------------------------------------------------


class DatasetCatalog:
    def __init__(self, zk: ZooKeeper, paths: Paths, store: ArtifactStore) -> None:
        self.zk = zk
        self.paths = paths
        self.store = store

    # -- read -----------------------------------------------------------------------------------

    async def read(self, dataset_id: str) -> tuple[DatasetRecord, ZnodeStat]:
        path = self.paths.dataset(dataset_id)
        try:
            data, stat = await self.zk.retry(lambda: self.zk.get(path))
        except NoNodeError:
            raise NotFound(f"dataset {dataset_id!r} does not exist") from None
        return DatasetRecord.load(data), stat

    async def ids(self) -> list[str]:
        return sorted(await self.zk.retry(lambda: self.zk.get_children(self.paths.datasets)))

    async def list_page(
        self, *, limit: int = 50, cursor: str | None = None
    ) -> tuple[list[DatasetRecord], str | None]:
        """Newest first; ``cursor`` is the last id of the previous page."""
        ids = [i for i in reversed(await self.ids()) if cursor is None or i < cursor]
        page: list[DatasetRecord] = []
        for start in range(0, len(ids), _READ_BATCH):
            for record in await self._read_many(ids[start : start + _READ_BATCH]):
                page.append(record)
                if len(page) == limit:
                    return page, record.id if record.id != ids[-1] else None
        return page, None

    async def _read_many(self, ids: list[str]) -> list[DatasetRecord]:
        async def maybe(dataset_id: str) -> DatasetRecord | None:
            try:
                return (await self.read(dataset_id))[0]
            except NotFound:
                return None  # deleted between the listing and the read

        found = await asyncio.gather(*(maybe(i) for i in ids))
        return [r for r in found if r is not None]

    async def check_capacity(self, limit: int) -> None:
        stat = await self.zk.retry(lambda: self.zk.exists(self.paths.datasets))
        if stat is not None and stat.numChildren >= limit:
            raise Conflict(
                f"{stat.numChildren} datasets are stored, the limit (ZOOTRAIN_MAX_DATASETS is "
                f"{limit}); delete some with DELETE /v1/datasets/{{id}}"
            )

    # -- create ---------------------------------------------------------------------------------

    async def add(
        self,
        blob: BlobWriter,
        *,
        name: str | None,
        fmt: Format,
        table: Table,
        owner: str | None = None,
    ) -> DatasetRecord:
        """Record a checked, closed upload; its file goes to datasets/<sha256>.<format>."""
        record = DatasetRecord(
            id=new_dataset_id(),
            name=name,
            format=fmt,
            artifact=f"datasets/{blob.sha256}.{fmt}",
            sha256=blob.sha256,
            size=blob.size,
            rows=table.rows,
            columns=table.columns,
            created_at=utcnow(),
            owner=owner,
        )
        data = record.dump()
        if len(data) > MAX_RECORD_BYTES:
            raise InvalidRequest(
                f"file: the description of its {len(table.columns)} columns takes "
                f"{len(data):,} bytes, over the {MAX_RECORD_BYTES:,} a dataset record may "
                "hold; upload fewer columns or shorter category values"
            )
        final = self.store.path(record.artifact)
        _link(blob.path, final)
        path = self.paths.dataset(record.id)

        async def create() -> None:
            try:
                await self.zk.create(path, data)
            except NodeExistsError:
                # Our own create, applied before its reply was lost.
                existing, _ = await self.zk.get(path)
                if existing != data:
                    raise

        try:
            await self.zk.retry(create)
        except TRANSIENT_ERRORS:
            raise  # the record may exist after all: keep the file (unused at worst)
        except BaseException:
            await self._release_blob(record.sha256, record.artifact)
            raise
        # A concurrent delete of the last other record with this content may have moved the
        # file away before it saw ours; link it again from our temporary file.
        _link(blob.path, final)
        return record

    # -- delete ---------------------------------------------------------------------------------

    async def delete(self, dataset_id: str) -> DatasetRecord:
        """Delete the record, then its file unless another record or unfinished job uses it."""
        record, stat = await self.read(dataset_id)
        users = await self._unfinished_jobs(lambda job: _uses_dataset(job, dataset_id))
        if users:
            shown = ", ".join(job.id for job in users[:10])
            more = f" and {len(users) - 10} more" if len(users) > 10 else ""
            raise Conflict(
                f"dataset {dataset_id} is used by unfinished jobs: {shown}{more}; wait for them "
                "to finish or cancel them (DELETE /v1/jobs/{id})"
            )
        try:
            await self.zk.delete(self.paths.dataset(dataset_id), stat.version)
        except NoNodeError:
            raise NotFound(f"dataset {dataset_id!r} does not exist") from None
        await self._release_blob(record.sha256, record.artifact)
        return record

    async def _unfinished_jobs(self, select: Callable[[JobRecord], bool]) -> list[JobRecord]:
        """Jobs with a queue entry (queued, running, merging) for which ``select`` is true."""
        queue = JobQueue(self.zk, self.paths)
        await self.zk.retry(lambda: self.zk.sync(self.paths.queue))
        ids = await queue.queue()

        async def maybe(job_id: str) -> JobRecord | None:
            try:
                return (await queue.read_job(job_id))[0]
            except NotFound:
                return None

        found: list[JobRecord] = []
        for start in range(0, len(ids), _READ_BATCH):
            jobs = await asyncio.gather(*(maybe(i) for i in ids[start : start + _READ_BATCH]))
            found.extend(job for job in jobs if job is not None and select(job))
        return found

    async def _blob_in_use(self, sha256: str) -> bool:
        await self.zk.retry(lambda: self.zk.sync(self.paths.datasets))
        ids = await self.ids()
        for start in range(0, len(ids), _READ_BATCH):
            records = await self._read_many(ids[start : start + _READ_BATCH])
            if any(r.sha256 == sha256 for r in records):
                return True
        jobs = await self._unfinished_jobs(
            lambda job: job.dataset_source is not None and job.dataset_source.sha256 == sha256
        )
        return bool(jobs)

    async def _release_blob(self, sha256: str, uri: str) -> None:
        if await self._blob_in_use(sha256):
            return
        final = self.store.path(uri)
        aside = final.with_name(f".tmp-delete-{secrets.token_hex(8)}")
        try:
            os.replace(final, aside)
        except FileNotFoundError:
            return
        try:
            in_use = await self._blob_in_use(sha256)
        except BaseException:
            _link(aside, final)
            aside.unlink(missing_ok=True)
            raise
        if in_use:
            _link(aside, final)  # an identical upload was recorded meanwhile
        aside.unlink(missing_ok=True)

    # -- a job's dataset --------------------------------------------------------------------------

    async def resolve(self, spec: JobSpec) -> DatasetSource | None:
        """Check a job's uploaded dataset against its record; return its resolved source
        (file, sha256, rows, task, encoding plan), or None for the other dataset kinds.

        Raises InvalidRequest naming the field; reads only, so a refused job writes nothing.
        """
        dataset = spec.dataset
        if not isinstance(dataset, UploadedDataset):
            return None
        try:
            record, _ = await self.read(dataset.id)
        except NotFound:
            raise InvalidRequest(
                f"dataset.id: no dataset {dataset.id!r}; upload one with POST /v1/datasets"
            ) from None
        try:
            plan, task = make_plan(
                record.columns,
                record.rows,
                algorithm=spec.algorithm,
                target=dataset.target,
                features=dataset.features,
            )
        except PlanError as exc:
            raise InvalidRequest(str(exc)) from None
        try:
            check_partition(spec.algorithm, spec.partition, task)
        except ValueError as exc:
            raise InvalidRequest(f"partition: {exc}") from None
        # The same rounding as split_dataset (train_test_split): the test set is ceil'd.
        test_rows = math.ceil(spec.test_size * record.rows)
        train_rows = record.rows - test_rows
        if test_rows < 2:
            raise InvalidRequest(
                f"test_size: {spec.test_size} of the {record.rows} rows of dataset {record.id} "
                "leaves fewer than 2 held-out rows"
            )
        if spec.shards > train_rows:
            raise InvalidRequest(
                f"shards: {spec.shards} exceeds the {train_rows} training rows of dataset "
                f"{record.id}"
            )
        source = DatasetSource(
            dataset_id=record.id,
            format=record.format,
            artifact=record.artifact,
            sha256=record.sha256,
            size=record.size,
            rows=record.rows,
            task=task,
            plan=plan,
        )
        return source


def _uses_dataset(job: JobRecord, dataset_id: str) -> bool:
    dataset = job.spec.dataset
    return isinstance(dataset, UploadedDataset) and dataset.id == dataset_id


def default_name(filename: str | None) -> str | None:
    """A dataset's name when none is given: the uploaded file's base name."""
    if not filename:
        return None
    base = filename.replace("\\", "/").rsplit("/", 1)[-1].strip()
    return base[:MAX_NAME_CHARS] or None
