"""ZooKeeper seen from the benchmark's side: a kazoo session that waits on watches, and the
server's own counters (mntr) to tell when it has gone quiet.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from typing import Any

from kazoo.client import KazooClient
from kazoo.protocol.states import WatchedEvent, ZnodeStat

from testkit.zkserver import ZooKeeperCluster, four_letter


def kazoo_client(hosts: str) -> KazooClient:
    client = KazooClient(hosts=hosts, timeout=10)
    client.start(30)
    return client


def close_kazoo(client: KazooClient) -> None:
    with contextlib.suppress(Exception):
        client.stop()
        client.close()


class Observer:
    """A kazoo session driven from asyncio: reads, and waits on data watches (never polls)."""

    def __init__(self, hosts: str) -> None:
        self.client = KazooClient(hosts=hosts, timeout=10)
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> Observer:
        self._loop = asyncio.get_running_loop()
        await self._loop.run_in_executor(None, self.client.start, 30)
        return self

    async def stop(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, close_kazoo, self.client)

    def _bridge(self, result: Any) -> asyncio.Future[Any]:
        loop = self._loop
        assert loop is not None, "start() first"
        future: asyncio.Future[Any] = loop.create_future()

        def settle(outcome: Any) -> None:
            if future.done():
                return
            if outcome.successful():
                future.set_result(outcome.value)
            else:
                future.set_exception(outcome.exception)

        def done(outcome: Any) -> None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(settle, outcome)

        result.rawlink(done)
        return future

    async def get(
        self, path: str, watch: Callable[[WatchedEvent], None] | None = None
    ) -> tuple[bytes, ZnodeStat]:
        value: tuple[bytes, ZnodeStat] = await self._bridge(self.client.get_async(path, watch))
        return value

    async def wait_until(
        self, path: str, predicate: Callable[[dict[str, Any]], bool]
    ) -> tuple[dict[str, Any], ZnodeStat]:
        """Read ``path`` with a data watch until its JSON satisfies ``predicate``."""
        loop = asyncio.get_running_loop()
        while True:
            fired = asyncio.Event()

            def wake(_: WatchedEvent, fired: asyncio.Event = fired) -> None:
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(fired.set)

            data, stat = await self.get(path, wake)
            record: dict[str, Any] = json.loads(data)
            if predicate(record):
                return record, stat
            await fired.wait()


def zk_port(zk: ZooKeeperCluster) -> int:
    return zk.nodes[0].client_port


def zk_mntr(zk: ZooKeeperCluster) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in four_letter(zk_port(zk), "mntr").splitlines():
        key, _, value = line.partition("\t")
        values[key] = value
    return values


async def zk_idle(zk: ZooKeeperCluster, *, seconds: float = 1.0, packets: int = 10) -> bool:
    """Whether ZooKeeper receives (almost) no requests for ``seconds``: every client idle."""
    loop = asyncio.get_running_loop()

    def received() -> int:
        return int(zk_mntr(zk).get("zk_packets_received", "0"))

    before = await loop.run_in_executor(None, received)
    await asyncio.sleep(seconds)
    return await loop.run_in_executor(None, received) - before <= packets


async def wait_quiet(
    zk: ZooKeeperCluster, *, window: float = 0.25, packets: int = 6, timeout: float = 300
) -> float:
    """Wait until ZooKeeper receives almost no requests (workers done scanning); seconds waited."""
    loop = asyncio.get_running_loop()
    started = time.monotonic()

    def received() -> int:
        return int(zk_mntr(zk).get("zk_packets_received", "0"))

    last = await loop.run_in_executor(None, received)
    while time.monotonic() - started < timeout:
        await asyncio.sleep(window)
        now = await loop.run_in_executor(None, received)
        if now - last <= packets:
            break
        last = now
    # The last window was the quiet one.
    return max(0.0, time.monotonic() - started - window)
