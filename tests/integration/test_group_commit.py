"""Group commit (zootrain.group_commit) against a real ZooKeeper, and a proxy that holds a
multi: multis ready together go as one, yet each member is answered as if it had been alone."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import NodeExistsError

from testkit.zkproxy import MULTI, ZooKeeperProxy
from testkit.zkserver import ZooKeeperCluster
from tests.support.specs import iris_spec
from zootrain.group_commit import GroupCommit
from zootrain.paths import Paths
from zootrain.queue import JobQueue
from zootrain.spec import JobSpec
from zootrain.zk import (
    RequestDeadlineExceeded,
    TransactionFailed,
    WriteOutcomeUnknown,
    ZooKeeper,
    request_deadline,
)

pytestmark = pytest.mark.integration


def scenario(hosts: str, body: Callable[[ZooKeeper], Awaitable[None]]) -> None:
    async def main() -> None:
        zk = ZooKeeper(hosts, session_timeout=30)
        await zk.start()
        try:
            await body(zk)
        finally:
            await zk.stop()

    asyncio.run(asyncio.wait_for(main(), 120))


def test_concurrent_submits_share_multis_and_each_job_is_whole(
    zookeeper: ZooKeeperCluster, kazoo: KazooClient, zk_root: str
) -> None:
    paths = Paths(zk_root)
    spec = JobSpec.model_validate(iris_spec("grouped", shards=3))

    async def body(zk: ZooKeeper) -> None:
        group = GroupCommit(zk)
        queue = JobQueue(zk, paths, group=group)
        await queue.ensure_layout()
        submitted = await asyncio.gather(*(queue.submit(spec) for _ in range(120)))
        assert len({s.job.id for s in submitted}) == 120
        assert all(s.created for s in submitted)
        # Every submit was ready in the same turn of the loop: they went in multis of up to 64.
        assert group.members == 120
        assert group.multis < 120 / 4, group.multis

    scenario(zookeeper.hosts, body)
    jobs = kazoo.get_children(f"{zk_root}/jobs")
    assert len(jobs) == 120
    assert len(kazoo.get_children(f"{zk_root}/queue")) == 120
    for job_id in jobs:
        shards = kazoo.get_children(f"{zk_root}/jobs/{job_id}/shards")
        assert sorted(shards) == ["0000", "0001", "0002"]


def test_one_idempotency_key_in_one_batch_makes_one_job(
    zookeeper: ZooKeeperCluster, kazoo: KazooClient, zk_root: str
) -> None:
    # Ten submits with one key land in one combined multi, where the second create of the key
    # fails on the first's: the first must apply, and the nine must replay it.
    paths = Paths(zk_root)
    spec = JobSpec.model_validate(iris_spec("keyed"))

    async def body(zk: ZooKeeper) -> None:
        group = GroupCommit(zk, max_in_flight=1)
        queue = JobQueue(zk, paths, group=group)
        await queue.ensure_layout()
        others = [queue.submit(spec) for _ in range(5)]  # fill the first multis
        keyed = [queue.submit(spec, idempotency_key="same", owner="o") for _ in range(10)]
        submitted = await asyncio.gather(*others, *keyed)
        assert group.resent > 0  # a combined multi failed on the key, and was sent again
        answers = submitted[5:]
        assert len({s.job.id for s in answers}) == 1
        assert [s.created for s in answers].count(True) == 1

    scenario(zookeeper.hosts, body)
    assert len(kazoo.get_children(f"{zk_root}/jobs")) == 6


def test_a_failing_member_is_refused_alone_and_the_others_apply(
    zookeeper: ZooKeeperCluster, kazoo: KazooClient, zk_root: str
) -> None:
    kazoo.ensure_path(f"{zk_root}/taken")

    async def body(zk: ZooKeeper) -> None:
        group = GroupCommit(zk, max_in_flight=1)

        def multi(*names: str) -> Awaitable[list[object]]:
            tx = zk.transaction()
            for name in names:
                tx.create(f"{zk_root}/{name}")
            return group.commit(tx)

        # All six are ready in one turn: one multi, which fails on b, then on e (whose d1 is
        # d's in the same multi); each failing member is answered from a multi of its own.
        results = await asyncio.gather(
            multi("warm-up"),
            multi("a1", "a2"),
            multi("b1", "taken"),
            multi("c1"),
            multi("d1"),  # the same path as e's: e is told of the conflict
            multi("e0", "d1"),
            return_exceptions=True,
        )
        assert results[0] == [f"{zk_root}/warm-up"]
        assert results[1] == [f"{zk_root}/a1", f"{zk_root}/a2"]
        failed = results[2]
        assert isinstance(failed, TransactionFailed), failed
        assert failed.index == 1 and isinstance(failed.error, NodeExistsError)
        assert results[3] == [f"{zk_root}/c1"]
        assert results[4] == [f"{zk_root}/d1"]
        clash = results[5]
        assert isinstance(clash, TransactionFailed) and clash.index == 1, clash

    scenario(zookeeper.hosts, body)
    names = set(kazoo.get_children(zk_root))
    assert {"warm-up", "a1", "a2", "c1", "d1", "taken"} <= names
    assert not {"b1", "e0"} & names  # a refused member wrote nothing


def test_a_member_refused_for_an_earlier_members_write_hears_it_after_that_write(
    zookeeper: ZooKeeperCluster, kazoo: KazooClient, zk_root: str
) -> None:
    # Two submits with one Idempotency-Key in one multi: the second's create of the key fails
    # on the first's, which did not apply either (the multi is atomic). The second must not
    # be told before the first has applied: told at once, its replay would read no key.
    kazoo.ensure_path(zk_root)

    async def body(zk: ZooKeeper) -> None:
        group = GroupCommit(zk, max_in_flight=1)
        heard: list[str] = []

        async def create(tag: str) -> None:
            tx = zk.transaction()
            tx.create(f"{zk_root}/{tag}")
            tx.create(f"{zk_root}/key")
            try:
                await group.commit(tx)
                heard.append(f"{tag} applied")
            except TransactionFailed as failed:
                heard.append(f"{tag} refused")
                assert failed.index == 1 and isinstance(failed.error, NodeExistsError)
                assert await zk.exists(f"{zk_root}/key") is not None

        await asyncio.gather(create("first"), create("second"))
        assert heard == ["first applied", "second refused"]
        assert group.resent == 2

    scenario(zookeeper.hosts, body)
    assert set(kazoo.get_children(zk_root)) == {"first", "key"}


def test_a_combined_multi_stays_under_the_byte_cap(
    zookeeper: ZooKeeperCluster, kazoo: KazooClient, zk_root: str
) -> None:
    async def body(zk: ZooKeeper) -> None:
        group = GroupCommit(zk, max_in_flight=1, max_bytes=64 * 1024)
        await zk.ensure_path(zk_root)

        def multi(index: int) -> Awaitable[list[object]]:
            tx = zk.transaction()
            tx.create(f"{zk_root}/n{index}", b"x" * 20_000)
            return group.commit(tx)

        await asyncio.gather(*(multi(i) for i in range(20)))
        # Twenty of 20 kB, ready together: multis of three at most (64 kB with the overhead).
        assert group.multis == 7, group.multis

    scenario(zookeeper.hosts, body)
    assert len(kazoo.get_children(zk_root)) == 20


def test_deadlines_a_member_waiting_is_withdrawn_and_a_member_sent_is_unknown(
    zookeeper: ZooKeeperCluster, proxy: ZooKeeperProxy, kazoo: KazooClient, zk_root: str
) -> None:
    kazoo.ensure_path(zk_root)
    rule = proxy.hold_next(MULTI, f"{zk_root}/", b"held")

    async def body(zk: ZooKeeper) -> None:
        group = GroupCommit(zk, max_in_flight=1)

        async def create(name: str) -> list[object]:
            tx = zk.transaction()
            tx.create(f"{zk_root}/{name}")
            with request_deadline(1.0):
                return await group.commit(tx)

        held = asyncio.ensure_future(create("held"))
        assert await asyncio.to_thread(rule.matched.wait, 30)
        waiting = asyncio.ensure_future(create("waiting"))
        results = await asyncio.gather(held, waiting, return_exceptions=True)
        # "held" was sent and not answered: it may still apply. "waiting" was never sent
        # (one multi in flight at most): nothing of it can apply.
        assert type(results[0]) is WriteOutcomeUnknown, results[0]
        assert type(results[1]) is RequestDeadlineExceeded, results[1]
        rule.released.set()
        # Once the held multi is answered, the next member goes, alone and at once.
        assert await create("after") == [f"{zk_root}/after"]

    scenario(proxy.address, body)
    assert rule.matched.is_set()
    assert set(kazoo.get_children(zk_root)) == {"held", "after"}
