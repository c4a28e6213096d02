"""The job queue in ZooKeeper: submit, read, list and cancel jobs; claim and settle shards.

Every write that depends on what was read carries the version it was read at (compare-and-set),
so two processes racing over one record cannot both win, and a process that lost its lock
cannot overwrite what the new owner wrote.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from kazoo.client import TransactionRequest
from kazoo.exceptions import BadVersionError, NodeExistsError, NoNodeError

from zootrain import locks, shard_plan
from zootrain.errors import Conflict, InvalidRequest, NotFound, OutcomeUnknown, QueueFull
from zootrain.group_commit import GroupCommit
from zootrain.paths import IDEMPOTENCY_BUCKETS, Paths, parse_queue_entry, sorted_queue
from zootrain.records import (
    IdempotencyRecord,
    JobRecord,
    JobState,
    ShardRecord,
    ShardState,
    TaskRole,
    new_job_id,
    utcnow,
)
from zootrain.spec import DatasetSource, JobSpec
from zootrain.zk import (
    TRANSIENT_ERRORS,
    RequestDeadlineExceeded,
    TransactionFailed,
    WriteOutcomeUnknown,
    ZnodeStat,
    ZooKeeper,
)

log = logging.getLogger(__name__)

Versioned = tuple[JobRecord, ZnodeStat]


@dataclass(frozen=True)
class Submitted:
    job: JobRecord
    created: bool  # False when an Idempotency-Key replayed an earlier submit
    # A created job: the job with its shards as JSON, from the very bytes written (no need to
    # read them back or dump them again).
    written: bytes | None = None


@functools.lru_cache(maxsize=1024)
def _new_task(index: int, role: TaskRole) -> bytes:
    """A task record as submit creates it (pending, never claimed): the same bytes in every
    job, so they are made once."""
    return ShardRecord(index=index, role=role).dump()


def job_view_json(job: bytes, shards: list[bytes]) -> bytes:
    """A job record's JSON with its shard records' as ``shards``: what JobView (the record's
    fields, then ``shards``) dumps, made from the bytes already written instead of dumping the
    same records again."""
    return b"".join((job[:-1], b',"shards":[', b",".join(shards), b"]}"))


class QueueGauge:
    """How many entries ``queue/`` holds, for backpressure, without a read on every submit.

    The figure is the queue node's ``numChildren`` from the latest stat read, plus the entries
    this process created after that read was sent. While submits keep coming it is re-read in
    the background, at most every ``refresh`` seconds, so it lags by what other processes
    submitted (or workers finished) since, plus the submits in flight: the limit is
    approximate by that much. A refusal never rests on the estimate: before a 429 the count is
    read afresh (a cancel or a finished job makes room at once).

    Why a timed stat read and not a child watch: a child watch is armed only by getChildren,
    which lists every entry (10,000 names at the default limit) each time it is re-armed, i.e.
    after every submit; the stat read is one small reply whatever the queue's size.
    """

    def __init__(self, zk: ZooKeeper, path: str, *, refresh: float = 0.05) -> None:
        self.zk = zk
        self.path = path
        self.refresh = refresh
        self._created = 0  # queue entries this process created, ever
        self._base: int | None = None  # numChildren of the latest read applied ...
        self._base_created = 0  # ... and self._created when that read was sent
        self._base_read = 0  # which read that was
        self._reads = 0
        self._sent_at = -math.inf
        self._background: asyncio.Task[int] | None = None

    def added(self) -> None:
        self._created += 1

    @property
    def estimate(self) -> int | None:
        if self._base is None:
            return None
        return self._base + self._created - self._base_created

    async def full(self, limit: int) -> int | None:
        """The number of entries if the queue holds ``limit`` or more, else None."""
        estimate = self.estimate
        if estimate is None:
            estimate = await self._read()
        elif self._background is None and self._age() >= self.refresh:
            self._background = asyncio.get_running_loop().create_task(self._read())
            self._background.add_done_callback(self._background_done)
        if estimate < limit:
            return None
        count = await self._read()
        return count if count >= limit else None

    def _age(self) -> float:
        return asyncio.get_running_loop().time() - self._sent_at

    def _background_done(self, task: asyncio.Task[int]) -> None:
        self._background = None
        if not task.cancelled() and task.exception() is not None:
            log.debug("queue size refresh failed: %r", task.exception())

    async def _read(self) -> int:
        self._reads += 1
        read, created = self._reads, self._created
        self._sent_at = asyncio.get_running_loop().time()
        stat = await self.zk.retry(lambda: self.zk.exists(self.path))
        count = 0 if stat is None else stat.numChildren
        if read > self._base_read:  # a read sent earlier may answer later: keep the newest
            self._base, self._base_created, self._base_read = count, created, read
        return count


class JobQueue:
    def __init__(self, zk: ZooKeeper, paths: Paths, *, group: GroupCommit | None = None) -> None:
        self.zk = zk
        self.paths = paths
        self.gauge = QueueGauge(zk, paths.queue)
        # The job service's submits go through group commit (zootrain.group_commit); a
        # worker's rare submits (a search's follow-up) need not.
        self.group = group
        self._commit = group.commit if group is not None else zk.commit

    async def close(self) -> None:
        if self.group is not None:
            await self.group.close()

    async def ensure_layout(self) -> None:
        for path in self.paths.bases:
            await self.zk.ensure_path(path)
        present = set(await self.zk.get_children(self.paths.idempotency))
        missing = [b for b in IDEMPOTENCY_BUCKETS if b not in present]
        if not missing:
            return
        tx = self.zk.transaction()  # one round trip for a fresh root, not 256
        for bucket in missing:
            tx.create(f"{self.paths.idempotency}/{bucket}")
        try:
            await self.zk.commit(tx)
        except TransactionFailed:
            # Another process is laying out the same root: create what is still missing.
            for bucket in missing:
                with contextlib.suppress(NodeExistsError):
                    await self.zk.create(f"{self.paths.idempotency}/{bucket}")

    # -- submit ---------------------------------------------------------------------------------

    async def submit(
        self,
        spec: JobSpec,
        *,
        idempotency_key: str | None = None,
        owner: str | None = None,
        dataset_source: DatasetSource | None = None,
        dataset_version: int | None = None,
        max_queue: int = 10_000,
        idempotency_retention: float = 86_400.0,
        shard_memory: int = shard_plan.DEFAULT_SHARD_MEMORY,
    ) -> Submitted:
        """Create the job, its shards, its queue entry (and its key) in ONE multi.

        ``dataset_version``: the version of the uploaded dataset's record that
        ``dataset_source`` was resolved from. The multi checks it, so a delete (or any change)
        of the record since the resolution makes the submit fail with Conflict instead of
        queueing a job whose file may be gone.

        ``shard_memory``: the budget partition "auto" is decided against (zootrain.shard_plan);
        the job is recorded with the strategy chosen, the choice and the submit's warnings.
        An Idempotency-Key's fingerprint is the spec as asked, before the choice.
        """
        key_path = None
        fingerprint = ""
        if idempotency_key is not None:
            fingerprint = spec.fingerprint()
            # Keys are scoped to their owner: one token cannot replay (and so read) another's job.
            scoped = idempotency_key if owner is None else f"{owner}\0{idempotency_key}"
            key_path = self.paths.idempotency_key(hashlib.sha256(scoped.encode()).hexdigest())
            replay = await self._replay(key_path, fingerprint, idempotency_retention)
            if replay is not None:
                return Submitted(replay, created=False)

        held = await self.gauge.full(max_queue)
        if held is not None:
            raise QueueFull(f"the queue holds {held} unfinished jobs (limit {max_queue})", 5)

        spec, choice, warnings = shard_plan.plan(spec, dataset_source, shard_memory)
        now = utcnow()
        job = JobRecord(
            id=new_job_id(),
            spec=spec,
            owner=owner,
            dataset_source=dataset_source,
            created_at=now,
            updated_at=now,
            partition_choice=choice,
            warnings=warnings,
        )
        tx = self.zk.transaction()
        if dataset_source is not None and dataset_version is not None:
            # First, so that its failure is told apart from the creates' by its index.
            tx.check(self.paths.dataset(dataset_source.dataset_id), dataset_version)
        job_bytes = job.dump()
        tx.create(self.paths.job(job.id), job_bytes)
        tx.create(self.paths.shards(job.id))
        shard_bytes = [_new_task(i, spec.role(i)) for i in range(spec.tasks)]
        for index, data in enumerate(shard_bytes):
            tx.create(self.paths.shard(job.id, index), data)
        tx.create(self.paths.queue_prefix(job.id, spec.priority), job.id.encode(), sequence=True)
        if key_path is not None:
            record = IdempotencyRecord(job_id=job.id, fingerprint=fingerprint, created_at=now)
            tx.create(key_path, record.dump())

        # The job id is chosen before the transaction, so a commit whose reply was lost can be
        # told apart from one that never happened: after a reconnect, the job node says which.
        for _ in range(3):
            try:
                await self._commit(tx)
                self.gauge.added()
                return Submitted(job, True, job_view_json(job_bytes, shard_bytes))
            except TransactionFailed as failed:
                if (
                    key_path is not None
                    and isinstance(failed.error, NodeExistsError)
                    and failed.index == len(tx.operations) - 1
                ):
                    # Another request with the same key won the race: answer as it did.
                    replay = await self._replay(key_path, fingerprint, idempotency_retention)
                    if replay is not None:
                        return Submitted(replay, created=False)
                if (
                    dataset_source is not None
                    and dataset_version is not None
                    and failed.index == 0
                    and isinstance(failed.error, BadVersionError | NoNodeError)
                ):
                    raise Conflict(
                        f"dataset.id: dataset {dataset_source.dataset_id} was deleted or "
                        "changed while the job was being submitted; nothing was recorded"
                    ) from None
                raise
            except WriteOutcomeUnknown:
                raise _unknown(job.id) from None  # sent, or queued in kazoo: may still apply
            except TRANSIENT_ERRORS:
                try:
                    await self.zk.wait_connected(self.zk.session_timeout * 2)
                    await self.zk.sync(self.paths.job(job.id))
                    if await self.zk.exists(self.paths.job(job.id)) is not None:
                        self.gauge.added()
                        return Submitted(job, True, job_view_json(job_bytes, shard_bytes))
                except RequestDeadlineExceeded:
                    raise _unknown(job.id) from None
                tx = _copy_transaction(self.zk, tx)
        raise _unknown(job.id)

    async def _replay(self, key_path: str, fingerprint: str, retention: float) -> JobRecord | None:
        try:
            data, stat = await self.zk.retry(lambda: self.zk.get(key_path))
        except NoNodeError:
            return None
        record = IdempotencyRecord.load(data)
        if record.created_at + timedelta(seconds=retention) < utcnow():
            with contextlib.suppress(NoNodeError, BadVersionError):
                await self.zk.delete(key_path, stat.version)
            return None
        if record.fingerprint != fingerprint:
            raise InvalidRequest("Idempotency-Key was already used with a different request body")
        try:
            job, _ = await self.read_job(record.job_id)
        except NotFound:
            # The job was removed by retention: the key no longer stands for anything. Drop it
            # (version-checked) so that this request's multi can create it afresh.
            with contextlib.suppress(NoNodeError, BadVersionError):
                await self.zk.delete(key_path, stat.version)
            return None
        return job

    # -- read -----------------------------------------------------------------------------------

    async def read_job(self, job_id: str) -> Versioned:
        try:
            data, stat = await self.zk.retry(lambda: self.zk.get(self.paths.job(job_id)))
        except NoNodeError:
            raise NotFound(f"job {job_id!r} does not exist") from None
        return JobRecord.load(data), stat

    async def read_shard(self, job_id: str, index: int) -> tuple[ShardRecord, ZnodeStat]:
        data, stat = await self.zk.retry(lambda: self.zk.get(self.paths.shard(job_id, index)))
        return ShardRecord.load(data), stat

    async def read_shards(self, job_id: str, count: int) -> list[tuple[ShardRecord, ZnodeStat]]:
        return list(await asyncio.gather(*(self.read_shard(job_id, i) for i in range(count))))

    async def job_ids(self) -> list[str]:
        return sorted(await self.zk.retry(lambda: self.zk.get_children(self.paths.jobs)))

    async def list_jobs(
        self, *, state: JobState | None = None, limit: int = 50, cursor: str | None = None
    ) -> tuple[list[JobRecord], str | None]:
        """Newest first (ids are time-ordered); ``cursor`` is the last id of the previous page."""
        ids = [i for i in reversed(await self.job_ids()) if cursor is None or i < cursor]
        page: list[JobRecord] = []
        batch = max(limit, 16)
        for start in range(0, len(ids), batch):
            chunk = ids[start : start + batch]
            records = await asyncio.gather(
                *(self._maybe_job(i) for i in chunk), return_exceptions=False
            )
            for record in records:
                if record is None or (state is not None and record.state != state):
                    continue
                page.append(record)
                if len(page) == limit:
                    more = record.id != ids[-1]
                    return page, record.id if more else None
        return page, None

    async def _maybe_job(self, job_id: str) -> JobRecord | None:
        try:
            return (await self.read_job(job_id))[0]
        except NotFound:
            return None

    async def find_queue_entry(self, job_id: str) -> str | None:
        names = await self.zk.retry(lambda: self.zk.get_children(self.paths.queue))
        for name in names:
            entry = parse_queue_entry(name)
            if entry is not None and entry.job_id == job_id:
                return name
        return None

    async def queue(self) -> list[str]:
        names = await self.zk.retry(lambda: self.zk.get_children(self.paths.queue))
        return [e.job_id for e in sorted_queue(names)]

    # -- settle a job ---------------------------------------------------------------------------

    async def cancel(self, job_id: str) -> JobRecord:
        """Cancel an unfinished job; cancelling a cancelled job answers the same (idempotent).

        One multi sets the job and every unfinished shard ``cancelled`` and drops the queue
        entry; each record carries the version it was read at, so a shard that a worker changed
        meanwhile makes the multi fail and the cancel look again.
        """
        while True:
            job, stat = await self.read_job(job_id)
            if job.state == JobState.cancelled:
                return job
            if job.state.terminal:
                raise Conflict(f"job {job_id} already finished ({job.state})")
            done = await self._end_job(job, stat, JobState.cancelled, None)
            if done is not None:
                return done

    async def fail(
        self, job_id: str, error: str, *, failed: tuple[ShardRecord, int] | None = None
    ) -> JobRecord | None:
        """Fail an unfinished job: one multi sets it ``failed`` with ``error``, sets ``failed``
        (a shard record, at the version its claim holds) and cancels every other unfinished
        shard, so a failed job never shows shards `running`. None if the job had finished
        already, or the failed shard moved on (its claim was fenced off: nothing to fail)."""
        while True:
            job, stat = await self.read_job(job_id)
            if job.state.terminal:
                return None
            if failed is not None:
                shard, version = failed
                _, current = await self.read_shard(job_id, shard.index)
                if current.version != version:
                    return None
            done = await self._end_job(job, stat, JobState.failed, error, failed)
            if done is not None:
                return done

    async def _end_job(
        self,
        job: JobRecord,
        stat: ZnodeStat,
        state: JobState,
        error: str | None,
        failed: tuple[ShardRecord, int] | None = None,
    ) -> JobRecord | None:
        """One try at the terminal multi with every unfinished shard cancelled; None when a
        record moved on meanwhile (the caller reads again)."""
        shards = await self.read_shards(job.id, job.spec.tasks)
        now = utcnow()
        writes: list[tuple[ShardRecord, int]] = [] if failed is None else [failed]
        skip = None if failed is None else failed[0].index
        writes += [
            (
                shard.model_copy(
                    update={
                        "state": ShardState.cancelled,
                        "finished_at": now,
                        "history": shard.ended("cancelled", now),
                    }
                ),
                st.version,
            )
            for shard, st in shards
            if shard.index != skip and shard.state in (ShardState.pending, ShardState.running)
        ]

        def set_shards(tx: TransactionRequest) -> None:
            for shard, version in writes:
                tx.set_data(self.paths.shard(job.id, shard.index), shard.dump(), version)

        try:
            return await self.finish_job(job, stat, state, error=error, also=set_shards)
        except BadVersionError:
            return None  # the job moved on while we read it: look again
        except TransactionFailed as failed_tx:
            if isinstance(failed_tx.error, BadVersionError):
                return None  # a shard moved on (claimed, finished): look again
            raise

    async def finish_job(
        self,
        job: JobRecord,
        stat: ZnodeStat,
        state: JobState,
        *,
        error: str | None,
        also: Callable[[TransactionRequest], None] | None = None,
        entry: str | None = None,
    ) -> JobRecord:
        """Move a job to a terminal state and drop its queue entry, in one version-checked multi.

        ``also`` adds operations that must happen with it (a version node, a failed shard).
        ``entry``: the job's queue entry name if the caller knows it (a worker's scan listed
        it; an entry's name never changes), which saves listing the queue.
        Raises BadVersionError when the job record changed since ``stat`` was read.
        """
        now = utcnow()
        done = job.model_copy(
            update={"state": state, "error": error, "updated_at": now, "finished_at": now}
        )
        if entry is None:
            entry = await self.find_queue_entry(job.id)
            known = False
        else:
            known = True
        tx = self.zk.transaction()
        tx.set_data(self.paths.job(job.id), done.dump(), stat.version)
        if entry is not None:
            tx.delete(self.paths.queue_entry(entry))
        if also is not None:
            also(tx)
        try:
            await self.zk.commit(tx)
        except TransactionFailed as failed:
            if isinstance(failed.error, NoNodeError) and entry is not None and failed.index == 1:
                if known:
                    # Gone since the caller listed it: find out from a listing of our own.
                    return await self.finish_job(job, stat, state, error=error, also=also)
                # The entry went away between listing and deleting (another finisher): re-read.
                raise BadVersionError() from None
            if isinstance(failed.error, BadVersionError) and failed.index == 0:
                raise failed.error from None
            raise
        return done

    async def set_job_state(
        self, job: JobRecord, stat: ZnodeStat, state: JobState
    ) -> tuple[JobRecord, ZnodeStat]:
        now = utcnow()
        update: dict[str, object] = {"state": state, "updated_at": now}
        if state == JobState.running and job.started_at is None:
            update["started_at"] = now
        moved = job.model_copy(update=update)
        new_stat = await self.zk.set(self.paths.job(job.id), moved.dump(), stat.version)
        return moved, new_stat

    # -- shards ---------------------------------------------------------------------------------

    async def write_shard(self, job_id: str, shard: ShardRecord, version: int) -> ZnodeStat:
        return await self.zk.set(self.paths.shard(job_id, shard.index), shard.dump(), version)

    async def mark_running(self, job_id: str, known: Versioned | None = None) -> None:
        """queued → running, once; whoever loses the race finds it already done. ``known``:
        the record as the caller read it (tried first at its version: no read of our own)."""
        while True:
            job, stat = known or await self.read_job(job_id)
            known = None
            if job.state != JobState.queued:
                return
            try:
                await self.set_job_state(job, stat, JobState.running)
                return
            except BadVersionError:
                continue

    async def try_lock(self, path: str, owner: str) -> bool:
        return await locks.try_acquire(self.zk, path, owner)

    async def unlock(self, path: str) -> None:
        await locks.release(self.zk, path)


def _unknown(job_id: str) -> OutcomeUnknown:
    return OutcomeUnknown(
        f"ZooKeeper did not confirm the submit in time: job {job_id} may or may not have been "
        "created (a write already sent can still apply when ZooKeeper comes back). Retry with "
        f"the same Idempotency-Key to get the job if it exists, or GET /v1/jobs/{job_id}",
        job_id,
    )


def backoff_delay(attempts: int, base: float, cap: float) -> float:
    """Seconds before attempt ``attempts + 1``: base, 2·base, 4·base … up to cap."""
    if base <= 0:
        return 0.0
    return float(min(cap, base * math.pow(2, max(0, attempts - 1))))


def _copy_transaction(zk: ZooKeeper, tx: TransactionRequest) -> TransactionRequest:
    # A committed TransactionRequest cannot be committed again; its operations can.
    fresh = zk.transaction()
    fresh.operations = list(tx.operations)
    return fresh
