"""The model registry: published versions of named models, and the one multi that publishes.

Version nodes are named ``v-<n-1>`` with n chosen by the publisher (latest + 1) rather than by
ZooKeeper's sequential suffix: the job record has to name its version inside the same multi that
creates it, and a name known in advance allows that. Two publishers racing for one number collide
on NodeExists and the loser takes the next number, so numbers stay dense and unique.
"""

from __future__ import annotations

import asyncio
import functools

from kazoo.exceptions import BadVersionError, NodeExistsError, NoNodeError

from zootrain.errors import Gone, NotFound
from zootrain.paths import Paths, parse_version_node
from zootrain.queue import JobQueue
from zootrain.records import JobRecord, JobState, ModelRef, VersionRecord, utcnow
from zootrain.zk import TransactionFailed, TransactionRequest, ZnodeStat, ZooKeeper


class Registry:
    def __init__(self, zk: ZooKeeper, paths: Paths) -> None:
        self.zk = zk
        self.paths = paths

    async def model_names(self) -> list[str]:
        return sorted(await self.zk.retry(lambda: self.zk.get_children(self.paths.models)))

    async def versions(self, name: str) -> list[int]:
        try:
            names = await self.zk.retry(lambda: self.zk.get_children(self.paths.model(name)))
        except NoNodeError:
            raise NotFound(f"model {name!r} does not exist") from None
        return sorted(v for v in map(parse_version_node, names) if v is not None)

    async def read(self, name: str, version: int | None = None) -> VersionRecord:
        """A version to serve: the given one (Gone if deleted) or the latest not deleted."""
        if version is None:
            return await self.latest_live(name)
        record, _ = await self._read(name, version)
        if record.deleted_at is not None:
            raise Gone(
                f"model {name!r} version {version} was deleted at "
                f"{record.deleted_at:%Y-%m-%dT%H:%M:%SZ}"
            )
        return record

    async def record(self, name: str, version: int) -> VersionRecord:
        """A version's record, deleted or not."""
        record, _ = await self._read(name, version)
        return record

    async def _read(self, name: str, number: int) -> tuple[VersionRecord, ZnodeStat]:
        try:
            data, stat = await self.zk.retry(lambda: self.zk.get(self.paths.version(name, number)))
        except NoNodeError:
            raise NotFound(f"model {name!r} has no version {number}") from None
        record: VersionRecord = VersionRecord.load(data)
        record.version = number
        return record, stat

    async def latest_live(self, name: str, numbers: list[int] | None = None) -> VersionRecord:
        """The newest version not deleted (``numbers``: the listing, if the caller has it)."""
        for number in reversed(await self.versions(name) if numbers is None else numbers):
            try:
                record, _ = await self._read(name, number)
            except NotFound:
                continue  # trimmed by housekeeping since the listing
            if record.deleted_at is None:
                return record
        raise NotFound(f"model {name!r} has no published version")

    async def read_all(self, name: str) -> list[VersionRecord]:
        """Every version's record, deleted ones included (with ``deleted_at``)."""
        numbers = await self.versions(name)
        found = await asyncio.gather(*(self._read(name, n) for n in numbers))
        return [record for record, _ in found]

    async def delete(self, name: str, version: int) -> VersionRecord:
        """Mark a version deleted; the caller then removes its file (``unreferenced``).

        The node stays as a tombstone: the publisher numbers a new version from the highest
        node, so deleting the latest node would hand its number to the next, different model.
        """
        while True:
            record, stat = await self._read(name, version)
            if record.deleted_at is not None:
                raise Gone(f"model {name!r} version {version} is already deleted")
            deleted = record.model_copy(update={"deleted_at": utcnow()})
            try:
                await self.zk.set(self.paths.version(name, version), deleted.dump(), stat.version)
            except BadVersionError:
                continue  # changed under us (another delete): look again
            return deleted

    async def unreferenced(self, artifacts: set[str]) -> set[str]:
        """Those of ``artifacts`` that no version left undeleted refers to (files are
        content-addressed: two identical trainings share one)."""
        live: set[str] = set()
        for name in await self.model_names():
            try:
                records = await self.read_all(name)
            except NotFound:
                continue
            live.update(r.artifact for r in records if r.deleted_at is None)
        return artifacts - live

    async def publish(
        self, queue: JobQueue, job: JobRecord, stat: ZnodeStat, version: VersionRecord
    ) -> JobRecord:
        """Create the version, set the job ``succeeded`` and drop its queue entry, atomically.

        Raises BadVersionError if the job changed since ``stat`` (cancelled, or published by
        another merger): the version is then not created, so it is published at most once.
        """
        name = job.spec.model_name
        await self.zk.ensure_path(self.paths.model(name))
        while True:
            numbers = await self.versions(name)
            number = (numbers[-1] if numbers else 0) + 1
            record = version.model_copy(update={"version": number, "created_at": utcnow()})
            model = ModelRef(name=name, version=number)
            add_version = functools.partial(
                _create, self.paths.version(name, number), record.dump()
            )
            try:
                return await queue.finish_job(
                    job.model_copy(update={"model": model}),
                    stat,
                    JobState.succeeded,
                    error=None,
                    also=add_version,
                )
            except TransactionFailed as failed:
                if isinstance(failed.error, NodeExistsError):
                    continue  # another job took that number first: take the next
                if isinstance(failed.error, BadVersionError):
                    raise failed.error from None
                raise


def _create(path: str, data: bytes, tx: TransactionRequest) -> None:
    tx.create(path, data)
