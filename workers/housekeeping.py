"""Housekeeping, done by one elected worker: what no watch covers.

- a queue entry whose job is terminal or gone (a finisher died between its writes, or the job
  was removed by hand) is deleted, so the queue holds unfinished jobs only;
- a job whose shards are all done but whose merge lock is free (its merger died before anyone
  watched the lock) gets the workers' attention: the sweep nudges the queue node they watch;
- terminal jobs older than the retention are deleted, each in one multi with its shards, and so
  are expired Idempotency-Keys;
- every ``ZOOTRAIN_ARTIFACT_GC_INTERVAL``, artifact files no record names any more are removed
  from the store (zootrain/store_gc.py).

Retention is about time, which nothing in ZooKeeper announces: the sweep runs on a timer.

It never deletes what it could not read: a queue entry goes only when its job was read and is
terminal, or when the job's node is confirmed absent after a ``sync``. A record that does not
parse is logged, counted (``zootrain_unreadable_records``) and left alone; a connection
loss ends the sweep (the next one starts over). And before every destructive step the
housekeeper checks that it still leads: a leader whose session expired (a long pause) may be
running its sweep while another process leads already, and stops at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from datetime import timedelta

from kazoo.exceptions import BadVersionError, NoNodeError, NotEmptyError

from workers import worker_metrics
from zootrain import rounds, store_gc
from zootrain.artifacts import ArtifactStore
from zootrain.election import Election
from zootrain.errors import NotFound
from zootrain.paths import sorted_queue
from zootrain.queue import JobQueue
from zootrain.records import IdempotencyRecord, JobRecord, JobState, ShardState, utcnow
from zootrain.registry import Registry
from zootrain.settings import Settings
from zootrain.zk import TRANSIENT_ERRORS, TransactionFailed

log = logging.getLogger("zootrain.housekeeping")


class NotLeading(Exception):
    """This process no longer leads housekeeping: its sweep stops before the next change."""


class Housekeeper:
    def __init__(
        self,
        queue: JobQueue,
        settings: Settings,
        identifier: str,
        store: ArtifactStore | None = None,
    ) -> None:
        self.queue = queue
        self.store = store
        self._collected_at: float | None = None  # loop time of this leader's last collection
        self._unreadable_now: dict[str, int] = {}  # kind -> records found this sweep
        self._unreadable_seen: set[str] = set()  # paths found this sweep
        self._unreadable_logged: set[str] = set()  # paths already logged
        self.zk = queue.zk
        self.paths = queue.paths
        self.settings = settings
        self.registry = Registry(self.zk, self.paths)
        self.election = Election(self.zk, self.paths.election, identifier)

    async def run(self, stopping: asyncio.Event) -> None:
        try:
            while not stopping.is_set():
                try:
                    if not await _first(self.election.lead(), stopping.wait()):
                        break
                    log.info("leading housekeeping")
                    await self._lead(stopping)
                except Exception:
                    log.exception("housekeeping failed; standing for election again")
                    await _first(stopping.wait(), timeout=self.settings.housekeeping_interval)
        finally:
            await self.election.resign()

    async def _lead(self, stopping: asyncio.Event) -> None:
        self._collected_at = None  # a new leader collects at once, then every interval
        while self.election.is_leader and not stopping.is_set():
            try:
                await self.sweep()
                await self._collect_if_due()
            except NotLeading:
                log.warning("no longer leading housekeeping; sweep stopped")
                return
            except TRANSIENT_ERRORS:
                pass
            except Exception:
                log.exception("housekeeping sweep failed")
            await _first(
                stopping.wait(),
                self.election.wait_lost(),
                timeout=self.settings.housekeeping_interval,
            )

    async def sweep(self) -> dict[str, int]:
        """One pass over everything; raises NotLeading as soon as this process does not lead."""
        self._unreadable_now, self._unreadable_seen = {}, set()
        counts = {
            "queue_entries": await self.repair_queue(),
            "jobs": await self.expire_jobs(),
            "keys": await self.expire_keys(),
            "versions": await self.trim_versions(),
        }
        worker_metrics.SWEEPS.inc()
        for kind in ("job", "shard", "idempotency_key"):
            worker_metrics.UNREADABLE.labels(kind=kind).set(self._unreadable_now.get(kind, 0))
        self._unreadable_logged = self._unreadable_seen  # forget the ones fixed or deleted
        if any(counts.values()):
            log.info("housekeeping removed %s", counts)
        return counts

    async def _collect_if_due(self) -> None:
        now = asyncio.get_running_loop().time()
        if self.store is None or (
            self._collected_at is not None
            and now - self._collected_at < self.settings.artifact_gc_interval
        ):
            return
        await self.collect_artifacts()
        self._collected_at = now

    async def collect_artifacts(self) -> store_gc.Collection:
        """Remove artifact files that no record names (see zootrain/store_gc.py)."""
        assert self.store is not None
        report = await store_gc.collect(
            self.zk,
            self.paths,
            self.store,
            grace=self.settings.artifact_gc_grace,
            still_leading=self._still_leading,
        )
        worker_metrics.COLLECTIONS.inc()
        worker_metrics.COLLECTED_FILES.inc(report.deleted)
        worker_metrics.COLLECTED_BYTES.inc(report.deleted_bytes)
        if report.deleted:
            log.info(
                "artifact store: removed %d unreferenced files (%d bytes); %d referenced, "
                "%d recent kept",
                report.deleted,
                report.deleted_bytes,
                report.referenced,
                report.kept_recent,
            )
        return report

    async def _still_leading(self) -> None:
        if not await self.election.still_leads():
            raise NotLeading()

    def _unreadable(self, kind: str, path: str, exc: Exception) -> None:
        self._unreadable_now[kind] = self._unreadable_now.get(kind, 0) + 1
        self._unreadable_seen.add(path)
        if path not in self._unreadable_logged:  # once, not every sweep
            log.error("housekeeping left %s alone: its record does not parse (%s)", path, exc)

    async def _job_gone(self, job_id: str) -> bool:
        """Whether the job's node is absent, as the leader sees it (``sync`` first: our server
        may lag behind the one that answered the read)."""
        path = self.paths.job(job_id)
        await self.zk.sync(path)
        return await self.zk.exists(path) is None

    async def repair_queue(self) -> int:
        removed = 0
        stalled = False
        for entry in sorted_queue(await self.zk.get_children(self.paths.queue)):
            try:
                job, _ = await self.queue.read_job(entry.job_id)
            except NotFound:
                job = None
                if not await self._job_gone(entry.job_id):
                    continue  # it exists after all: the next sweep reads it again
            except ValueError as exc:  # pydantic's ValidationError too
                self._unreadable("job", self.paths.job(entry.job_id), exc)
                continue
            # Anything else (a connection loss) ends the sweep: never "gone" by default.
            if job is None or job.state.terminal:
                await self._still_leading()
                with contextlib.suppress(NoNodeError):
                    await self.zk.delete(self.paths.queue_entry(entry.name))
                    removed += 1
            elif job.state in (JobState.running, JobState.merging):
                try:
                    stalled |= await self._merge_stalled(job)
                except ValueError as exc:
                    self._unreadable("shard", self.paths.shards(job.id), exc)
        if stalled:
            # Workers watch the queue node: a write to it wakes every one to rescan.
            await self.zk.set(self.paths.queue, str(utcnow().timestamp()).encode())
        return removed

    async def _merge_stalled(self, job: JobRecord) -> bool:
        shards = await self.queue.read_shards(job.id, job.spec.tasks)
        if not all(s.state == ShardState.done for s, _ in shards):
            return False
        return await self.zk.exists(self.paths.merge_lock(job.id)) is None

    async def expire_jobs(self) -> int:
        """Delete finished jobs past the retention, and the oldest beyond the count cap.

        Ids start with their creation time, so only ids older than the cutoff can have finished
        before it, and the count cap reads from the oldest: a sweep never reads every job.
        """
        cutoff = utcnow() - timedelta(seconds=self.settings.job_retention)
        cutoff_id = f"{int(cutoff.timestamp() * 1000):012x}"
        ids = await self.queue.job_ids()
        excess = len(ids) - self.settings.max_finished_jobs - self.settings.max_queue
        removed = 0
        for job_id in ids:
            if job_id >= cutoff_id and removed >= excess:
                break
            try:
                job, stat = await self.queue.read_job(job_id)
            except NotFound:
                continue
            except ValueError as exc:
                self._unreadable("job", self.paths.job(job_id), exc)
                continue
            if not job.state.terminal:
                continue
            old = (job.finished_at or job.updated_at) < cutoff
            if old or removed < excess:
                await self._still_leading()
                removed += await self._delete_job(job, stat.version)
        return removed

    async def trim_versions(self) -> int:
        removed = 0
        for name in await self.zk.get_children(self.paths.models):
            try:
                versions = await self.registry.versions(name)
            except NotFound:
                continue
            try:
                model, model_stat = await self.registry.model(name)
            except NotFound:
                continue
            aliased = set(model.aliases.values())
            for number in versions[: max(0, len(versions) - self.settings.max_versions)]:
                if number in aliased:
                    continue  # an alias holds it (a champion outlives retrains it beat)
                await self._still_leading()
                # Checked against the aliases as read: one moved onto this version meanwhile
                # keeps it (the next pass looks again).
                tx = self.zk.transaction()
                tx.check(self.paths.model(name), model_stat.version)
                tx.delete(self.paths.version(name, number))
                try:
                    await self.zk.commit(tx)
                    removed += 1
                except TransactionFailed as failed:
                    if isinstance(failed.error, BadVersionError | NoNodeError):
                        break
                    raise
        return removed

    async def _delete_job(self, job: JobRecord, version: int) -> int:
        # One multi: a job is never half-deleted, and the version check keeps us from
        # deleting a record that changed since we judged it.
        tx = self.zk.transaction()
        for path in await rounds.subtree(self.zk, self.paths, job.id):
            tx.delete(path)  # a job that trained in rounds keeps its round record
        for index in range(job.spec.tasks):
            tx.delete(self.paths.shard(job.id, index))
        tx.delete(self.paths.shards(job.id))
        tx.delete(self.paths.job(job.id), version)
        try:
            await self.zk.commit(tx)
            return 1
        except TransactionFailed as failed:
            if isinstance(failed.error, BadVersionError | NoNodeError | NotEmptyError):
                return 0
            raise

    async def expire_keys(self) -> int:
        cutoff = utcnow() - timedelta(seconds=self.settings.idempotency_retention)
        removed = 0
        for bucket in await self.zk.get_children(self.paths.idempotency):
            bucket_path = f"{self.paths.idempotency}/{bucket}"
            for name in await self.zk.get_children(bucket_path):
                path = f"{bucket_path}/{name}"
                try:
                    data, stat = await self.zk.get(path)
                    record = IdempotencyRecord.load(data)
                except NoNodeError:
                    continue
                except ValueError as exc:
                    self._unreadable("idempotency_key", path, exc)
                    continue
                if record.created_at < cutoff:
                    await self._still_leading()
                    with contextlib.suppress(NoNodeError, BadVersionError):
                        await self.zk.delete(path, stat.version)
                        removed += 1
        return removed


async def _first(*waits: Awaitable[object], timeout: float | None = None) -> bool:
    """Wait for the first of ``waits``; True if the first one given finished.

    If the first one finished by raising, its exception propagates: "done" is not "succeeded".
    """
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        done, _ = await asyncio.wait(tasks, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if tasks[0] in done:
            tasks[0].result()
            return True
        return False
    finally:
        for task in tasks:
            task.cancel()
