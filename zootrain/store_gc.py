"""Garbage collection of the artifact store: mark what ZooKeeper's records name, sweep the rest.

Files nobody will read again pile up otherwise: shard models of jobs whose merged version was
published, files of trimmed or deleted versions and of deleted datasets, results of attempts
that were fenced off or cancelled, temporary files of killed processes. The housekeeping leader
collects them every ``ZOOTRAIN_ARTIFACT_GC_INTERVAL``.

**Mark** (``referenced``): every artifact URI in the records that can still need a file:
version records not deleted, dataset records (and the Parquet files their manifests name),
and unfinished jobs (their dataset source, their shards' models, which the merge will read,
and, training in rounds, the parameters and results their round nodes name). URIs are taken
from the records' raw bytes, not from a parse: a record this code cannot parse (a newer
writer, a corrupt node) still protects every file it names. A read that fails ends the
collection before anything is deleted.

**Sweep** (``collect``): the store is listed *before* the mark, and an unmarked object goes only
if its last write is older than the grace period (``ZOOTRAIN_ARTIFACT_GC_GRACE``; temporary
files: an hour). A file written after the listing is not even considered. A file written
earlier, whose record is written after the mark, is protected by its writer: the worker touches
the file (``touch``) right before it writes the record that names it, however long it waited
(an outage) between the two, and ``put`` touches bytes it finds stored already. The store's
conditional delete moves the file aside and then checks its time: a touch that came first
puts it back; a touch that comes after finds nothing, and the record is not written (the shard
is trained again). The leader checks it still leads before each deletion.

The collector reaches the store through two methods only, ``list_objects()`` and ``delete()``,
and writers through ``touch()`` (zootrain/artifacts.py); any backend provides the three.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from kazoo.exceptions import NoNodeError

from zootrain.artifacts import KINDS, NAME, ArtifactStore, StoredObject
from zootrain.errors import ArtifactError
from zootrain.paths import Paths, sorted_queue
from zootrain.records import JobRecord, VersionRecord
from zootrain.rounds import rounds_path
from zootrain.zk import ZooKeeper

log = logging.getLogger("zootrain.gc")

TEMPORARY_MAX_AGE = 3600.0  # seconds: a temporary file older than this belongs to nobody alive
_URI = re.compile(f"(?:{'|'.join(KINDS)})/{NAME}".encode())
_READ_BATCH = 64


@dataclass
class Collection:
    listed: int = 0
    referenced: int = 0
    deleted: int = 0
    deleted_bytes: int = 0
    kept_recent: int = 0  # unreferenced, but within the grace period


def uris(data: bytes) -> set[str]:
    """Every artifact URI in a record's bytes."""
    return {match.decode() for match in _URI.findall(data)}


class Marker:
    """Reads every record that can name an artifact; reads fail loudly (no partial marks)."""

    def __init__(self, zk: ZooKeeper, paths: Paths) -> None:
        self.zk = zk
        self.paths = paths

    async def referenced(self) -> set[str]:
        # The leader may be on a lagging server: catch up before reading what is referenced.
        await self.zk.sync(self.paths.root)
        marked: set[str] = set()
        marked |= await self._versions()
        marked |= await self._datasets()
        marked |= await self._unfinished_jobs()
        return marked

    async def _children(self, path: str) -> list[str]:
        try:
            return sorted(await self.zk.retry(lambda: self.zk.get_children(path)))
        except NoNodeError:
            return []

    async def _data(self, path: str) -> bytes | None:
        try:
            data, _ = await self.zk.retry(lambda: self.zk.get(path))
            return data
        except NoNodeError:
            return None  # deleted since the listing: names nothing any more

    async def _read_all(self, paths: list[str]) -> list[tuple[str, bytes]]:
        found: list[tuple[str, bytes]] = []
        for start in range(0, len(paths), _READ_BATCH):
            chunk = paths[start : start + _READ_BATCH]
            for path, data in zip(
                chunk, await asyncio.gather(*(self._data(p) for p in chunk)), strict=True
            ):
                if data is not None:
                    found.append((path, data))
        return found

    async def _versions(self) -> set[str]:
        marked: set[str] = set()
        for name in await self._children(self.paths.models):
            nodes = await self._children(self.paths.model(name))
            records = await self._read_all([f"{self.paths.model(name)}/{n}" for n in nodes])
            for _, data in records:
                try:
                    if VersionRecord.load(data).deleted_at is not None:
                        continue  # a tombstone: its file was meant to go
                except ValueError:
                    pass  # unparsable: keep what it names
                marked |= uris(data)
        return marked

    async def _datasets(self) -> set[str]:
        marked: set[str] = set()
        ids = await self._children(self.paths.datasets)
        for _, data in await self._read_all([self.paths.dataset(i) for i in ids]):
            marked |= uris(data)
        return marked

    async def _unfinished_jobs(self) -> set[str]:
        """Files of jobs not yet terminal: their dataset and their shards' models.

        Every job is read, not only those in the queue: a job that should have a queue entry
        and has none still keeps its files.
        """
        marked: set[str] = set()
        ids = await self._children(self.paths.jobs)
        queued = {e.job_id for e in sorted_queue(await self._children(self.paths.queue))}
        for path, data in await self._read_all([self.paths.job(i) for i in ids]):
            job_id = path.rpartition("/")[2]
            try:
                if JobRecord.load(data).state.terminal and job_id not in queued:
                    continue
            except ValueError:
                pass  # unparsable: treated as unfinished
            marked |= uris(data)
            shards = await self._children(self.paths.shards(job_id))
            base = self.paths.shards(job_id)
            for _, shard in await self._read_all([f"{base}/{n}" for n in shards]):
                marked |= uris(shard)
            marked |= await self._rounds(job_id)
        return marked

    async def _rounds(self, job_id: str) -> set[str]:
        """A job training in rounds: its round record (the current parameters, the final
        model) and the results entered in its open round, any of which may be in the store.
        A round combined between the reads took its results' files out of use; the record
        read first, or the next one (written after a touch), names what is still needed."""
        record = rounds_path(self.paths, job_id)
        data = await self._data(record)
        if data is None:
            return set()
        marked = uris(data)
        for name in await self._children(record):
            entered = await self._children(f"{record}/{name}")
            for _, result in await self._read_all([f"{record}/{name}/{n}" for n in entered]):
                marked |= uris(result)
        return marked


def named_by_manifests(store: ArtifactStore, marked: set[str]) -> set[str]:
    """The objects the marked dataset manifests name. Blocking: call it from a thread. A
    manifest that is gone names nothing; any other failure to read one ends the collection
    before anything is deleted."""
    named: set[str] = set()
    for key in sorted(k for k in marked if k.startswith("datasets/") and k.endswith(".json")):
        try:
            named |= uris(store.get_unchecked(key))
        except ArtifactError:
            if store.size(key) is not None:
                raise  # there, and unreadable: mark nothing rather than too little
    return named


async def collect(
    zk: ZooKeeper,
    paths: Paths,
    store: ArtifactStore,
    *,
    grace: float,
    still_leading: Callable[[], Awaitable[None]],
) -> Collection:
    """One mark and sweep; ``still_leading`` raises when this process must stop deleting."""
    loop = asyncio.get_running_loop()
    started = time.time()
    listed: list[StoredObject] = await loop.run_in_executor(None, lambda: [*store.list_objects()])
    marked = await Marker(zk, paths).referenced()
    # A dataset's record names its manifest; the manifest names the dataset's Parquet files.
    marked |= await loop.run_in_executor(None, named_by_manifests, store, marked)
    report = Collection(listed=len(listed), referenced=len(marked))
    for stored in listed:
        if not stored.temporary and stored.key in marked:
            continue
        newest = started - (TEMPORARY_MAX_AGE if stored.temporary else grace)
        if stored.modified > newest:
            report.kept_recent += 1
            continue
        await still_leading()
        delete = functools.partial(store.delete, stored.key, unless_modified_after=newest)
        deleted = await loop.run_in_executor(None, delete)
        if deleted:
            report.deleted += 1
            report.deleted_bytes += stored.size
    return report
