"""The worker: a watch-driven claim loop that trains shards and merges finished jobs.

One dispatcher coroutine looks for work whenever something it watches changes (the queue's
children, a lock it found taken, a retry's backoff running out, the session coming back, one of
its own tasks ending) and otherwise sleeps on an asyncio.Event: it never polls ZooKeeper.
Training and merging run in child processes (workers/processes.py), so the session's heartbeats
and the watches keep flowing while the CPU is busy. What a scan remembers about queued jobs is in
workers/scan_memo.py, claims and their types in workers/claims.py, and the merge task's merging
and publishing in workers/publishing.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime
from typing import Any, TypeVar

from kazoo.exceptions import (
    BadVersionError,
    NodeExistsError,
    NoNodeError,
    SessionExpiredError,
)
from prometheus_client import start_http_server

from workers import processes, publishing, round_task, shard_groups, worker_metrics
from workers.claims import (
    Attempt,
    Claim,
    QueuedJob,
    Shards,
    StopReason,
    Unclaimable,
    dataset_source,
    slot_kinds,
    takes_round_slot,
)
from workers.housekeeping import Housekeeper
from workers.scan_memo import ScanMemo
from zootrain import locks
from zootrain.artifacts import ArtifactStore
from zootrain.errors import NotFound
from zootrain.liveconfig import ConfigWatch, LiveSettings
from zootrain.paths import Paths
from zootrain.queue import JobQueue, Versioned, backoff_delay
from zootrain.records import (
    JobRecord,
    JobState,
    ShardRecord,
    ShardState,
    TaskAttempt,
    WorkerRecord,
    utcnow,
)
from zootrain.registry import Registry
from zootrain.settings import Settings
from zootrain.zk import (
    TRANSIENT_ERRORS,
    KazooState,
    TransactionFailed,
    WatchedEvent,
    ZnodeStat,
    ZooKeeper,
)
from zootrain.zk_metrics import ZOOKEEPER_CONNECTED

log = logging.getLogger("zootrain.worker")

# The job's record and its other shards' (with their stats): what deciding a merge claim takes.
MergeReads = tuple[Versioned, list[tuple[ShardRecord, ZnodeStat]]]
# A scan reads this many queued jobs concurrently at first, twice as many each next batch.
# One: the first job a scan reads (blocked jobs are skipped unread, workers/scan_memo.py) is
# almost always the one it claims in, and a scan that claims ends there, so whatever else its
# batch read is thrown away and read again by the next scan. With 500 tiny jobs queued at once,
# a first batch of 8 read about 250 records a job (every claim, end and wake-up of two workers
# re-reading the 7 jobs behind the head).
SCAN_FIRST_BATCH = 1
# ... and that many batches of the first size before they grow. Two: with many small jobs
# queued, two workers both take from the head, and a worker's first read is often of the job
# the other has just claimed; the job behind it is then the one to claim, and a batch of two
# there read a third job for nothing (a read of a job for every three jobs, 500 queued at once).
SCAN_FIRST_BATCHES = 2
# Seconds a scan leaves a job's first merge to the worker that settled its last shard (it
# claims at once; this is only how long a merge waits if that worker died before its claim).
MERGE_HANDOFF = 1.0
SCAN_MAX_BATCH = 256
# A change of this worker's record waits this long before it is written, so that the claims
# and ends of tiny tasks (milliseconds apart) fold into one write: the record is for people
# (`zootrain workers`, the dashboard) and nothing waits on it, and each write is a ZooKeeper
# transaction (a log fsync) that the tasks' own writes would otherwise queue behind. At 50 ms a
# worker busy with small jobs still wrote it about once a job (docs/performance.md, Small jobs).
RECORD_DELAY = 0.25
# What the training child runs, by name: importing workers.train_child here would bring
# scikit-learn into this process; the forkserver has it imported already.
TRAIN_SHARD = "workers.train_child:train_shard"
TRAIN_SHARDS = "workers.train_child:train_shards"

T = TypeVar("T")


class Worker:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.id = (
            settings.worker_id or f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(2)}"
        )
        self.zk = ZooKeeper(
            settings.zk_hosts,
            session_timeout=settings.zk_session_timeout,
            digest=settings.zk_auth,
        )
        self.paths = Paths(settings.zk_root)
        # This process never imports scikit-learn (about 170 MB): it reads job records without
        # the checks that need it (submit made them) and names its children's functions.
        self.queue = JobQueue(self.zk, self.paths)
        self.registry = Registry(self.zk, self.paths)
        self.store = ArtifactStore(settings.artifacts)
        self.started_at = utcnow()
        self.claims: dict[str, Claim] = {}
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._registered = False
        self._timers: dict[str, asyncio.TimerHandle] = {}
        # Jobs whose merge a scan leaves to the worker that settled their last shard, until
        # when (monotonic): _handed_off.
        self._handoffs: dict[str, float] = {}
        self._armed: set[str] = set()  # watches set and not yet fired
        self._locks = self.paths.locks + "/"  # the prefix of every lock's path
        self._listing: list[str] | None = None  # the queue's children, as last listed
        self._tasks_guess = 1  # tasks of the job a scan read last (_read_job)
        # Queued jobs a scan found nothing to claim in, until a wake-up forgets them.
        self.memo = ScanMemo()
        # Locks this worker holds or is taking, for a claim: with several claims at once, two
        # of its own tasks (a scan and a finished shard) must not both claim one lock. The lock
        # node cannot tell them apart: both would find it held by this very session.
        self._held: set[str] = set()
        self._side_tasks: set[asyncio.Task[None]] = set()
        self.memory_limit = int(
            settings.task_memory_limit
            or processes.default_memory_limit(settings.worker_concurrency)
        )
        # The live configuration changes self.settings in place (the housekeeper shares it).
        self.live = LiveSettings(settings)
        self.config_watch = ConfigWatch(self.zk, self.paths, self.live)
        self.config_watch.listeners.append(self._config_changed)
        self.draining = False  # /drains/<id> exists: finish what is held, claim nothing new
        self._drain_reading = asyncio.Lock()
        self._record_writing = False  # a write of this worker's record is in flight ...
        self._record_stale = False  # ... and the record changed since it was built

    # -- lifecycle ------------------------------------------------------------------------------

    async def run(self) -> None:
        if self.settings.metrics_port is not None:
            start_http_server(self.settings.metrics_port)
        await self.zk.start(self.settings.zk_connect_timeout)
        ZOOKEEPER_CONNECTED.set(1)
        self.zk.add_state_listener(self._on_session)
        await self.queue.ensure_layout()
        await self.config_watch.start()
        await self._read_drain()
        processes.configure(self.settings.worker_warm_children, self.settings.worker_child_threads)
        await processes.warm_up()
        await self._register()
        # Whatever exists now (modules, settings, the session) lives as long as the process: a
        # full collection need not walk it again each time (each one stops the event loop).
        gc.freeze()
        log.info(
            "worker %s ready (capacity %d; a task attempt may take %s s and %s)",
            self.id,
            self.settings.worker_concurrency,
            f"{self.settings.task_time_limit:g}",
            processes.format_bytes(self.memory_limit),
        )
        housekeeping = asyncio.create_task(
            Housekeeper(self.queue, self.settings, self.id, self.store).run(self._stopping)
        )
        try:
            await self._dispatch()
            await self._drain()
            await housekeeping
        finally:
            housekeeping.cancel()
            await self._forget_drain()
            processes.close_idle()
            await self.zk.stop()
            log.info("worker %s stopped", self.id)

    def stop(self) -> None:
        """Graceful stop: claim nothing more, let running shards finish within the grace period."""
        if not self._stopping.is_set():
            log.info("worker %s stopping", self.id)
            self._stopping.set()
            self.wake()

    def wake(self, *_: object) -> None:
        self._wake.set()

    # Watches are one-shot, and kazoo keeps every callback registered until the node changes:
    # arm each watch once, and re-arm it only after it fired (or the session that held it died).
    def _queue_changed(self, event: WatchedEvent) -> None:
        self._armed.discard("queue-children")
        self.wake()

    def _nudged(self, event: WatchedEvent) -> None:
        self._armed.discard("queue-data")
        self.memo.forget_all()  # housekeeping asks for a full look
        self.wake()

    def _lock_freed(self, path: str) -> None:
        self._armed.discard(path)
        job_id = _lock_job(path)
        if self.memo.small(job_id) and any(
            _lock_job(other) == job_id for other in self._armed if other.startswith(self._locks)
        ):
            # A small job's shards are held together (one group, trained one after another):
            # a lock freed while we still watch another of the job's is a shard settled beside
            # others still training, mostly, and a read of the job would find nothing to claim.
            # The last one's release reads it (a dead owner's locks all go at once). A shard
            # given back meanwhile waits for the rest, tiny shards by definition, or for its
            # owner's own retry.
            return
        self.memo.forget(job_id)
        self.wake()

    async def _arm(
        self,
        key: str,
        callback: Callable[[WatchedEvent], None],
        read: Callable[..., Awaitable[T]],
    ) -> T:
        """Read the queue node, setting ``callback`` as its watch unless one is already armed.

        The mark goes up before the read: kazoo may run the watch (on its event thread) before
        the read's reply reaches us, and a mark set after the await would then stay up for a
        watch that already fired, leaving this worker deaf to new jobs.
        """
        watch = None
        if key not in self._armed:
            self._armed.add(key)
            watch = callback
        try:
            return await read(self.paths.queue, watch=watch)
        except BaseException:
            if watch is not None:
                self._armed.discard(key)
            raise

    async def _held_elsewhere(self, path: str) -> bool:
        """Whether the lock at ``path`` is held (by another worker: the caller checked
        ``_held``), watching it if so: at no cost while our watch on it is set (it fires when
        the lock goes, so the lock is held until the wake-up it brings)."""
        if path in self._armed:
            return True
        self._armed.add(path)
        try:
            held = await locks.watch_release(self.zk, path, lambda: self._lock_freed(path))
        except BaseException:
            self._armed.discard(path)
            raise
        if held is None:
            # Free: the caller claims it. The watch left on the absent node fires when a lock
            # is taken there (ours too), which costs one more look at the job, no more.
            self._armed.discard(path)
            return False
        if held.ephemeralOwner == self.zk.session_id and path not in self._held:
            # Ours, yet no claim of ours holds it: a claim whose multi applied after its reply
            # was lost, and whose release missed it. Nobody else can ever free it while our
            # session lives: let it go (its deletion fires the watch, and the job is looked
            # at again).
            log.warning("releasing %s: held by this worker's session for no claim", path)
            await self._let_go(path)
        return True

    async def _watch_lock(self, path: str) -> bool:
        """Watch a lock someone else holds; False if it was freed before the watch was set."""
        if path not in self._armed:
            self._armed.add(path)
            if not await locks.watch_release(self.zk, path, lambda: self._lock_freed(path)):
                self._armed.discard(path)
                self.memo.forget(_lock_job(path))
                self.wake()  # freed before the watch was set: look again
                return False
        return True

    async def _drain(self) -> None:
        # A claim started by the dispatcher's last scan has a task that has not run yet; a task
        # cancelled before its first step never enters its body, so nothing would hand it back.
        await asyncio.sleep(0)
        tasks = [c.task for c in self.claims.values() if c.task is not None]
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=self.settings.worker_grace)
        for claim in list(self.claims.values()):
            if claim.task in pending:
                self._cancel(claim, StopReason.HANDBACK)
        if pending:
            await asyncio.wait(pending)

    def _on_session(self, state: KazooState) -> None:
        ZOOKEEPER_CONNECTED.set(1 if state == KazooState.CONNECTED else 0)
        if state == KazooState.LOST:
            # The session is gone and every lock with it: whatever we train now, another worker
            # may already be training. Kill it and keep nothing of it. A claim whose child has
            # answered (settling) goes on writing its outcome: the version alone fences it.
            self._registered = False
            self._armed.clear()  # the watches died with the session
            self.memo.forget_all()
            for claim in list(self.claims.values()):
                self._cancel(claim, StopReason.LOST)
        elif state == KazooState.CONNECTED:
            self.memo.forget_all()  # whatever changed while we were away, no watch told us
            self.side_task(self._reread_drain())  # the drain watch died with a lost session
            if not self._registered and not self._stopping.is_set():
                asyncio.get_running_loop().create_task(self._register())
            self.wake()

    async def _register(self) -> None:
        record = self._record()
        path = self.paths.worker(self.id)
        while True:
            try:
                await self.zk.create(path, record.dump(), ephemeral=True)
                break
            except NodeExistsError:
                if await locks.held_by_us(self.zk, path):
                    break
                # Our previous session's node lingers until that session expires.
                gone = asyncio.Event()
                if await locks.watch_release(self.zk, path, gone.set):
                    await gone.wait()
        self._registered = True

    def _record(self) -> WorkerRecord:
        return WorkerRecord(
            id=self.id,
            host=socket.gethostname(),
            pid=os.getpid(),
            started_at=self.started_at,
            capacity=self.settings.worker_concurrency,
            current=sorted(self.claims),
            current_since={key: claim.claimed_at for key, claim in self.claims.items()},
            state="draining" if self.draining else "paused" if self.settings.paused else "active",
            config_version=self.live.version if self.live.version >= 0 else None,
        )

    # -- live configuration and drain -----------------------------------------------------------

    def _holding_back(self) -> bool:
        """Paused (the cluster) or draining (this worker): claim nothing new."""
        return self.settings.paused or self.draining

    def _config_changed(self, changed: set[str]) -> None:
        # A grown capacity or a resume has work to claim now; a shrink or a pause only stops
        # the next claim (running shards are never cut short by a setting).
        if changed & {"worker_concurrency", "worker_round_shards"}:
            self.memo.room_freed(False)
            self.memo.room_freed(True)
        if changed & {"paused", "worker_concurrency", "worker_round_shards"}:
            self.wake()
        self.side_task(self._update_record())

    def _drain_changed(self, event: WatchedEvent) -> None:
        self.side_task(self._reread_drain())

    async def _reread_drain(self) -> None:
        try:
            await self._read_drain()
        except (*TRANSIENT_ERRORS, SessionExpiredError):
            log.warning("lost the watch on this worker's drain node; read again on reconnect")

    async def _read_drain(self) -> None:
        # One read at a time, so an older answer never overrides a newer one. exists() sets
        # the watch whether or not the node is there: both the request and its removal fire.
        async with self._drain_reading:
            path = self.paths.drain(self.id)
            stat = await self.zk.retry(lambda: self.zk.exists(path, watch=self._drain_changed))
        if (stat is not None) != self.draining:
            self.draining = stat is not None
            log.info("worker %s %s", self.id, "draining" if self.draining else "no longer draining")
            self.wake()
            self.side_task(self._update_record())

    async def _forget_drain(self) -> None:
        """A drained worker that stops cleanly takes its drain request with it: restarted after
        maintenance, it claims work again."""
        if not self.draining or not self.zk.connected:
            return
        with contextlib.suppress(NoNodeError, SessionExpiredError, *TRANSIENT_ERRORS):
            await self.zk.delete(self.paths.drain(self.id))

    async def _update_record(self) -> None:
        """Write this worker's record as it is now, RECORD_DELAY after the change. Asked again
        while a write waits or is in flight, one more write follows it (the record is built
        when it is sent, so it shows the latest): a busy worker's claims and ends fold into
        fewer writes, none is lost."""
        if self._record_writing:
            self._record_stale = True
            return
        self._record_writing = True
        try:
            self._record_stale = True
            while self._record_stale and self._registered:
                await asyncio.sleep(RECORD_DELAY)
                self._record_stale = False
                try:
                    await self.zk.set(self.paths.worker(self.id), self._record().dump())
                except (NoNodeError, SessionExpiredError, *TRANSIENT_ERRORS):
                    return  # re-registration after a reconnect writes a fresh record
        finally:
            self._record_writing = False

    # -- dispatch -------------------------------------------------------------------------------

    async def _dispatch(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()
            if (
                self.zk.connected
                and not self._holding_back()
                and (self._room(rounds=False) or self._room(rounds=True))
            ):
                try:
                    claim = await self._find_work()
                except (*TRANSIENT_ERRORS, SessionExpiredError):
                    claim = None  # the CONNECTED event wakes us again
                except Exception:
                    log.exception("scanning the queue failed")
                    claim = None
                if claim is not None:
                    self._start(claim)
                    continue
            await self._wake.wait()

    def _room(self, *, rounds: bool) -> bool:
        """A free slot: for a shard of a job training in rounds (held for the whole job, its
        child mostly waiting), or for any other task.

        A claim whose child has answered (settling: writing its outcome, releasing its lock,
        claiming the job's merge) holds no slot: its round trips to ZooKeeper overlap the next
        claim's and the next child's work instead of idling the slot. Up to as many again may
        be settling at once, so that a slow ZooKeeper cannot pile them up. (A group holding its
        whole job keeps its slot for the merge its last member claims: ``_merges_next``.)
        """
        mine = [c for c in self.claims.values() if c.in_rounds == rounds]
        limit = self.settings.worker_round_shards if rounds else self.settings.worker_concurrency
        working = _slots(c for c in mine if not c.settling or _merges_next(c))
        return working < limit and _slots(mine) < 2 * limit

    def _room_for(self, rounds: bool) -> bool:
        return self._room(rounds=rounds)

    def answered(self, claim: Claim) -> None:
        """The claim's child has answered: from now on it only records the outcome, and its slot
        is free (``_room``)."""
        claim.settling = True
        self.memo.room_freed(claim.in_rounds)
        self.wake()

    def _start(self, claim: Claim) -> None:
        for member in claim.group.members if claim.group is not None else [claim]:
            self._start_one(member)

    def _start_one(self, claim: Claim) -> None:
        self.claims[claim.key] = claim
        worker_metrics.BUSY.set(len(self.claims))
        work = self._train(claim) if claim.index is not None else self._merge(claim)
        claim.task = asyncio.get_running_loop().create_task(work, name=claim.key)
        claim.task.add_done_callback(lambda _: self._finished(claim))
        asyncio.get_running_loop().create_task(self._update_record())

    def _finished(self, claim: Claim) -> None:
        if self.claims.get(claim.key) is claim:
            self.claims.pop(claim.key)
        self._held.discard(claim.lock)
        if not (
            shard_groups.groupable(claim.job, self.settings.worker_group_work)
            and any(other.job.id == claim.job.id for other in self.claims.values())
        ):
            # A claim ending may leave work in its job (a shard given back, the merge). While
            # another claim of ours in a small job goes on (its group's next member; the merge
            # the last one claimed), the job is read when that one ends, milliseconds later:
            # read now, it would show our own claims and nothing else to claim. (A large job's
            # other claim may train for hours: a shard given back is read for at once.)
            self.memo.forget(claim.job.id)
        self.memo.room_freed(claim.in_rounds)
        worker_metrics.BUSY.set(len(self.claims))
        asyncio.get_running_loop().create_task(self._update_record())
        self.wake()

    def _cancel(self, claim: Claim, reason: StopReason) -> None:
        # A group's lead watches the job for every member: its cancel is theirs. (A member
        # already being cancelled, by its own call of a loop over every claim, is not again.)
        for member in claim.group.members if claim.group is not None else [claim]:
            if member is not claim and member.task is not None and member.task.cancelling():
                continue
            if member.task is not None and not member.task.done() and not member.settling:
                member.reason = member.reason or reason
                member.task.cancel()

    async def _find_work(self) -> Claim | None:
        if "queue-children" in self._armed and self._listing is not None:
            # The queue's child watch is set and has not fired: the queue holds what it held
            # at the last listing. Most wake-ups are this worker's own (a child answered, a
            # claim ended, a lock let go), and a listing of 500 queued jobs is 20 KB to read.
            names = self._listing
        else:
            names = await self._arm("queue-children", self._queue_changed, self.zk.get_children)
            self._listing = names
        if "queue-data" not in self._armed:
            # The housekeeper writes to the queue node to wake everyone for what no watch
            # covered. Read only to set the watch: while it is set, nothing is to be learnt.
            await self._arm("queue-data", self._nudged, self.zk.exists)
        entries = self.memo.sorted_queue(names)
        if self._timers or self._handoffs:
            self._drop_timers({e.job_id for e in entries})
        todo = self.memo.start_scan(entries, self._room_for)
        # Read jobs (and their shards) a batch at a time, concurrently; try them in queue
        # order. The first batch is small: the job at the head is usually the one to claim.
        # Batches double rather than grow faster: the reads of a batch past the job claimed are
        # wasted (with 500 tiny jobs queued, growing four-fold read three jobs a claim for
        # nothing). A scan whose last free slot our other tasks took meanwhile ends
        # (Scan.take).
        batch, first = SCAN_FIRST_BATCH, SCAN_FIRST_BATCHES
        while chunk := todo.take(batch):
            first -= 1
            if first <= 0:
                batch = min(batch * 2, SCAN_MAX_BATCH)
            mark = self.memo.mark
            # With the training slot taken (a scan for the slot of jobs in rounds), a job is
            # read alone first: most are not trained in rounds, and the shards read with such
            # a job would be read again, when the slot comes free, before its claim.
            training = self._room(rounds=False)
            reads = await asyncio.gather(*(self._read_job(job_id, training) for job_id in chunk))
            for job_id, read in zip(chunk, reads, strict=True):
                if read is Unclaimable.UNREADABLE:
                    continue  # try again next time
                if read is Unclaimable.FINAL:
                    attempt = Attempt(None, waiting=True)  # its queue entry is going
                elif read is Unclaimable.FULL:
                    attempt = Attempt(None, waiting=True, full=frozenset({False}))
                else:
                    attempt = await self._claim_in_job(read)
                if attempt.claim is not None:
                    group = attempt.claim.group
                    if group is not None and group.whole_job:
                        # Every task of the job is ours now, then its merge: nothing for a scan
                        # to claim there until the last of our claims on it ends (its end
                        # forgets the job).
                        self.memo.block(job_id, mark)
                    return attempt.claim
                if attempt.waiting:
                    self.memo.block(job_id, mark, attempt.full)
        return None

    def _drop_timers(self, queued: set[str]) -> None:
        """Cancel the retry timers (and forget the merge hand-offs) of jobs that left the
        queue."""
        for key in [k for k in self._timers if k.partition("/")[0] not in queued]:
            self._timers.pop(key).cancel()
        for job_id in [j for j in self._handoffs if j not in queued]:
            del self._handoffs[job_id]

    async def _read_job(self, job_id: str, training: bool = True) -> QueuedJob | Unclaimable:
        """A queued job's record and its shards' records; ``training``: whether a training
        slot is free (if not, and the job's tasks take only training slots, the job is
        Unclaimable.FULL, its shards not read).

        The shards are read with the record, in the same round trip, rather than after it: as
        many as the job had when last read, or else as the last job read had (a queue's jobs
        are mostly alike: a batch of one kind, a search's candidates). A guess short reads the
        rest after; one long asks for a shard that is not there. The reads go out in order on
        one session, so the shards are as new as the record, as when read after it.
        """
        guess = (self.memo.tasks(job_id) or self._tasks_guess) if training else 0
        try:
            job_read, *guessed = await asyncio.gather(
                self.queue.read_job(job_id),
                *(self._shard_if_any(job_id, index) for index in range(guess)),
            )
            job, stat = job_read
            if job.state.terminal:
                return Unclaimable.FINAL
            tasks = job.spec.tasks
            small = shard_groups.groupable(job, self.settings.worker_group_work)
            kinds = slot_kinds(job)
            self.memo.learn(job.id, kinds, tasks, small)
            if not training and kinds == {False}:
                return Unclaimable.FULL
            self._tasks_guess = tasks
            shards = guessed[:tasks]
            if any(read is None for read in shards):
                return Unclaimable.UNREADABLE  # a shard record missing: the job is going
            rest = range(len(shards), tasks)
            shards += await asyncio.gather(*(self.queue.read_shard(job.id, i) for i in rest))
            return QueuedJob(job, [read for read in shards if read is not None], stat)
        except NotFound:
            return Unclaimable.FINAL
        except Exception:
            log.debug("could not read job %s", job_id, exc_info=True)
            return Unclaimable.UNREADABLE

    async def _shard_if_any(self, job_id: str, index: int) -> tuple[ShardRecord, ZnodeStat] | None:
        try:
            return await self.queue.read_shard(job_id, index)
        except NoNodeError:
            return None

    async def _claim_in_job(self, queued: QueuedJob) -> Attempt:
        job, shards, job_stat = queued
        now = time.time()
        waiting = True
        full: set[bool] = set()  # kinds of slot found all taken
        grouped = self.memo.small(job.id)  # as the scan's read of the job learnt it
        if grouped and self._room(rounds=False):
            attempt = await self._claim_group(job, shards, job_stat, now)
            if attempt is not None:
                return attempt
        # From a shard picked at random: idle workers woken by the same new job would all try
        # its first shard, and all but one claim would fail on its version (a write refused
        # by ZooKeeper, a round trip, then the next shard).
        start = secrets.randbelow(len(shards)) if shards else 0
        for shard, stat in shards[start:] + shards[:start]:
            key = f"{job.id}/{shard.index}"
            if key in self.claims:
                continue  # ours: its end forgets the job
            if shard.state == ShardState.pending and (shard.not_before or 0) > now:
                self.wake_at(key, shard.not_before or now)
                continue
            if shard.state not in (ShardState.pending, ShardState.running):
                continue  # done, failed, cancelled: final
            rounds = takes_round_slot(job, shard.index)
            if not self._room(rounds=rounds):
                full.add(rounds)  # a slot coming free wakes us (memo.room_freed)
                continue
            attempt = await self._claim_shard(job, shard, stat, job_stat)
            if attempt.claim is not None:
                return attempt
            waiting = waiting and attempt.waiting
        merge_lock = self.paths.merge_lock(job.id)
        if all(s.state == ShardState.done for s, _ in shards) and (
            f"{job.id}/merge" not in self.claims
        ):
            if not self._room(rounds=False):
                full.add(False)
            elif (job.merge_not_before or 0) > now:
                self.wake_at(f"{job.id}/merge", job.merge_not_before or now)
            elif merge_lock not in self._held and await self._held_elsewhere(merge_lock):
                # Another worker merges it (the one that finished its last shard, mostly): its
                # release watch wakes us; no claim's multi to fail on the lock.
                return Attempt(None, waiting, frozenset(full))
            elif self._handed_off(job, shards):
                return Attempt(None, waiting, frozenset(full))  # its timer wakes us
            else:
                # At the job record's version as the scan read it: a record that moved on since
                # fails the claim's multi, and the job is looked at again.
                read = None if job_stat is None else (job, job_stat)
                attempt = await self._claim_merge(job, [s for s, _ in shards], read)
                return Attempt(attempt.claim, waiting and attempt.waiting, frozenset(full))
        return Attempt(None, waiting, frozenset(full))

    def _handed_off(self, job: JobRecord, shards: list[tuple[ShardRecord, ZnodeStat]]) -> bool:
        """Whether to leave a job's first merge, for now, to the worker that settled its last
        shard (the highest zxid): that worker claims it at once, its merging child started
        already (_claim_merge_if_complete). A scan, woken by its worker's own shard's end,
        would race that claim, and a refused claim stops a child started for nothing. If that worker
        died before its claim, we claim MERGE_HANDOFF seconds after we first saw the job
        ready to merge (a timer wakes us; local time, so no clock is compared with another)."""
        if job.merge_attempts > 0 or not shards:
            return False  # a merge tried again: nobody settled a shard just now
        last = max(shards, key=lambda read: read[1].mzxid)[0]
        if last.worker == self.id:
            # Ours: the task that settled it claims the merge next (its end wakes us, should it
            # not). A scan woken meanwhile by our other work must not race it.
            return f"{job.id}/{last.index}" in self.claims
        if last.worker is None:
            return False
        now = time.monotonic()
        deadline = self._handoffs.setdefault(job.id, now + MERGE_HANDOFF)
        if now >= deadline:
            return False
        self.wake_at(f"{job.id}/merge", time.time() + deadline - now)
        return True

    async def _take(self, lock: str) -> bool | None:
        """Take ``lock`` for a claim: True if taken, None if one of our own claims holds it
        (its end wakes us), False if another worker does."""
        if lock in self._held:
            return None
        self._held.add(lock)
        try:
            taken = await self.queue.try_lock(lock, self.id)
        except BaseException:
            self._held.discard(lock)
            raise
        if not taken:
            self._held.discard(lock)
        return taken

    async def _let_go(self, lock: str) -> None:
        """Release a lock taken by _take that no claim came of: in the background, since a
        release waits out a disconnection (the scan that took it must not)."""

        async def release() -> None:
            try:
                await self.queue.unlock(lock)
            except Exception:
                log.warning("could not release %s", lock)
            finally:
                self._held.discard(lock)
                self.memo.forget(_lock_job(lock))
                self.wake()

        self.side_task(release())

    async def _lock_for_claim(self, lock: str) -> Attempt | None:
        """Take ``lock`` for a claim: None once it is ours; else no claim, and whether a wake-up
        is sure to come (our own claim's end, or the release watch on another worker's lock)."""
        taken = await self._take(lock)
        if taken is None:
            return Attempt(None, waiting=True)
        if not taken:
            # Taken: its owner is alive. Wake when it lets go (done, handed back, or died).
            return Attempt(None, waiting=await self._watch_lock(lock))
        return None

    async def _claim_shard(
        self,
        job: JobRecord,
        shard: ShardRecord,
        stat: ZnodeStat,
        job_stat: ZnodeStat | None = None,
    ) -> Attempt:
        """Claim a shard as the scan read it (``stat``: the version it was read at;
        ``job_stat``: the job record's, if the scan kept it).

        One multi takes the shard's lock and writes its record (``running``, one more attempt)
        at the version the scan read: both or neither. A lock taken by another worker fails it
        (NodeExists: its owner lives, and we watch for the lock to go); so does a record that
        moved on since the scan (BadVersion: another worker's claim and outcome, or a cancel):
        never overwritten, we look again. There is no moment where a lock is held without its
        claim written, or a claim written without its lock.
        """
        index = shard.index
        lock = self.paths.shard_lock(job.id, index)
        if lock in self._held:
            return Attempt(None, waiting=True)  # one of our own claims: its end wakes us
        claimable = shard.state == ShardState.pending or shard.state == ShardState.running
        if not claimable or (shard.not_before or 0) > time.time():
            return Attempt(None, waiting=False)
        if shard.state == ShardState.running and await self._held_elsewhere(lock):
            # Running, its lock held by its (live) owner: nothing to claim until the lock goes,
            # and its release watch wakes us. Asked before a claim's multi, which would fail on
            # the lock (a refused write in ZooKeeper's log, and two more reads to learn whose
            # lock it is); asked again while the watch is set, it costs no request at all.
            return Attempt(None, waiting=True)
        if shard.attempts >= job.spec.max_attempts:
            return await self._give_up_dead(job, shard, stat, lock)
        session = self.zk.session_id
        running = self._running(shard, utcnow())
        self._held.add(lock)
        try:
            written = await self._claim_write(
                self.paths.shard(job.id, index), running, stat.version, lock, session
            )
        except BaseException:
            await self._let_go(lock)  # released if it turns out ours
            raise
        if written is False:
            await self._let_go(lock)  # someone else's write came first
            return Attempt(None, waiting=False)
        if written is True:
            self._held.discard(lock)
            # Taken: its owner is alive. Wake when it lets go (done, handed back, or died).
            return Attempt(None, waiting=await self._watch_lock(lock))
        log.info("claim %s/%d attempt %d", job.id, index, running.attempts)
        if running.attempts == 1:
            waited = (utcnow() - job.created_at).total_seconds()
            worker_metrics.CLAIM_LATENCY.observe(max(0.0, waited))
        claim = Claim(job=job, lock=lock, index=index, shard=running, stat=written, session=session)
        if job.state == JobState.queued:  # as read by this scan: never moves back to queued
            known = None if job_stat is None else (job, job_stat)
            self.side_task(self._mark_running(job.id, session, known))
        return Attempt(claim, waiting=False)

    async def _claim_group(
        self, job: JobRecord, shards: Shards, job_stat: ZnodeStat | None, now: float
    ) -> Attempt | None:
        """A small job's pending shards claimed together (workers/shard_groups.py): one multi
        takes every one's lock and writes every one's record at the version the scan read, as
        a claim of one shard does for one. None when there are not two to take, or the multi
        failed on a lock: the shards are then tried one by one, as for any job (a held lock is
        looked at there). A record that moved on since the scan means another claim came
        first: no claim, and the job is read again, as for one shard."""
        picked = shard_groups.pick(
            shards,
            now,
            job.spec.max_attempts,
            lambda index: (
                f"{job.id}/{index}" in self.claims
                or self.paths.shard_lock(job.id, index) in self._held
            ),
        )
        if len(picked) < 2:
            return None
        session = self.zk.session_id
        # One started_at for all: they are claimed at one moment, by one multi.
        at = utcnow()
        running = [self._running(shard, at) for shard, _ in picked]
        lock_paths = [self.paths.shard_lock(job.id, shard.index) for shard, _ in picked]
        self._held.update(lock_paths)
        tx = self.zk.transaction()
        for (shard, stat), record, lock in zip(picked, running, lock_paths, strict=True):
            tx.set_data(self.paths.shard(job.id, shard.index), record.dump(), stat.version)
            locks.take_in(tx, lock, self.id)
        # A queued job is marked running by the same multi (at the version the scan read, as
        # _mark_running would write it), not by a write of its own after: the group claims
        # every pending shard, so no other claim of the job's is left to race for the mark.
        marks = job.state == JobState.queued and job_stat is not None
        if marks:
            assert job_stat is not None
            marked = job.model_copy(update={"state": JobState.running, "updated_at": at})
            if job.started_at is None:
                marked = marked.model_copy(update={"started_at": at})
            tx.set_data(self.paths.job(job.id), marked.dump(), job_stat.version)
        try:
            results = await self.zk.commit(tx)
            stats: list[ZnodeStat] = results[0 : 2 * len(picked) : 2]
        except TRANSIENT_ERRORS:
            lost = await self._lost_group_claim(job.id, picked, running, lock_paths, session)
            if lost is None:
                return None  # not applied, or moved on since: one by one, as the scan read
            stats = lost
        except TransactionFailed as failed:
            # Nothing of it applied: no lock of it to release.
            self._held.difference_update(lock_paths)
            if isinstance(failed.error, NodeExistsError):
                return None  # a lock held: one by one, each held lock is looked at
            # A record moved on (another worker's claim, most often its group's, came first):
            # nothing to claim from what the scan read. The locks that claim took are watched,
            # as a held lock is: their release (the owner's outcomes, or its death) calls us
            # back to the job. Without the watches nothing would, and a dead owner's shards
            # would wait here for an unrelated wake-up. A lock not there (the record moved on
            # for another reason: a cancel) wakes a scan at once (_watch_lock).
            held = await asyncio.gather(*(self._watch_lock(lock) for lock in lock_paths))
            return Attempt(None, waiting=all(held))
        except BaseException:
            for lock in lock_paths:
                await self._let_go(lock)  # released if it turns out ours
            raise
        members = [
            Claim(job=job, lock=lock, index=record.index, shard=record, stat=stat, session=session)
            for record, lock, stat in zip(running, lock_paths, stats, strict=True)
        ]
        group = shard_groups.ShardGroup(members)
        for member in members:
            member.group = group
        waited = max(0.0, (utcnow() - job.created_at).total_seconds())
        for member in members:
            assert member.shard is not None
            log.info(
                "claim %s attempt %d (a group of %d)",
                member.key,
                member.shard.attempts,
                len(members),
            )
            if member.shard.attempts == 1:
                worker_metrics.CLAIM_LATENCY.observe(waited)
        if job.state == JobState.queued and not marks:
            self.side_task(self._mark_running(job.id, session, None))
        return Attempt(group.lead, waiting=False)

    async def _lost_group_claim(
        self,
        job_id: str,
        picked: Shards,
        running: list[ShardRecord],
        lock_paths: list[str],
        session: int | None,
    ) -> list[ZnodeStat] | None:
        """A group claim's multi whose reply a connection drop took: applied whole or not at
        all, as a single claim's (_claim_write). Once the session is back, our first lock says
        which (looked for on the leader's state: locks.held_by_us). Applied, each record is one
        version on and exactly our write, and the claim stands, its attempts counted once (let
        go, the shards would be `running` with no lock, and a job of one attempt would fail
        them as a dead worker's). None when it was not applied, or something moved a record
        since (a cancel: the locks are let go); the scan's shards are then tried one by one."""
        try:
            if not await self.zk.wait_session(session):
                raise SessionExpiredError("the session that made the claim is gone")
            if not await locks.held_by_us(self.zk, lock_paths[0]):
                self._held.difference_update(lock_paths)
                return None
            stats = []
            for (shard, stat), record in zip(picked, running, strict=True):
                path = self.paths.shard(job_id, shard.index)
                now = await self._our_write(path, record.dump(), stat.version, session)
                if now is None:
                    break  # applied, then moved on (a cancel) or deleted since
                stats.append(now)
            else:
                return stats
        except SessionExpiredError:
            self._held.difference_update(lock_paths)  # the locks went with the session
            raise
        except BaseException:
            for lock in lock_paths:
                await self._let_go(lock)  # released if it turns out ours
            raise
        for lock in lock_paths:
            await self._let_go(lock)
        return None

    def _running(self, shard: ShardRecord, at: datetime) -> ShardRecord:
        """``shard``'s record as this worker's claim at ``at`` writes it."""
        return shard.model_copy(
            update={
                "state": ShardState.running,
                "attempts": shard.attempts + 1,
                "worker": self.id,
                "started_at": at,
                "error": None,
                "history": shard.claimed(self.id, at),
            }
        )

    async def _claim_write(
        self,
        path: str,
        record: JobRecord | ShardRecord,
        version: int,
        lock: str,
        session: int | None,
    ) -> ZnodeStat | bool:
        """A claim's multi: ``lock`` taken and ``record`` written to ``path`` at ``version``.
        Its new stat; True if another worker holds the lock; False if the record moved on (the
        lock, if ours, is the caller's to let go). Raises SessionExpiredError if the session is
        lost.
        """
        data = record.dump()
        while True:
            tx = self.zk.transaction()
            tx.set_data(path, data, version)
            locks.take_in(tx, lock, self.id)
            try:
                results = await self.zk.commit(tx)
                stat: ZnodeStat = results[0]
                return stat
            except TransactionFailed as failed:
                if failed.index == 0:
                    return False  # BadVersion (moved on) or NoNode (the job was deleted)
                if not isinstance(failed.error, NodeExistsError):
                    raise failed.error from None
                if not await locks.held_by_us(self.zk, lock):
                    return True
                # Ours already (an earlier claim's release that failed): write the claim alone.
                return await self.write_versioned(path, record, version, session) or False
            except TRANSIENT_ERRORS:
                # The multi may have been applied before its reply was lost: both parts or
                # neither. Once the session is back, our lock says which (a lost session took
                # the lock with it: no claim).
                if not await self.zk.wait_session(session):
                    raise SessionExpiredError("the session is gone") from None
                if not await locks.held_by_us(self.zk, lock):
                    continue  # not applied: try again
                # Applied; then moved on (a cancel) or deleted since: let the lock go.
                return await self._our_write(path, data, version, session) or False

    async def _our_write(
        self, path: str, data: bytes, version: int, session: int | None
    ) -> ZnodeStat | None:
        """The stat of the record at ``path`` if it is exactly our write ``data`` made at
        ``version`` (one version on): a write whose lost reply it was applied for. None when
        the record moved on since (a cancel) or is gone (the job deleted)."""
        try:
            current, stat = await self.zk.retry(
                functools.partial(self.zk.get, path), session=session
            )
        except NoNodeError:
            return None
        return stat if stat.version == version + 1 and current == data else None

    async def _give_up_dead(
        self, job: JobRecord, shard: ShardRecord, stat: ZnodeStat, lock: str
    ) -> Attempt:
        """A shard out of attempts whose workers kept dying (e.g. killed for memory): holding
        its lock (so that no live worker is training it), fail it and its job."""
        refused = await self._lock_for_claim(lock)
        if refused is not None:
            return refused
        session = self.zk.session_id
        try:
            await self._give_up(
                job.id, shard, stat.version, f"worker died {shard.attempts} times", session
            )
        finally:
            await self._let_go(lock)
        return Attempt(None, waiting=False)

    async def _claim_merge(
        self,
        job: JobRecord,
        shards: list[ShardRecord],
        read: tuple[JobRecord, ZnodeStat] | None = None,
    ) -> Attempt:
        """The merge claim: one multi takes the merge lock and moves the job to ``merging``
        with one more merge attempt, at the version read (``read``, or read here): both or
        neither, as a shard's claim (_claim_shard). The version it writes is what the
        publishing multi checks, so a merger that lost its lock (and session) can never
        publish.

        ``shards``: the job's shard records, read all ``done`` (final: nothing moves a done
        shard), which the merge takes as they are.
        """
        lock = self.paths.merge_lock(job.id)
        if lock in self._held:
            return Attempt(None, waiting=True)  # our own merge claim: its end wakes us
        # Marked ours before the first await: a scan and a finished shard of this worker may
        # both try the merge at once, and the one whose multi then fails on the version would
        # release the other's lock (the lock node cannot tell two claims of one session apart).
        self._held.add(lock)
        try:
            job, stat = read or await self.queue.read_job(job.id)
        except BaseException:
            self._held.discard(lock)
            raise
        if job.state not in (JobState.queued, JobState.running, JobState.merging):
            self._held.discard(lock)
            return Attempt(None, waiting=False)
        if (job.merge_not_before or 0) > time.time():
            self._held.discard(lock)
            self.wake_at(f"{job.id}/merge", job.merge_not_before or 0)
            return Attempt(None, waiting=True)
        if job.merge_attempts >= job.spec.max_attempts:
            self._held.discard(lock)
            return await self._give_up_merge(job.id, lock)
        merging = job.model_copy(
            update={
                "state": JobState.merging,
                "merge_attempts": job.merge_attempts + 1,
                "merge_not_before": None,
                "updated_at": utcnow(),
                "merges": TaskAttempt.claimed(job.merges, self.id, utcnow()),
            }
        )
        session = self.zk.session_id
        try:
            written = await self._claim_write(
                self.paths.job(job.id), merging, stat.version, lock, session
            )
        except BaseException:
            await self._let_go(lock)
            raise
        if written is False:
            await self._let_go(lock)  # changed under us (cancelled): look again later
            return Attempt(None, waiting=False)
        if written is True:
            self._held.discard(lock)
            return Attempt(None, waiting=await self._watch_lock(lock))  # another merger
        log.info("claim %s/merge attempt %d", job.id, merging.merge_attempts)
        claim = Claim(job=merging, lock=lock, stat=written, session=session, shards=shards)
        return Attempt(claim, waiting=False)

    async def _give_up_merge(self, job_id: str, lock: str) -> Attempt:
        """A job out of merge attempts: holding its merge lock (a live merger of its last
        attempt holds it otherwise), fail it."""
        refused = await self._lock_for_claim(lock)
        if refused is not None:
            return refused
        session = self.zk.session_id
        try:
            job, _ = await self.queue.read_job(job_id)
            if not job.state.terminal and job.merge_attempts >= job.spec.max_attempts:
                error = job.merge_error or f"worker died {job.merge_attempts} times"
                await self.fail_job(
                    job.id, f"merge failed after {job.merge_attempts} attempts: {error}", session
                )
        finally:
            await self._let_go(lock)
        return Attempt(None, waiting=False)

    def side_task(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)

    async def _mark_running(
        self, job_id: str, session: int | None, known: tuple[JobRecord, ZnodeStat] | None = None
    ) -> None:
        """queued → running: for the record only, so it never holds up the training. ``known``:
        the job's record as the scan read it, written over at its version without a read (a
        BadVersion then reads it again)."""
        try:
            await self.zk.retry(lambda: self.queue.mark_running(job_id, known), session=session)
        except (NotFound, SessionExpiredError):
            pass
        except Exception:
            log.warning("could not mark %s running", job_id, exc_info=True)

    def wake_at(self, key: str, when: float) -> None:
        loop = asyncio.get_running_loop()
        at = loop.time() + max(0.0, when - time.time())
        timer = self._timers.get(key)
        if timer is not None:
            if timer.when() <= at:
                return  # an earlier wake-up reads the shard again anyway
            timer.cancel()

        def fire() -> None:
            self._timers.pop(key, None)
            self.memo.forget(key.partition("/")[0])
            self.wake()

        self._timers[key] = loop.call_at(at, fire)

    # -- watching the job we work on ------------------------------------------------------------

    async def watch_job(self, claim: Claim) -> None:
        """Cancel ``claim`` if its job is cancelled (or otherwise finished) under us."""

        def changed(event: WatchedEvent) -> None:
            # Not once the outcome is being written: a watch re-armed then would sit on a
            # finished job's record (which never changes again) until retention deletes it.
            if claim.task is not None and not claim.task.done() and not claim.settling:
                asyncio.get_running_loop().create_task(self.watch_job(claim))

        if claim.settling or (claim.task is not None and claim.task.done()):
            return  # nothing left to cancel: a watch now would outlive the claim
        try:
            # kazoo fires every watch when the connection drops; re-arm once it is back, however
            # long that takes (the claim is worth as long as its session lives).
            data, _ = await self.zk.retry(
                lambda: self.zk.get(self.paths.job(claim.job.id), watch=changed),
                session=claim.session,
            )
        except NoNodeError:
            self._cancel(claim, StopReason.CANCELLED)
            return
        except (SessionExpiredError, *TRANSIENT_ERRORS):
            return  # unwatched from here; the LOST notice still stops the claim
        if JobRecord.load(data).state.terminal:
            self._cancel(claim, StopReason.CANCELLED)

    # -- training a shard -----------------------------------------------------------------------

    async def _train(self, claim: Claim) -> None:
        try:
            await self._train_shard(claim)
        except asyncio.CancelledError:
            # Cancelled before the child started (a stop that came with the claim): leave the
            # shard as the reason requires, as a cancelled child would have.
            await asyncio.shield(self._after_cancel(claim))
            raise
        except Exception:
            # A running shard whose lock is free is claimable again: nothing is stuck.
            log.exception("shard %s: coordination failed", claim.key)
            await self._unlock(claim)
        finally:
            if claim.group is not None:
                claim.group.leave(claim)  # the last member to stop stops the shared child

    def time_limit(self, job: JobRecord) -> float:
        return float(job.spec.time_limit or self.settings.task_time_limit)

    async def _group_result(self, claim: Claim, payload: dict[str, Any]) -> dict[str, Any]:
        """``claim``'s result from the child its group shares (started by the first member to
        ask), which trains the group's shards one after another: each with its own time."""
        group = claim.group
        assert group is not None
        seconds = self.time_limit(claim.job)
        group.start(
            lambda: asyncio.ensure_future(
                processes.run_in_child(
                    TRAIN_SHARDS,
                    {**payload, "indices": group.indices},
                    time_limit=seconds * len(group.members),
                    memory_limit=self.memory_limit,
                    affinity=claim.job.id,
                )
            )
        )
        return await group.result(claim, seconds)

    async def _train_shard(self, claim: Claim) -> None:
        assert claim.index is not None and claim.shard is not None and claim.stat is not None
        # In the background: the training need not wait for ZooKeeper (an outage), and a job
        # found finished already stops the child moments after it started. A group's lead
        # watches for every member (_cancel stops them all).
        if claim.group is None or claim.group.lead is claim:
            self.side_task(self.watch_job(claim))
        payload = {
            "spec": claim.job.spec.model_dump(mode="json"),
            "index": claim.index,
            "artifacts": self.store.url,
            "dataset_source": dataset_source(claim.job),
        }
        try:
            if claim.job.spec.rounds and claim.job.spec.role(claim.index) == "shard":
                result = await round_task.run(self, claim, payload)
            elif claim.group is not None:
                result = await self._group_result(claim, payload)
            else:
                result = await processes.run_in_child(
                    TRAIN_SHARD,
                    payload,
                    time_limit=self.time_limit(claim.job),
                    memory_limit=self.memory_limit,
                    affinity=claim.job.id,
                )
            self.answered(claim)
            log.info("trained %s in %.2fs; recording it", claim.key, result["train_seconds"])
        except asyncio.CancelledError:
            await asyncio.shield(self._after_cancel(claim))
            return
        except (processes.ChildFailed, processes.ChildDied) as exc:
            self.answered(claim)
            log.warning("shard %s failed: %s", claim.key, exc)
            worker_metrics.SHARDS.labels(algorithm=claim.job.spec.algorithm, outcome="failed").inc()
            await self._shard_failed(claim, str(exc))
            return
        except Exception as exc:
            self.answered(claim)
            log.exception("shard %s failed", claim.key)
            await self._shard_failed(claim, f"{type(exc).__name__}: {exc}")
            return
        done = claim.shard.model_copy(
            update={
                "state": ShardState.done,
                "artifact": result["artifact"],
                "sha256": result["sha256"],
                "rows": result["rows"],
                "metrics": result["metrics"],
                "train_seconds": result["train_seconds"],
                "class_metrics": result.get("class_metrics"),
                "finished_at": utcnow(),
                "history": claim.shard.ended("done", utcnow()),
            }
        )
        siblings: list[asyncio.Future[MergeReads]] = []

        def read_siblings() -> None:
            # Sent right behind the outcome's multi, so answered after it (and seeing it):
            # whether this shard was the job's last to settle is known a round trip sooner.
            if not self._stopping.is_set():
                siblings.append(asyncio.ensure_future(self._merge_reads(claim.job, done.index)))

        # Of a group, only the member whose outcome goes last asks about the merge (after its
        # answer: which member that is, is known only then).
        last_of_group = True
        try:
            # Fencing: this write carries the version our claim wrote. If we lost the lock and
            # someone re-claimed the shard, the version moved on and ZooKeeper refuses it.
            settled = await self._settle(
                claim, done, read_siblings if claim.group is None else None
            )
            if settled is None:
                log.warning("shard %s was taken over; result discarded", claim.key)
        except BaseException:
            settled = None
            raise
        finally:
            if claim.group is not None:
                last_of_group = claim.group.settled()
            if settled is None:
                for read in siblings:
                    _discard(read)
            await asyncio.shield(self._unlock(claim))
        if settled is None:
            return
        log.info("done %s in %.2fs", claim.key, result["train_seconds"])
        worker_metrics.SHARDS.labels(algorithm=claim.job.spec.algorithm, outcome="done").inc()
        worker_metrics.TRAIN_SECONDS.labels(algorithm=claim.job.spec.algorithm).observe(
            result["train_seconds"]
        )
        if not last_of_group:
            return
        # The worker finishing the last shard merges at once rather than waiting for a wake.
        merge = await self._claim_merge_if_complete(
            claim.job, done, settled, siblings[0] if siblings else None
        )
        if merge is not None:
            self._start(merge)

    async def _settle(
        self, claim: Claim, outcome: ShardRecord, sent: Callable[[], None] | None = None
    ) -> ZnodeStat | None:
        """Write a shard's outcome with the version its claim wrote: its new stat, or None if
        fenced off.

        However long ZooKeeper is away, the outcome is written as soon as a session is back:
        ours, or a new one if ours expired meanwhile (its lock went with it, and another worker
        may have re-claimed the shard: then its claim moved the version on and ZooKeeper
        refuses ours; if nobody did, the trained result is kept). Never a TimeoutError that
        leaves a trained shard `running`.
        """
        assert claim.stat is not None
        artifact = outcome.artifact if outcome.state == ShardState.done else None
        try:
            written = await self.write_versioned(
                self.paths.shard(claim.job.id, outcome.index),
                outcome,
                claim.stat.version,
                claim.session,
                before=None if artifact is None else functools.partial(self.touch, artifact),
                outcome="shard",
                releasing=claim,
                sent=sent,
            )
        except SessionExpiredError:
            return None
        return written

    async def touch(self, artifact: str) -> bool:
        """Right before a record naming ``artifact`` is written: keep the collector off it
        (however long ago it was written), or learn that it is gone (then the record is not
        written: the shard is trained again). See zootrain/store_gc.py."""
        present = await asyncio.get_running_loop().run_in_executor(None, self.store.touch, artifact)
        if not present:
            log.warning("artifact %s vanished before its record was written", artifact)
        return present

    async def write_versioned(
        self,
        path: str,
        record: JobRecord | ShardRecord,
        version: int,
        session: int | None,
        before: Callable[[], Awaitable[bool]] | None = None,
        *,
        outcome: str | None = None,
        releasing: Claim | None = None,
        sent: Callable[[], None] | None = None,
    ) -> ZnodeStat | None:
        """Set ``path`` to ``record`` if its version is still ``version``: its new stat, or
        None if it moved on (someone else's write came first), is gone, or ``before`` (run
        before each try) said False.

        A claim needs its lock, and so the session that holds it: SessionExpiredError once
        another session connects. ``outcome`` (a kind, for the metric) marks instead the result
        of work already done, which the version alone fences: it is tried again from a new
        session too. A refused outcome is counted in zootrain_fenced_writes_total.

        ``releasing``: the claim whose lock this write ends. A try sent from the session that
        took the lock releases it in the same multi (``claim.released`` then says so); a try
        from a newer session writes alone (that lock went with the old session).

        ``sent``: called once the first try is on its way, if it releases the lock in its
        multi (ZooKeeper.commit): what the caller asks ZooKeeper after that is answered after
        this write. A caller it was not called for asks after the write's answer.
        """
        data = record.dump()
        tried = False
        while True:
            if before is not None and not await before():
                return None
            try:
                first, sent = sent, None  # a try after the first is answered after it too
                return await self._set(path, data, version, releasing, first)
            except NoNodeError:
                return None  # the job was deleted
            except BadVersionError:
                if tried:
                    # A try cut off by a connection drop may have been applied: then the
                    # record holds exactly our write, one version on.
                    try:
                        current, stat = await self.zk.retry(
                            lambda: self.zk.get(path), session=None if outcome else session
                        )
                    except NoNodeError:
                        return None
                    if stat.version == version + 1 and current == data:
                        return stat
                if outcome is not None:
                    self.fenced(outcome, path)
                return None
            except (*TRANSIENT_ERRORS, SessionExpiredError) as exc:
                # kazoo fails a request queued during a disconnection with SessionExpiredError
                # when the session turns out to be gone.
                if isinstance(exc, SessionExpiredError) and outcome is None:
                    raise
                tried = True
                if not await self.zk.wait_session(session) and outcome is None:
                    raise SessionExpiredError("the session holding the lock is gone") from None

    async def _set(
        self,
        path: str,
        data: bytes,
        version: int,
        releasing: Claim | None,
        sent: Callable[[], None] | None = None,
    ) -> ZnodeStat:
        """Set ``path`` at ``version``, releasing ``releasing``'s lock in the same multi when
        this session took it. Raises what the set alone would (BadVersion, NoNode). ``sent``:
        called once that multi is on its way (ZooKeeper.commit); a write with no lock to
        release goes alone, and never calls it."""
        if releasing is None or not locks.may_release_in(self.zk, releasing.session):
            return await self.zk.set(path, data, version)
        tx = self.zk.transaction()
        tx.set_data(path, data, version)
        locks.release_in(tx, releasing.lock)
        try:
            results = await self.zk.commit(tx, sent)
        except TransactionFailed as failed:
            if failed.index == 0:
                raise failed.error from None
            # The lock is not there although its session lives (deleted by hand): the write
            # needs no release.
            return await self.zk.set(path, data, version)
        releasing.released = True
        stat: ZnodeStat = results[0]
        return stat

    @staticmethod
    def fenced(kind: str, path: str) -> None:
        worker_metrics.FENCED.labels(write=kind).inc()
        log.warning("%s write refused on its version: %s moved on since our claim", kind, path)

    async def _merge_reads(self, job: JobRecord, index: int) -> MergeReads:
        """The job's record and its other shards' records (one round trip): what deciding on
        its merge claim takes."""
        read, *others = await asyncio.gather(
            self.queue.read_job(job.id),
            *(self.queue.read_shard(job.id, i) for i in range(job.spec.tasks) if i != index),
        )
        return read, others

    async def _claim_merge_if_complete(
        self,
        job: JobRecord,
        done: ShardRecord,
        written: ZnodeStat,
        reads: asyncio.Future[MergeReads] | None = None,
    ) -> Claim | None:
        """The job's merge, if ``done`` (our shard's record, just written at ``written``: not
        read back) was the last of its shards.

        Workers whose shards end at once may each read them all done. Only the one whose
        outcome ZooKeeper applied last (the highest zxid: a done shard never changes again)
        claims here; the others' claims would only fail on the merge lock, and their scans leave
        the merge to it (_handed_off). If it dies before its claim, nothing is lost: their
        scans claim it MERGE_HANDOFF seconds later if the lock is still free.
        """
        if self._stopping.is_set():
            if reads is not None:
                _discard(reads)
            return None
        try:
            # The job's record with the others' (one round trip), sent right behind our
            # outcome's write if the caller did (``reads``): the merge claim needs them.
            read, others = await (reads or self._merge_reads(job, done.index))
            shards = sorted([done, *(s for s, _ in others)], key=lambda s: s.index)
            last = all(stat.mzxid < written.mzxid for _, stat in others)
            if not (last and all(s.state == ShardState.done for s in shards)):
                return None
        except Exception:
            log.exception("checking %s for a merge failed", job.id)
            return None
        # The merging child starts now, while the claim's multi is on its way: for a small
        # job, its work is as long as the round trip.
        early = publishing.start_merge_early(self, read[0], shards)
        try:
            claim = (await self._claim_merge(job, shards, read)).claim
        except BaseException as exc:
            _discard(early)
            if not isinstance(exc, Exception):
                raise
            log.exception("claiming the merge of %s failed", job.id)
            return None
        if claim is None:
            if early is not None:
                log.info("stopping the early merge of %s: its claim was refused", job.id)
            _discard(early)
        else:
            claim.early = early
        return claim

    async def _after_cancel(self, claim: Claim) -> None:
        """Leave the shard as the reason for cancelling it requires."""
        if claim.wound_down:
            return
        claim.wound_down = True
        log.info("stopped %s (%s)", claim.key, claim.reason)
        worker_metrics.CANCELLED.labels(reason=claim.reason or "unknown").inc()
        if (
            claim.reason == StopReason.HANDBACK
            and claim.shard is not None
            and claim.stat is not None
        ):
            # A graceful stop hands the shard back without consuming an attempt.
            back = claim.shard.model_copy(
                update={
                    "state": ShardState.pending,
                    "attempts": max(0, claim.shard.attempts - 1),
                    "worker": None,
                    "history": claim.shard.ended("handed_back", utcnow()),
                }
            )
            with contextlib.suppress(*TRANSIENT_ERRORS, SessionExpiredError, NoNodeError):
                await self._settle(claim, back)
        if claim.reason != StopReason.LOST:
            await self._unlock(claim)

    async def _shard_failed(self, claim: Claim, error: str) -> None:
        assert claim.shard is not None and claim.stat is not None
        shard = claim.shard
        try:
            if shard.attempts >= claim.job.spec.max_attempts:
                await self._give_up(claim.job.id, shard, claim.stat.version, error, claim.session)
            else:
                delay = backoff_delay(
                    shard.attempts, self.settings.retry_backoff, self.settings.retry_backoff_max
                )
                retry = shard.model_copy(
                    update={
                        "state": ShardState.pending,
                        "worker": None,
                        "error": error,
                        "not_before": time.time() + delay,
                        "history": shard.ended("failed", utcnow(), error),
                    }
                )
                if await self._settle(claim, retry):
                    worker_metrics.RETRIES.inc()
                    log.info("shard %s retries in %.1fs", claim.key, delay)
        except (BadVersionError, NoNodeError, SessionExpiredError):
            pass
        finally:
            await asyncio.shield(self._unlock(claim))

    async def _give_up(
        self, job_id: str, shard: ShardRecord, version: int, error: str, session: int | None
    ) -> None:
        """The shard is out of attempts: it fails, its job with it, and the job's other
        unfinished shards are cancelled, in one multi (``version``: what our claim read or
        wrote; a shard that moved on since is someone else's now, and nothing fails)."""
        failed = shard.model_copy(
            update={
                "state": ShardState.failed,
                "error": error,
                "finished_at": utcnow(),
                "history": shard.ended("failed", utcnow(), error),
            }
        )
        message = f"shard {shard.index} failed after {shard.attempts} attempts: {error}"
        await self.fail_job(job_id, message, session, failed=(failed, version))

    async def fail_job(
        self,
        job_id: str,
        message: str,
        session: int | None,
        failed: tuple[ShardRecord, int] | None = None,
    ) -> None:
        try:
            # fail() re-reads everything on each try, so running it again after a connection
            # drop is safe: a multi that was applied shows as a terminal job.
            done = await self.zk.retry(
                lambda: self.queue.fail(job_id, message, failed=failed), session=session
            )
        except (NotFound, SessionExpiredError):
            return
        if done is not None:
            log.warning("job %s failed: %s", job_id, message)
            worker_metrics.FINISHED.labels(state="failed").inc()

    async def _unlock(self, claim: Claim) -> None:
        if claim.released:
            return  # released by the multi that wrote its outcome
        try:
            await self.queue.unlock(claim.lock)
        except Exception:
            # The lock is ephemeral: if we cannot delete it, it goes with our session.
            log.warning("could not release %s", claim.lock)

    # -- merging and publishing: workers/publishing.py -----------------------------------------

    async def _merge(self, claim: Claim) -> None:
        try:
            await publishing.merge_and_publish(self, claim)
        except asyncio.CancelledError:
            log.info("stopped %s (%s)", claim.key, claim.reason)
            raise
        except Exception:
            # The job stays `merging` with its merge lock free: the next scan merges it again.
            log.exception("merging %s failed", claim.key)
        finally:
            if claim.reason != StopReason.LOST:
                await asyncio.shield(self._unlock(claim))


def _merges_next(claim: Claim) -> bool:
    """Whether ``claim``'s slot passes to its job's merge: a group that holds every task of its
    job keeps its slot while its members settle, as the last one claims the merge. A scan
    started in between would read the queue's head only for the merge claim to take the slot
    (with 500 tiny jobs queued, a wasted read of a job for every job)."""
    return claim.group is not None and claim.group.whole_job


def _slots(claims: Iterable[Claim]) -> int:
    """The slots ``claims`` take: a group of shards trained by one child takes one."""
    return len({id(c.group) if c.group is not None else id(c) for c in claims})


def _discard(child: asyncio.Future[Any] | None) -> None:
    """Stop work started for nothing (a merging child for a claim not made, reads for a merge
    not to be claimed), its outcome unread."""
    if child is not None:
        child.cancel()
        child.add_done_callback(lambda done: done.cancelled() or done.exception())


def _lock_job(path: str) -> str:
    """The job id of a lock (``locks/<job-id>.<shard>`` or ``locks/<job-id>.merge``)."""
    return path.rpartition("/")[2].partition(".")[0]
