"""QueueGauge: backpressure's queue size without a ZooKeeper read on every submit."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from zootrain.queue import QueueGauge


class FakeZooKeeper:
    """Answers exists(queue) with a stat whose numChildren is ``children``; counts reads."""

    def __init__(self, children: int) -> None:
        self.children = children
        self.reads = 0

    async def exists(self, path: str) -> Any:
        self.reads += 1
        return SimpleNamespace(numChildren=self.children)

    async def retry(self, operation: Any) -> Any:
        return await operation()


def gauge(zk: FakeZooKeeper, refresh: float = 3600.0) -> QueueGauge:
    return QueueGauge(zk, "/q", refresh=refresh)  # type: ignore[arg-type]


def test_reads_once_then_counts_its_own_submits() -> None:
    async def scenario() -> None:
        zk = FakeZooKeeper(2)
        g = gauge(zk)
        assert await g.full(10) is None
        assert zk.reads == 1
        for _ in range(5):
            g.added()
            assert await g.full(10) is None
        assert zk.reads == 1  # no read per submit
        assert g.estimate == 7

    asyncio.run(scenario())


def test_a_refusal_is_confirmed_by_a_fresh_read() -> None:
    async def scenario() -> None:
        zk = FakeZooKeeper(2)
        g = gauge(zk)
        assert await g.full(3) is None
        g.added()  # the estimate reaches the limit
        zk.children = 3
        assert await g.full(3) == 3  # confirmed: refused
        assert zk.reads == 2
        zk.children = 2  # a job finished elsewhere: room again, no stale refusal
        assert await g.full(3) is None
        assert g.estimate == 2

    asyncio.run(scenario())


def test_other_processes_submits_are_seen_after_the_refresh_interval() -> None:
    async def scenario() -> None:
        zk = FakeZooKeeper(0)
        g = gauge(zk, refresh=0.0)
        assert await g.full(100) is None
        zk.children = 50  # submitted through other job-service processes
        assert await g.full(100) is None  # answers from the estimate, refreshes behind it
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert g.estimate == 50

    asyncio.run(scenario())
