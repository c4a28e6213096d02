"""A shard's lock travels with its record: the claim takes the lock and writes `running` in one
multi, and the outcome's write releases the lock in one multi (zootrain/locks.py: take_in,
release_in). Each is all or nothing, so no worker, however it dies, can leave a lock without
its claim, a claim without its lock, or an outcome beside a lock still held. These run a real
Worker's claim and settle code against a real ZooKeeper, without processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from kazoo.client import KazooClient

from tests.integration.conftest import iris_spec, settings_from_env
from workers import shard_groups
from workers.claims import Unclaimable
from workers.worker import Worker
from zootrain.queue import JobQueue
from zootrain.records import JobRecord, JobSpec, ShardRecord, ShardState
from zootrain.settings import Settings
from zootrain.zk import ZnodeStat, ZooKeeper

pytestmark = pytest.mark.integration


@contextlib.asynccontextmanager
async def started_worker(settings: Settings) -> AsyncIterator[Worker]:
    """A Worker connected to ZooKeeper, its layout made, without its claim loop: the tests
    drive its claim and settle code themselves."""
    worker = Worker(settings)
    await worker.zk.start(30)
    try:
        await worker.queue.ensure_layout()
        yield worker
    finally:
        await worker.zk.stop()


async def one_shard_job(
    worker: Worker, spec: JobSpec
) -> tuple[str, JobRecord, ShardRecord, ZnodeStat]:
    """``spec`` (one shard) submitted, and its job and shard as a scan reads them."""
    job_id = (await JobQueue(worker.zk, worker.paths).submit(spec)).job.id
    job, _ = await worker.queue.read_job(job_id)
    [(shard, stat)] = await worker.queue.read_shards(job_id, 1)
    return job_id, job, shard, stat


def shard_record(kazoo: KazooClient, root: str, job_id: str) -> tuple[dict[str, object], int]:
    data, stat = kazoo.get(f"{root}/jobs/{job_id}/shards/0000")
    return json.loads(data), stat.version


def test_a_claim_on_a_lock_another_worker_holds_writes_nothing(
    settings_env: dict[str, str], kazoo: KazooClient, zk_root: str
) -> None:
    """The lock is taken (its owner lives): the claim's multi fails whole, the record is
    untouched; once the lock goes, the same worker claims."""
    settings = settings_from_env(settings_env, worker_id="claimer")
    spec = JobSpec.model_validate(iris_spec(model_name="locked", shards=1))
    other = KazooClient(hosts=settings_env["ZOOTRAIN_ZK_HOSTS"])
    other.start(30)

    async def scenario() -> str:
        worker = Worker(settings)
        await worker.zk.start(30)
        try:
            await worker.queue.ensure_layout()
            job_id = (await JobQueue(worker.zk, worker.paths).submit(spec)).job.id
            lock = worker.paths.shard_lock(job_id, 0)
            other.create(lock, b"someone-else", ephemeral=True)  # a live worker's lock
            assert await worker._find_work() is None
            record, version = shard_record(kazoo, zk_root, job_id)
            assert record["state"] == "pending" and record["attempts"] == 0, record
            assert version == 0  # not written, not even rolled back: the multi never applied
            assert kazoo.get(lock)[0] == b"someone-else"
            worker._wake.clear()
            other.delete(lock)  # its owner lets go: the claim's watch on the lock fires
            await asyncio.wait_for(worker._wake.wait(), 30)
            claim = await worker._find_work()
            assert claim is not None and claim.shard is not None
            assert claim.shard.attempts == 1
            assert claim.stat is not None and claim.stat.version == 1
            lock_stat = kazoo.exists(lock)
            assert lock_stat is not None and lock_stat.ephemeralOwner == worker.zk.session_id
            return job_id
        finally:
            await worker.zk.stop()
            other.stop()
            other.close()

    asyncio.run(scenario())


def test_a_claim_on_a_record_that_moved_on_takes_no_lock(
    settings_env: dict[str, str], kazoo: KazooClient, zk_root: str
) -> None:
    """The scan read the shard at one version, and it moved on before the claim (another
    worker's claim, a cancel): the claim's multi fails whole, so the lock is never taken, not
    even for a moment, and the record keeps the other write."""
    settings = settings_from_env(settings_env, worker_id="late")
    spec = JobSpec.model_validate(iris_spec(model_name="raced", shards=1))

    async def scenario() -> None:
        async with started_worker(settings) as worker:
            job_id, job, shard, stat = await one_shard_job(worker, spec)
            path = worker.paths.shard(job_id, 0)
            moved = shard.model_copy(update={"error": "written by someone else"})
            kazoo.set(path, moved.dump(), stat.version)
            attempt = await worker._claim_shard(job, shard, stat)
            assert attempt.claim is None and not attempt.waiting
            assert kazoo.exists(worker.paths.shard_lock(job_id, 0)) is None
            record, version = shard_record(kazoo, zk_root, job_id)
            assert version == stat.version + 1
            assert record["error"] == "written by someone else" and record["attempts"] == 0

    asyncio.run(scenario())


def test_a_lock_our_session_holds_for_no_claim_is_let_go_and_its_shard_claimed(
    settings_env: dict[str, str], kazoo: KazooClient, zk_root: str
) -> None:
    """A claim's multi applied after its reply was lost to a connection drop, and the release
    that followed looked on a server that had not applied it yet (the failover test's ensemble
    lost a follower then): the shard is `running`, its lock held by the worker's own live
    session, and no claim of the worker's holds it. Nobody else can free that lock while the
    session lives, so the worker lets it go and claims the shard again (one more attempt)."""
    settings = settings_from_env(settings_env, worker_id="orphaned")
    spec = JobSpec.model_validate(iris_spec(model_name="orphan", shards=1))

    async def scenario() -> None:
        async with started_worker(settings) as worker:
            job_id, job, shard, stat = await one_shard_job(worker, spec)
            lock = worker.paths.shard_lock(job_id, 0)
            # What the lost claim left: its record written and its lock, by our session.
            lost = worker._running(shard, shard.started_at or job.created_at)
            tx = worker.zk.transaction()
            tx.set_data(worker.paths.shard(job_id, 0), lost.dump(), stat.version)
            tx.create(lock, worker.id.encode(), ephemeral=True)
            await worker.zk.commit(tx)
            worker._wake.clear()
            assert await worker._find_work() is None  # held: let go, and looked at again
            await asyncio.wait_for(worker._wake.wait(), 30)
            claim = await worker._find_work()
            assert claim is not None and claim.shard is not None
            assert claim.shard.attempts == 2
            lock_stat = kazoo.exists(lock)
            assert lock_stat is not None and lock_stat.ephemeralOwner == worker.zk.session_id
            assert lock in worker._held

    asyncio.run(scenario())


def test_an_outcome_releases_its_lock_in_its_own_multi_only_from_the_claiming_session(
    settings_env: dict[str, str], kazoo: KazooClient, zk_root: str
) -> None:
    """From the session that claimed, the outcome and the lock's release are one multi. From
    any other session (the claiming one expired) the outcome is written alone: a node at the
    lock's path then belongs to whoever took it since, and must never be deleted by us."""
    settings = settings_from_env(settings_env, worker_id="settler")
    spec = JobSpec.model_validate(iris_spec(model_name="settled", shards=1, max_attempts=3))

    async def scenario() -> None:
        async with started_worker(settings) as worker:
            queue = JobQueue(worker.zk, worker.paths)
            for expired in (False, True):
                job_id = (await queue.submit(spec)).job.id
                claim = await worker._find_work()
                assert claim is not None and claim.shard is not None and claim.stat is not None
                assert claim.job.id == job_id
                lock = worker.paths.shard_lock(job_id, 0)
                if expired:
                    # As if the claim's session had expired and this were its successor: the
                    # node at the lock's path is then someone else's.
                    claim.session = (worker.zk.session_id or 0) + 1
                retry = claim.shard.model_copy(
                    update={"state": ShardState.pending, "worker": None, "error": "boom"}
                )
                assert await worker._settle(claim, retry)
                record, version = shard_record(kazoo, zk_root, job_id)
                assert record["state"] == "pending" and record["error"] == "boom", record
                assert version == claim.stat.version + 1
                if expired:
                    assert not claim.released
                    held = kazoo.exists(lock)
                    assert held is not None and held.ephemeralOwner == worker.zk.session_id
                    await worker._unlock(claim)  # the test's own clean-up of "someone's" lock
                else:
                    assert claim.released
                    assert kazoo.exists(lock) is None
                worker._held.discard(lock)
                await queue.cancel(job_id)

    asyncio.run(scenario())


def _set_shard(kazoo: KazooClient, root: str, job_id: str, index: int, **update: object) -> None:
    path = f"{root}/jobs/{job_id}/shards/{index:04d}"
    data, stat = kazoo.get(path)
    kazoo.set(path, json.dumps({**json.loads(data), **update}).encode(), stat.version)


def test_two_merge_claims_of_one_worker_at_once_leave_one_claim_and_its_lock(
    settings_env: dict[str, str], kazoo: KazooClient, zk_root: str
) -> None:
    """The worker that finished a job's last shard claims its merge while its own scan, woken
    by the same shard, tries too. One claim comes of it, and the other attempt must not
    release the lock the first one took (the lock node cannot tell two claims of one session
    apart): the merge lock stays held until the merge ends."""
    settings = settings_from_env(settings_env, worker_id="merger")
    spec = JobSpec.model_validate(iris_spec(model_name="twice", shards=2))

    async def scenario() -> None:
        async with started_worker(settings) as worker:
            job_id = (await JobQueue(worker.zk, worker.paths).submit(spec)).job.id
            for index in range(2):
                _set_shard(kazoo, zk_root, job_id, index, state="done", artifact="a", sha256="b")
            job, stat = await worker.queue.read_job(job_id)
            shards = [s for s, _ in await worker.queue.read_shards(job_id, 2)]
            # The scan's reads the record first: while it waits for it, the finished shard's
            # (with the record already read) claims.
            first, second = await asyncio.gather(
                worker._claim_merge(job, shards), worker._claim_merge(job, shards, (job, stat))
            )
            claims = [a.claim for a in (first, second) if a.claim is not None]
            assert len(claims) == 1, (first, second)
            await asyncio.sleep(0)  # any release _let_go scheduled would start now
            for task in list(worker._side_tasks):
                await task
            lock = worker.paths.merge_lock(job_id)
            held = kazoo.exists(lock)
            assert held is not None and held.ephemeralOwner == worker.zk.session_id
            record = json.loads(kazoo.get(f"{zk_root}/jobs/{job_id}")[0])
            assert record["state"] == "merging" and record["merge_attempts"] == 1, record

    asyncio.run(scenario())


async def woken_by_release(worker: Worker, lock: str) -> None:
    """Wait for the wake-up the release watch on ``lock`` brings (other wake-ups, of watches
    on the worker's own locks, may come first)."""
    while lock in worker._armed:
        worker._wake.clear()
        if lock not in worker._armed:
            break
        await asyncio.wait_for(worker._wake.wait(), 30)


def test_a_scan_leaves_a_running_shard_and_a_merge_to_their_lock_holders_until_they_let_go(
    settings_env: dict[str, str], kazoo: KazooClient, zk_root: str
) -> None:
    """A running shard whose lock another worker holds, and a finished job whose merge lock
    another worker holds: the scan claims neither and writes nothing; when each lock goes (its
    holder died), the scan is woken and claims the task."""
    settings = settings_from_env(settings_env, worker_id="scanner")
    spec = JobSpec.model_validate(iris_spec(model_name="held", shards=1, max_attempts=3))
    other = KazooClient(hosts=settings_env["ZOOTRAIN_ZK_HOSTS"])
    other.start(30)

    async def scenario() -> None:
        worker = Worker(settings)
        await worker.zk.start(30)
        try:
            await worker.queue.ensure_layout()
            job_id = (await JobQueue(worker.zk, worker.paths).submit(spec)).job.id
            job_path = f"{zk_root}/jobs/{job_id}"
            shard_lock = worker.paths.shard_lock(job_id, 0)
            other.create(shard_lock, b"other", ephemeral=True)
            _set_shard(kazoo, zk_root, job_id, 0, state="running", attempts=1, worker="other")
            _, version = shard_record(kazoo, zk_root, job_id)
            for _ in range(2):  # the second scan asks nothing: the lock's watch is set
                assert await worker._find_work() is None
            assert shard_record(kazoo, zk_root, job_id)[1] == version
            other.delete(shard_lock)  # its holder died
            await woken_by_release(worker, shard_lock)
            claim = await worker._find_work()
            assert claim is not None and claim.shard is not None
            assert claim.shard.attempts == 2
            # The shard is done; another worker holds the job's merge lock.
            artifact, digest = worker.store.put(b"a model")
            done = claim.shard.model_copy(
                update={"state": ShardState.done, "artifact": artifact, "sha256": digest}
            )
            assert await worker._settle(claim, done)
            worker.claims.clear()
            worker._held.clear()
            worker.memo.forget_all()
            merge_lock = worker.paths.merge_lock(job_id)
            other.create(merge_lock, b"other", ephemeral=True)
            job_version = kazoo.exists(job_path).version
            for _ in range(2):
                assert await worker._find_work() is None
            assert kazoo.exists(job_path).version == job_version
            other.delete(merge_lock)
            await woken_by_release(worker, merge_lock)
            merge = await worker._find_work()
            assert merge is not None and merge.index is None
            assert json.loads(kazoo.get(job_path)[0])["state"] == "merging"
        finally:
            await worker.zk.stop()
            other.stop()
            other.close()

    asyncio.run(scenario())


def test_of_workers_reading_a_job_all_done_only_the_last_to_settle_claims_its_merge_at_once(
    settings_env: dict[str, str], kazoo: KazooClient, zk_root: str
) -> None:
    """Two workers whose shards end together may each read both done: only the one whose
    outcome ZooKeeper applied last claims the merge straight away (the other's claim could only
    fail on the merge lock); the other's scan is left to claim it should that one not."""
    settings = settings_from_env(settings_env, worker_id="settler")
    spec = JobSpec.model_validate(iris_spec(model_name="together", shards=2))

    async def scenario() -> None:
        async with started_worker(settings) as worker:
            job_id = (await JobQueue(worker.zk, worker.paths).submit(spec)).job.id
            for index in range(2):
                _set_shard(kazoo, zk_root, job_id, index, state="done", artifact="a", sha256="b")
            job, _ = await worker.queue.read_job(job_id)
            (first, first_stat), (second, second_stat) = await worker.queue.read_shards(job_id, 2)
            assert first_stat.mzxid < second_stat.mzxid
            assert await worker._claim_merge_if_complete(job, first, first_stat) is None
            assert kazoo.exists(worker.paths.merge_lock(job_id)) is None
            claim = await worker._claim_merge_if_complete(job, second, second_stat)
            assert claim is not None and claim.index is None
            assert kazoo.exists(worker.paths.merge_lock(job_id)) is not None
            # Its merging child started with the claim; these shards have no files to merge.
            assert claim.early is not None
            claim.early.cancel()

    asyncio.run(scenario())


def test_a_scan_leaves_a_first_merge_to_the_worker_that_settled_the_last_shard_for_a_while(
    settings_env: dict[str, str], kazoo: KazooClient, zk_root: str
) -> None:
    """The worker that settled a job's last shard claims its merge at once; another worker's
    scan, finding the job ready to merge, leaves it to that one (their claims would race, and a
    refused one stops a merging child started for nothing). Should that worker have died
    before its claim, the scan claims the merge MERGE_HANDOFF seconds later: a timer wakes it."""
    settings = settings_from_env(settings_env, worker_id="bystander")
    spec = JobSpec.model_validate(iris_spec(model_name="handed-off", shards=2))

    async def scenario() -> None:
        async with started_worker(settings) as worker:
            job_id = (await JobQueue(worker.zk, worker.paths).submit(spec)).job.id
            for index in range(2):  # the last one by a worker that then died
                _set_shard(
                    kazoo,
                    zk_root,
                    job_id,
                    index,
                    state="done",
                    artifact="a",
                    sha256="b",
                    worker="settler",
                )
            worker._wake.clear()
            assert await worker._find_work() is None
            assert kazoo.exists(worker.paths.merge_lock(job_id)) is None
            assert f"{job_id}/merge" in worker._timers
            await asyncio.wait_for(worker._wake.wait(), 30)  # the hand-off timer
            merge = await worker._find_work()
            assert merge is not None and merge.index is None and merge.job.id == job_id
            held = kazoo.exists(worker.paths.merge_lock(job_id))
            assert held is not None and held.ephemeralOwner == worker.zk.session_id
            assert merge.job.merge_attempts == 1

    asyncio.run(scenario())


def test_a_scan_lists_the_queue_again_once_its_child_watch_fired(
    settings_env: dict[str, str], kazoo: KazooClient, zk_root: str
) -> None:
    """Between wake-ups of its own a scan reuses the queue's last listing (its child watch is
    set and has not fired: nothing came or went); a job submitted by another process fires the
    watch, and the next scan lists the queue again and claims it."""
    settings = settings_from_env(settings_env, worker_id="lister")
    spec = JobSpec.model_validate(iris_spec(model_name="listed", shards=1))

    async def scenario() -> None:
        worker = Worker(settings)
        submitter = ZooKeeper(settings.zk_hosts)
        await worker.zk.start(30)
        await submitter.start(30)
        try:
            await worker.queue.ensure_layout()
            assert await worker._find_work() is None  # lists the empty queue, sets the watch
            assert "queue-children" in worker._armed and worker._listing == []
            assert await worker._find_work() is None  # the same listing, no request
            worker._wake.clear()
            job_id = (await JobQueue(submitter, worker.paths).submit(spec)).job.id
            await asyncio.wait_for(worker._wake.wait(), 30)
            claim = await worker._find_work()
            assert claim is not None and claim.job.id == job_id
        finally:
            await submitter.stop()
            await worker.zk.stop()

    asyncio.run(scenario())


def test_a_scan_reads_a_jobs_shards_with_its_record_guessing_their_number(
    settings_env: dict[str, str], kazoo: KazooClient, zk_root: str
) -> None:
    """A scan reads a job's shards in the same round trip as its record, as many as the job had
    when last read or else as the last job read had: a guess short reads the rest after, one
    long asks for shards that are not there. Either way the scan gets every shard, in order."""
    settings = settings_from_env(settings_env, worker_id="guesser")

    async def scenario() -> None:
        async with started_worker(settings) as worker:
            queue = JobQueue(worker.zk, worker.paths)
            three = (await queue.submit(JobSpec.model_validate(iris_spec(shards=3)))).job.id
            one = (await queue.submit(JobSpec.model_validate(iris_spec(shards=1)))).job.id
            for job_id, tasks in ((three, 3), (one, 1), (three, 3), (one, 1)):
                read = await worker._read_job(job_id)
                assert not isinstance(read, Unclaimable), read
                assert [s.index for s, _ in read.shards] == list(range(tasks))
                assert worker.memo.tasks(job_id) == tasks
            assert worker._tasks_guess == 1

    asyncio.run(scenario())


def test_reads_sent_right_behind_a_settle_are_answered_after_it_and_see_it(
    settings_env: dict[str, str], kazoo: KazooClient, zk_root: str
) -> None:
    """The worker reads the job's other shards right behind its outcome's multi, not after its
    answer (whether its shard was the last to settle is known a round trip sooner): ZooKeeper
    answers one session's requests in order, so those reads see the outcome."""
    settings = settings_from_env(settings_env, worker_id="pipeliner")
    spec = JobSpec.model_validate(iris_spec(model_name="pipelined", shards=2))

    async def scenario() -> None:
        async with started_worker(settings) as worker:
            job_id = (await JobQueue(worker.zk, worker.paths).submit(spec)).job.id
            claim = await worker._find_work()
            assert claim is not None and claim.shard is not None and claim.index is not None
            done = claim.shard.model_copy(update={"state": ShardState.done})
            path = worker.paths.shard(job_id, claim.index)
            behind: list[Any] = []

            def sent() -> None:
                # Queued at once in kazoo (not in a task of its own, which would start later):
                # the order is the one the callback was called in.
                behind.append(worker.zk.client.get_async(path))

            written = await worker.write_versioned(
                path,
                done,
                claim.stat.version,
                claim.session,
                releasing=claim,
                sent=sent,
            )
            assert written is not None and len(behind) == 1
            data, stat = await asyncio.get_running_loop().run_in_executor(
                None, lambda: behind[0].get(True, 30)
            )
            assert json.loads(data)["state"] == "done" and stat.version == written.version
            assert claim.released

    asyncio.run(scenario())


def test_a_group_claim_refused_on_a_record_looks_again_and_follows_the_owners_locks(
    settings_env: dict[str, str], kazoo: KazooClient, zk_root: str
) -> None:
    """The scan read a small job's shards pending, and another worker's group claim came
    first (its locks taken, its records `running`): the group's multi fails whole, takes no
    lock, and watches the locks that claim took, so when the other worker dies (its
    session's locks go) the shards are taken over. Without the watches nothing would wake
    this worker for the job."""
    settings = settings_from_env(settings_env, worker_id="second")
    spec = JobSpec.model_validate(iris_spec(model_name="grouped-race", shards=2))
    other = KazooClient(hosts=settings_env["ZOOTRAIN_ZK_HOSTS"])
    other.start(30)

    async def scenario() -> None:
        async with started_worker(settings) as worker:
            job_id = (await JobQueue(worker.zk, worker.paths).submit(spec)).job.id
            job, job_stat = await worker.queue.read_job(job_id)
            assert shard_groups.groupable(job, settings.worker_group_work)
            shards = await worker.queue.read_shards(job_id, 2)
            for shard, _ in shards:  # the first worker's group claim, as it writes it
                other.create(worker.paths.shard_lock(job_id, shard.index), b"first", ephemeral=True)
                _set_shard(kazoo, zk_root, job_id, shard.index, state="running", attempts=1)
            worker._wake.clear()
            attempt = await worker._claim_group(job, shards, job_stat, time.time())
            assert attempt is not None and attempt.claim is None and attempt.waiting
            assert worker._held == set()
            for shard, _ in shards:
                lock = kazoo.get(worker.paths.shard_lock(job_id, shard.index))[0]
                assert lock == b"first"
            assert not worker._wake.is_set()
            other.stop()  # the first worker dies: its session closes, its locks go
            await asyncio.wait_for(worker._wake.wait(), 30)
            claim = await worker._find_work()
            assert claim is not None and claim.shard is not None and claim.job.id == job_id
            assert claim.shard.attempts == 2  # a takeover: the lost attempt, then ours
            await worker._unlock(claim)

    try:
        asyncio.run(scenario())
    finally:
        other.stop()
        other.close()
