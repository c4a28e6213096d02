"""Uploaded datasets: their records in ZooKeeper, their files in the artifact store, and the
submit-time resolution of a job's ``{"kind": "uploaded"}`` dataset.

/datasets/<id> holds a DatasetRecord (columns, types, rows, the uploaded file's sha256 and size,
and the key and sha256 of the stored dataset's manifest). Whatever was uploaded, the store holds
it in one form (zootrain.ml.columnar): two Parquet files (original and shuffled row order) and a
manifest naming them, all named by their sha256, so identical uploads share their objects. The
upload is spooled to a private temporary directory of the job service while it is hashed, read
and converted there by a child process, and the results are streamed into the store; only then
is the record created.

Sharing objects between records needs care when one record is deleted while an identical file
is uploaded: both hold a lock named after the content (an ephemeral znode) around the record
change and the objects' fate. The uploader, holding it, creates its record and puts back any
object missing; the deleter, holding it, deletes its record and then the objects unless a record
or an unfinished job still uses them. A record therefore never outlives its objects (a crash in
between can leave unused objects behind, never a record without them).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from kazoo.exceptions import NodeExistsError, NoNodeError
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from zootrain import locks
from zootrain.artifacts import ArtifactStore
from zootrain.errors import (
    ArtifactError,
    Conflict,
    DomainError,
    InvalidRequest,
    NotFound,
    Unavailable,
)
from zootrain.ml.encoding import SNIFF_BYTES, ColumnInfo, PlanError, Table, make_plan
from zootrain.ml.manifest import Manifest
from zootrain.paths import Paths
from zootrain.queue import JobQueue
from zootrain.records import JobRecord, Record, new_job_id, utcnow
from zootrain.shape_bounds import check_shape, fit_rows
from zootrain.spec import (
    DatasetSource,
    Format,
    JobSpec,
    ParamError,
    UploadedDataset,
    check_partition,
)
from zootrain.zk import TRANSIENT_ERRORS, WriteOutcomeUnknown, ZnodeStat, ZooKeeper

MAX_RECORD_BYTES = 512 * 1024
"""A dataset record (and the plan a job copies from it) must stay well inside ZooKeeper's
1 MB limit on a node, and on the submit's multi that writes the job record."""
MAX_NAME_CHARS = 200
_READ_BATCH = 64
# A create that failed this way may have been applied (or still be, once ZooKeeper is back).
_UNCERTAIN: tuple[type[BaseException], ...] = (*TRANSIENT_ERRORS, WriteOutcomeUnknown)


class ContentTooLarge(DomainError):
    status = 413
    title = "Content Too Large"


class MalformedUpload(DomainError):
    status = 400
    title = "Bad Request"


class UnsupportedContent(DomainError):
    status = 415
    title = "Unsupported Media Type"


class DatasetRecord(Record):
    """/datasets/<id>: an uploaded dataset."""

    id: str
    name: str | None = None
    format: Format = Field(description="The uploaded file's format")
    artifact: str = Field(
        description="The stored dataset in the artifact store: datasets/<sha256>.json, the "
        "manifest of its Parquet files (datasets/<sha256>.<format>, the file as uploaded, for "
        "a dataset stored before that form)"
    )
    sha256: str = Field(description="sha256 of the uploaded file")
    artifact_sha256: str | None = Field(
        None, description="sha256 of the manifest (null for a dataset stored as uploaded)"
    )
    size: int = Field(description="bytes of the uploaded file")
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
    artifact_sha256: str | None = None
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

LOCK_WAIT = 30.0
"""Seconds an upload or delete waits for another one of the same content."""


class BlobWriter:
    """The uploaded file, spooled into a private temporary directory as it arrives and hashed
    on the way; the stored form is written beside it. Blocking (file I/O): the job service
    calls it from a thread."""

    def __init__(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="zootrain-upload-"))
        self.path = self.directory / "upload"
        self._file = self.path.open("wb")
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
            self._file.close()

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            self._file.close()
        shutil.rmtree(self.directory, ignore_errors=True)


@dataclass(frozen=True)
class StoredForm:
    """An upload converted for the store: its manifest and the local files it names."""

    manifest: Manifest
    files: list[Path]

    @property
    def manifest_bytes(self) -> bytes:
        return self.manifest.dump()

    def put(self, store: ArtifactStore) -> tuple[str, str]:
        """Stream the files, then the manifest, into the store (blocking); the manifest's key
        and sha256. The manifest goes last: whoever can read it finds every file it names."""
        refs = (self.manifest.original, self.manifest.shuffled)
        for path, ref in zip(self.files, refs, strict=True):
            store.put_file(path, kind="datasets", suffix="parquet", sha256=ref.sha256)
        return store.put(self.manifest_bytes, kind="datasets", suffix="json")

    def keys(self) -> list[str]:
        manifest = f"datasets/{hashlib.sha256(self.manifest_bytes).hexdigest()}.json"
        return [self.manifest.original.key, self.manifest.shuffled.key, manifest]

    def missing(self, store: ArtifactStore) -> bool:
        return any(store.size(k) is None for k in self.keys())

    def touch(self, store: ArtifactStore) -> bool:
        """Renew the objects' time for garbage collection (store_gc.py); False if any is gone."""
        return all([store.touch(key) for key in self.keys()])


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
        stored: StoredForm,
        owner: str | None = None,
    ) -> DatasetRecord:
        """Store a checked upload's converted form and record it."""
        manifest_bytes = stored.manifest_bytes
        record = DatasetRecord(
            id=new_dataset_id(),
            name=name,
            format=fmt,
            artifact=f"datasets/{hashlib.sha256(manifest_bytes).hexdigest()}.json",
            sha256=blob.sha256,
            artifact_sha256=hashlib.sha256(manifest_bytes).hexdigest(),
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
        # The long part (streaming the files into the store) happens outside the lock.
        await run_in_threadpool(stored.put, self.store)
        path = self.paths.dataset(record.id)

        async def create() -> None:
            try:
                await self.zk.create(path, data)
            except NodeExistsError:
                # Our own create, applied before its reply was lost.
                existing, _ = await self.zk.get(path)
                if existing != data:
                    raise

        async with self._content_lock(record):
            # The collector keeps what was written within its grace period, and the wait for
            # the lock may have outlasted it: renew the objects' time right before the record
            # that names them is written (store them again if one went meanwhile).
            if not await run_in_threadpool(stored.touch, self.store):
                await run_in_threadpool(stored.put, self.store)
            try:
                await self.zk.retry(create)
            except _UNCERTAIN:
                raise  # the record may exist after all: keep the objects (unused at worst)
            except BaseException:
                await self._release(record)
                raise
            # A delete of the last other record with this content may have removed the objects
            # after we stored them and before we held the lock: store them again.
            if await run_in_threadpool(stored.missing, self.store):
                await run_in_threadpool(stored.put, self.store)
        return record

    # -- delete ---------------------------------------------------------------------------------

    async def delete(self, dataset_id: str) -> DatasetRecord:
        """Delete the record, then its objects unless another record or unfinished job uses
        them."""
        record, stat = await self.read(dataset_id)
        users = await self._unfinished_jobs(lambda job: _uses_dataset(job, dataset_id))
        if users:
            shown = ", ".join(job.id for job in users[:10])
            more = f" and {len(users) - 10} more" if len(users) > 10 else ""
            raise Conflict(
                f"dataset {dataset_id} is used by unfinished jobs: {shown}{more}; wait for them "
                "to finish or cancel them (DELETE /v1/jobs/{id})"
            )
        async with self._content_lock(record):
            try:
                await self.zk.delete(self.paths.dataset(dataset_id), stat.version)
            except NoNodeError:
                raise NotFound(f"dataset {dataset_id!r} does not exist") from None
            await self._release(record)
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

    async def _in_use(self, artifact: str) -> bool:
        await self.zk.retry(lambda: self.zk.sync(self.paths.datasets))
        ids = await self.ids()
        for start in range(0, len(ids), _READ_BATCH):
            records = await self._read_many(ids[start : start + _READ_BATCH])
            if any(r.artifact == artifact for r in records):
                return True
        jobs = await self._unfinished_jobs(
            lambda job: job.dataset_source is not None and job.dataset_source.artifact == artifact
        )
        return bool(jobs)

    async def _release(self, record: DatasetRecord) -> None:
        """Delete a record's objects unless something still uses them (content lock held)."""
        if await self._in_use(record.artifact):
            return
        keys = [record.artifact]
        if record.artifact_sha256 is not None:
            with contextlib.suppress(ArtifactError, ValueError):
                raw = await run_in_threadpool(
                    self.store.get, record.artifact, record.artifact_sha256
                )
                manifest = Manifest.model_validate_json(raw)
                # The files first: a manifest left behind by a crash still names them.
                keys = [manifest.original.key, manifest.shuffled.key, record.artifact]
        for key in keys:
            await self.store.delete_async(key)

    @contextlib.asynccontextmanager
    async def _content_lock(self, record: DatasetRecord) -> AsyncIterator[None]:
        """Serialise record changes and object deletes of one content across job services."""
        digest = record.artifact_sha256 or record.sha256
        path = f"{self.paths.locks}/dataset-{digest}"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + LOCK_WAIT
        while not await locks.try_acquire(self.zk, path, "datasets"):
            freed = asyncio.Event()
            if not await locks.watch_release(self.zk, path, freed.set):
                continue  # released before the watch was set: try again
            try:
                await asyncio.wait_for(freed.wait(), max(0.0, deadline - loop.time()))
            except TimeoutError:
                raise Unavailable(
                    f"another upload or delete of the same content holds {path}; try again"
                ) from None
        try:
            yield
        finally:
            await locks.release(self.zk, path)

    # -- a job's dataset --------------------------------------------------------------------------

    async def resolve(self, spec: JobSpec) -> DatasetSource | None:
        """Check a job's uploaded dataset against its record; return its resolved source
        (file, sha256, rows, task, encoding plan), or None for the other dataset kinds.

        Raises InvalidRequest naming the field; reads only, so a refused job writes nothing.
        """
        source, _ = await self.resolve_versioned(spec)
        return source

    async def resolve_versioned(self, spec: JobSpec) -> tuple[DatasetSource | None, int | None]:
        """``resolve``, and the version of the dataset record it read (for the submit multi's
        check: a delete between this read and the multi must fail the submit)."""
        dataset = spec.dataset
        if not isinstance(dataset, UploadedDataset):
            return None, None
        try:
            record, stat = await self.read(dataset.id)
        except NotFound:
            raise InvalidRequest(
                f"dataset.id: no dataset {dataset.id!r}; upload one with POST /v1/datasets"
            ) from None
        # The same rounding as the job's split: the held-out set is ceil'd.
        test_rows = math.ceil(spec.test_size * record.rows)
        train_rows = record.rows - test_rows
        # "auto" replicates only what passes this same limit (zootrain.shard_plan).
        whole = spec.partition == "replicate" or spec.baseline or spec.kind == "search"
        share = train_rows if whole else math.ceil(train_rows / max(1, spec.shards))
        try:
            plan, task = make_plan(
                record.columns,
                record.rows,
                algorithm=spec.algorithm,
                target=dataset.target,
                features=dataset.features,
                task_rows=max(share, test_rows),
            )
        except PlanError as exc:
            raise InvalidRequest(str(exc)) from None
        try:
            check_partition(spec.algorithm, spec.partition, task)
        except ValueError as exc:
            raise InvalidRequest(f"partition: {exc}") from None
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
        label = next(c for c in record.columns if c.name == dataset.target)
        classes = label.distinct if task == "classification" else None
        _check_shape(spec, plan.n_features, train_rows, classes, record.id)
        source = DatasetSource(
            dataset_id=record.id,
            format=record.format,
            artifact=record.artifact,
            sha256=record.sha256,
            artifact_sha256=record.artifact_sha256,
            size=record.size,
            rows=record.rows,
            task=task,
            plan=plan,
        )
        return source, stat.version


def _check_shape(
    spec: JobSpec, features: int, train_rows: int, classes: int | None, dataset_id: str
) -> None:
    """What zootrain.ml.validation checks of a built-in dataset's shape, from the record: the
    parameters (a search's candidates) against the encoded features and a fit's rows."""
    search = spec.search if spec.kind == "search" else None
    rows = fit_rows(
        train_rows,
        spec.shards,
        whole=spec.partition == "replicate",
        folds=search.cv if search is not None else None,
    )
    candidates = spec.candidate_params() if search is not None else [spec.params]
    try:
        for params in candidates:
            check_shape(spec.algorithm, params, features=features, rows=rows, classes=classes)
    except ParamError as exc:
        where = "search: candidate parameter" if search is not None else "params:"
        raise InvalidRequest(f"{where} {exc.param}: {exc} (dataset {dataset_id})") from None


def _uses_dataset(job: JobRecord, dataset_id: str) -> bool:
    dataset = job.spec.dataset
    return isinstance(dataset, UploadedDataset) and dataset.id == dataset_id


def default_name(filename: str | None) -> str | None:
    """A dataset's name when none is given: the uploaded file's base name."""
    if not filename:
        return None
    base = filename.replace("\\", "/").rsplit("/", 1)[-1].strip()
    return base[:MAX_NAME_CHARS] or None
