"""The model registry: published versions of named models, and the one multi that publishes.

Version nodes are named ``v-<n-1>`` with n chosen by the publisher (latest + 1) rather than by
ZooKeeper's sequential suffix: the job record has to name its version inside the same multi that
creates it, and a name known in advance allows that. Two publishers racing for one number collide
on NodeExists and the loser takes the next number, so numbers stay dense and unique.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable

from kazoo.exceptions import BadVersionError, NodeExistsError, NoNodeError

from zootrain import locks
from zootrain.errors import Conflict, Gone, InvalidRequest, NotFound
from zootrain.paths import Paths, parse_version_node
from zootrain.queue import JobQueue
from zootrain.records import (
    JobRecord,
    JobState,
    ModelRecord,
    ModelRef,
    Promotion,
    VersionRecord,
    utcnow,
)
from zootrain.watched import WatchedRecords
from zootrain.zk import TransactionFailed, TransactionRequest, ZnodeStat, ZooKeeper


class Registry:
    def __init__(self, zk: ZooKeeper, paths: Paths, cache: WatchedRecords | None = None) -> None:
        self.zk = zk
        self.paths = paths
        # The job service's: serve() reads through it (zootrain.watched says why it is safe);
        # every write here forgets what it changed, so this process reads its own writes.
        self.cache = cache

    async def model_names(self) -> list[str]:
        return sorted(await self.zk.retry(lambda: self.zk.get_children(self.paths.models)))

    async def versions(self, name: str) -> list[int]:
        try:
            names = await self.zk.retry(lambda: self.zk.get_children(self.paths.model(name)))
        except NoNodeError:
            raise NotFound(f"model {name!r} does not exist") from None
        return sorted(v for v in map(parse_version_node, names) if v is not None)

    async def read(
        self, name: str, version: int | None = None, alias: str | None = None
    ) -> VersionRecord:
        """A version to serve (see ``serve``)."""
        record, _ = await self.serve(name, version, alias)
        return record

    async def serve(
        self, name: str, version: int | None = None, alias: str | None = None
    ) -> tuple[VersionRecord, str | None]:
        """A version to serve, and the alias it was found by: the given version (Gone if
        deleted), the one ``alias`` points at, or by default the ``champion``'s if the model
        has that alias, else the latest not deleted."""
        if version is None:
            model, _ = await self._served_model(name)
            if alias is not None and alias not in model.aliases:
                raise NotFound(f"model {name!r} has no alias {alias!r}{_known(model)}")
            if alias is None and CHAMPION in model.aliases:
                alias = CHAMPION
            if alias is None:
                return await self._served_latest(name), None
            version = model.aliases[alias]
        record, _ = await self._served_read(name, version)
        if record.deleted_at is not None:
            raise Gone(
                f"model {name!r} version {version} was deleted at "
                f"{record.deleted_at:%Y-%m-%dT%H:%M:%SZ}"
            )
        return record, alias

    async def _served_model(self, name: str) -> tuple[ModelRecord, ZnodeStat]:
        if self.cache is None:
            return await self.model(name)
        try:
            return await self.cache.get(self.paths.model(name), ModelRecord.load)
        except NoNodeError:
            raise NotFound(f"model {name!r} does not exist") from None

    async def _served_read(self, name: str, number: int) -> tuple[VersionRecord, ZnodeStat]:
        if self.cache is None:
            return await self._read(name, number)
        try:
            return await self.cache.get(
                self.paths.version(name, number), functools.partial(_version, number)
            )
        except NoNodeError:
            raise NotFound(f"model {name!r} has no version {number}") from None

    async def _served_latest(self, name: str) -> VersionRecord:
        if self.cache is None:
            return await self.latest_live(name)
        try:
            listing = await self.cache.children(self.paths.model(name))
        except NoNodeError:
            raise NotFound(f"model {name!r} does not exist") from None
        numbers = sorted(v for v in map(parse_version_node, listing) if v is not None)
        for number in reversed(numbers):
            try:
                record, _ = await self._served_read(name, number)
            except NotFound:
                continue  # trimmed by housekeeping since the listing
            if record.deleted_at is None:
                return record
        raise NotFound(f"model {name!r} has no published version")

    def _forget(self, *paths: str) -> None:
        if self.cache is not None:
            for path in paths:
                self.cache.forget(path)

    async def record(self, name: str, version: int) -> VersionRecord:
        """A version's record, deleted or not, with the aliases pointing at it."""
        (record, _), (model, _) = await asyncio.gather(self._read(name, version), self.model(name))
        return _with_aliases(record, model)

    # -- aliases --------------------------------------------------------------------------------

    async def model(self, name: str) -> tuple[ModelRecord, ZnodeStat]:
        """The model node's record (its aliases) and stat: stat.version is the ETag."""
        try:
            data, stat = await self.zk.retry(lambda: self.zk.get(self.paths.model(name)))
        except NoNodeError:
            raise NotFound(f"model {name!r} does not exist") from None
        return ModelRecord.load(data), stat

    async def set_alias(
        self, name: str, alias: str, version: int, *, if_match: int | None, by: str
    ) -> tuple[ModelRecord, ZnodeStat]:
        """Point ``alias`` at ``version``: one setData checked against the model node's version.

        With ``if_match`` (the version the caller read) a concurrent move is a Conflict; without
        it the move is re-applied on the newer record. The multi also checks the target
        version's node, so a version deleted (or trimmed) meanwhile is never aliased.
        """
        while True:
            target, target_stat = await self._read(name, version)
            if target.deleted_at is not None:
                raise InvalidRequest(f"version: model {name!r} version {version} is deleted")
            model, stat = await self.model(name)
            _check_match(name, stat, if_match)
            moved = model.model_copy(
                update={
                    "aliases": {**model.aliases, alias: version},
                    "updated_at": utcnow(),
                    "updated_by": by,
                }
            )
            tx = self.zk.transaction()
            tx.check(self.paths.version(name, version), target_stat.version)
            tx.set_data(self.paths.model(name), moved.dump(), stat.version)
            try:
                results = await self.zk.commit(tx)
            except TransactionFailed as failed:
                if isinstance(failed.error, BadVersionError | NoNodeError):
                    continue  # moved, deleted or trimmed under us: look again
                raise
            self._forget(self.paths.model(name))
            return moved, results[1]

    async def remove_alias(
        self, name: str, alias: str, *, if_match: int | None, by: str
    ) -> tuple[ModelRecord, ZnodeStat]:
        while True:
            model, stat = await self.model(name)
            _check_match(name, stat, if_match)
            if alias not in model.aliases:
                raise NotFound(f"model {name!r} has no alias {alias!r}{_known(model)}")
            left = {k: v for k, v in model.aliases.items() if k != alias}
            removed = model.model_copy(
                update={"aliases": left, "updated_at": utcnow(), "updated_by": by}
            )
            try:
                new_stat = await self.zk.set(self.paths.model(name), removed.dump(), stat.version)
            except BadVersionError:
                continue
            self._forget(self.paths.model(name))
            return removed, new_stat

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
        """Every version's record, deleted ones included (with ``deleted_at``), with the
        aliases pointing at each."""
        numbers = await self.versions(name)
        found = await asyncio.gather(*(self._read(name, n) for n in numbers))
        model, _ = await self.model(name)
        return [_with_aliases(record, model) for record, _ in found]

    async def delete(self, name: str, version: int) -> VersionRecord:
        """Mark a version deleted; the caller then removes its file (``unreferenced``).

        The node stays as a tombstone: the publisher numbers a new version from the highest
        node, so deleting the latest node would hand its number to the next, different model.
        """
        while True:
            record, stat = await self._read(name, version)
            if record.deleted_at is not None:
                raise Gone(f"model {name!r} version {version} is already deleted")
            model, model_stat = await self.model(name)
            deleted = record.model_copy(update={"deleted_at": utcnow()})
            tx = self.zk.transaction()
            tx.set_data(self.paths.version(name, version), deleted.dump(), stat.version)
            # Its aliases go with it, in the same multi (as MLflow's do): an alias never
            # points at a version that is not served. Checked either way, so an alias moved
            # onto it meanwhile makes us look again.
            kept = {k: v for k, v in model.aliases.items() if v != version}
            left = model.model_copy(update={"aliases": kept, "updated_at": utcnow()})
            if kept != model.aliases:
                tx.set_data(self.paths.model(name), left.dump(), model_stat.version)
            else:
                tx.check(self.paths.model(name), model_stat.version)
            try:
                await self.zk.commit(tx)
            except TransactionFailed as failed:
                if isinstance(failed.error, BadVersionError):
                    continue  # changed under us (another delete, an alias move): look again
                raise
            self._forget(self.paths.version(name, version), self.paths.model(name))
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
        self,
        queue: JobQueue,
        job: JobRecord,
        stat: ZnodeStat,
        version: VersionRecord,
        decide: Callable[[ModelRecord], Promotion] | None = None,
        entry: str | None = None,
        *,
        release: str | None = None,
        known: list[int] | None = None,
    ) -> JobRecord:
        """Create the version, set the job ``succeeded`` and drop its queue entry, atomically.
        ``entry``: the job's queue entry name, if known (JobQueue.finish_job). ``release``: the
        merge lock to delete in the same multi (zootrain/locks.py:release_in); a multi that
        finds it gone is sent again without it (there is nothing to release).

        ``decide`` (a job with spec.publish): whether the version takes the alias, given the
        model's aliases as they are now. The multi then also writes (or, refused, checks) the
        model node at the version read, so the decision and the alias move are atomic with the
        publish: if the aliases move meanwhile, the decision is taken again.

        Raises BadVersionError if the job changed since ``stat`` (cancelled, or published by
        another merger): the version is then not created, so it is published at most once.

        ``known``: the model's version numbers as listed a moment ago (the merger lists them
        while its child merges): the first try numbers the version from them, and a number
        taken since fails on its node (NodeExists) and is taken from a fresh listing.
        """
        name = job.spec.model_name
        while True:
            try:
                numbers = known if known is not None else await self.versions(name)
                known = None
            except NotFound:
                await self.zk.ensure_path(self.paths.model(name))  # the model's first version
                continue
            number = (numbers[-1] if numbers else 0) + 1
            record = version.model_copy(update={"version": number, "created_at": utcnow()})
            model = ModelRef(name=name, version=number)
            add_version = functools.partial(
                _create, self.paths.version(name, number), record.dump()
            )
            if decide is not None:
                aliases, model_stat = await self.model(name)
                promotion = decide(aliases)
                record = record.model_copy(update={"promotion": promotion})
                add_version = functools.partial(
                    self._publish_ops, name, record, aliases, model_stat.version, promotion
                )
            released = _Releasing(add_version, release)
            try:
                return await queue.finish_job(
                    job.model_copy(update={"model": model}),
                    stat,
                    JobState.succeeded,
                    error=None,
                    also=released,
                    entry=entry,
                )
            except TransactionFailed as failed:
                if (
                    release is not None
                    and isinstance(failed.error, NoNodeError)
                    and failed.index == released.index
                ):
                    release = None  # the lock is gone already: publish without its release
                    continue
                if isinstance(failed.error, NodeExistsError):
                    continue  # another job took that number first: take the next
                if isinstance(failed.error, BadVersionError):
                    # Not the job record (finish_job raises that one bare): the model node,
                    # whose aliases moved since we read them. Decide again.
                    continue
                raise

    def _publish_ops(
        self,
        name: str,
        record: VersionRecord,
        model: ModelRecord,
        model_version: int,
        promotion: Promotion,
        tx: TransactionRequest,
    ) -> None:
        tx.create(self.paths.version(name, record.version), record.dump())
        if promotion.promoted:
            moved = model.model_copy(
                update={
                    "aliases": {**model.aliases, promotion.alias: record.version},
                    "updated_at": utcnow(),
                    "updated_by": f"job {record.job_id}",
                }
            )
            tx.set_data(self.paths.model(name), moved.dump(), model_version)
        else:
            tx.check(self.paths.model(name), model_version)

    async def owner(self, name: str) -> str | None:
        """Who owns a model: the token whose job published its first version still kept."""
        for number in await self.versions(name):
            try:
                record, _ = await self._read(name, number)
            except NotFound:
                continue
            return record.owner
        return None


def _version(number: int, data: bytes) -> VersionRecord:
    record: VersionRecord = VersionRecord.load(data)
    record.version = number
    return record


def _create(path: str, data: bytes, tx: TransactionRequest) -> None:
    tx.create(path, data)


CHAMPION = "champion"
"""The alias predictions and downloads without a version or alias are served from, if set."""


def _with_aliases(record: VersionRecord, model: ModelRecord) -> VersionRecord:
    names = sorted(alias for alias, number in model.aliases.items() if number == record.version)
    return record.model_copy(update={"aliases": names})


def _known(model: ModelRecord) -> str:
    if not model.aliases:
        return " (it has none)"
    return f" (it has: {', '.join(sorted(model.aliases))})"


def _check_match(name: str, stat: ZnodeStat, if_match: int | None) -> None:
    if if_match is not None and stat.version != if_match:
        raise Conflict(
            f"the aliases of model {name!r} changed since version {if_match} was read (now "
            f"{stat.version}); read them again and retry"
        )


class _Releasing:
    """A multi's extra operations (``also``) followed by a lock's release; ``index`` is the
    release's place in the multi once built, to tell its failure from the others'."""

    def __init__(self, also: Callable[[TransactionRequest], None], lock: str | None) -> None:
        self.also = also
        self.lock = lock
        self.index = -1

    def __call__(self, tx: TransactionRequest) -> None:
        self.also(tx)
        if self.lock is not None:
            self.index = len(tx.operations)
            locks.release_in(tx, self.lock)
