"""zootrain.watched's rules, against a fake session whose reads and watches the test drives.

The integration test (tests/integration/test_serving_cache.py) shows the same against a real
ZooKeeper; here the orderings that are hard to provoke there are forced one by one."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from kazoo.exceptions import NoNodeError
from kazoo.protocol.states import EventType, KazooState, WatchedEvent

from zootrain.watched import WatchedRecords

Watch = Callable[[WatchedEvent], None]


class FakeZooKeeper:
    """Just what WatchedRecords calls: get / get_children with a watch, state listeners."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self.watches: dict[str, list[Watch]] = {}
        self.reads = 0
        self.gate: asyncio.Event | None = None  # set: reads wait for it (a read in flight)
        self.listeners: list[Callable[[KazooState], None]] = []

    def add_state_listener(self, listener: Callable[[KazooState], None]) -> None:
        self.listeners.append(listener)

    async def get(self, path: str, watch: Watch | None = None) -> tuple[bytes, Any]:
        self.reads += 1
        value = self.data.get(path)
        if value is None:
            raise NoNodeError(path)  # and, as in ZooKeeper, no watch is left
        if watch is not None:
            self.watches.setdefault(path, []).append(watch)
        if self.gate is not None:
            await self.gate.wait()  # answered, not yet back: the watch already stands
        return value, None

    async def get_children(self, path: str, watch: Watch | None = None) -> list[str]:
        self.reads += 1
        if watch is not None:
            self.watches.setdefault(path, []).append(watch)
        return sorted(p.rsplit("/", 1)[1] for p in self.data if p.startswith(path + "/"))

    def change(self, path: str, value: bytes | None) -> None:
        if value is None:
            self.data.pop(path, None)
        else:
            self.data[path] = value
        kind = EventType.DELETED if value is None else EventType.CHANGED
        for watch in self.watches.pop(path, []):
            watch(WatchedEvent(kind, KazooState.CONNECTED, path))

    def state(self, state: KazooState) -> None:
        for listener in self.listeners:
            listener(state)


def run(scenario: Callable[[FakeZooKeeper, WatchedRecords], Any], capacity: int = 100) -> None:
    async def main() -> None:
        zk = FakeZooKeeper()
        await scenario(zk, WatchedRecords(zk, capacity))  # type: ignore[arg-type]

    asyncio.run(main())


def decode(data: bytes) -> str:
    return data.decode()


def test_a_kept_record_is_read_once_and_again_after_its_watch_fires() -> None:
    async def scenario(zk: FakeZooKeeper, cache: WatchedRecords) -> None:
        zk.data["/m"] = b"one"
        for _ in range(5):
            assert (await cache.get("/m", decode))[0] == "one"
        assert zk.reads == 1 and cache.hits == 4
        zk.change("/m", b"two")
        assert (await cache.get("/m", decode))[0] == "two"
        assert zk.reads == 2

    run(scenario)


def test_a_read_in_flight_when_the_watch_fires_is_not_kept() -> None:
    async def scenario(zk: FakeZooKeeper, cache: WatchedRecords) -> None:
        zk.data["/m"] = b"old"
        zk.gate = asyncio.Event()
        reading = asyncio.ensure_future(cache.get("/m", decode))
        await asyncio.sleep(0)  # the read has been answered "old" and waits to return
        zk.change("/m", b"new")  # the watch it set fires before the answer is handed back
        zk.gate.set()
        zk.gate = None
        assert (await reading)[0] == "old"
        assert (await cache.get("/m", decode))[0] == "new", "a stale read was kept"

    run(scenario)


def test_forget_drops_at_once_and_a_read_in_flight_is_not_kept() -> None:
    async def scenario(zk: FakeZooKeeper, cache: WatchedRecords) -> None:
        zk.data["/m"] = b"old"
        await cache.get("/m", decode)
        zk.data["/m"] = b"new"  # our own write: its watch event has not arrived yet
        cache.forget("/m")
        assert (await cache.get("/m", decode))[0] == "new"
        # A read answered before our write, handed back after forget(): not kept.
        zk.data["/n"] = b"old"
        zk.gate = asyncio.Event()
        reading = asyncio.ensure_future(cache.get("/n", decode))
        await asyncio.sleep(0)
        zk.data["/n"] = b"new"
        cache.forget("/n")
        zk.gate.set()
        zk.gate = None
        assert (await reading)[0] == "old"
        assert (await cache.get("/n", decode))[0] == "new"

    run(scenario)


def test_a_missing_node_is_not_kept() -> None:
    async def scenario(zk: FakeZooKeeper, cache: WatchedRecords) -> None:
        with pytest.raises(NoNodeError):
            await cache.get("/m/v-1", decode)
        zk.data["/m/v-1"] = b"published"  # no watch could have told us
        assert (await cache.get("/m/v-1", decode))[0] == "published"

    run(scenario)


def test_children_are_dropped_when_their_watch_fires() -> None:
    async def scenario(zk: FakeZooKeeper, cache: WatchedRecords) -> None:
        zk.data["/m/v-1"] = b""
        assert await cache.children("/m") == ["v-1"]
        assert await cache.children("/m") == ["v-1"] and zk.reads == 1
        zk.data["/m/v-2"] = b""
        zk.change("/m", b"")  # the child watch fires on the parent's path
        assert await cache.children("/m") == ["v-1", "v-2"]

    run(scenario)


def test_the_cache_is_bounded_and_a_re_read_sets_no_second_watch() -> None:
    async def scenario(zk: FakeZooKeeper, cache: WatchedRecords) -> None:
        for n in range(5):
            zk.data[f"/m/v-{n}"] = str(n).encode()
            await cache.get(f"/m/v-{n}", decode)
        assert len(cache) == 3
        await cache.get("/m/v-0", decode)  # evicted: read again
        assert len(cache) == 3 and zk.reads == 6
        assert len(zk.watches["/m/v-0"]) == 1, "an evicted node's watch still stands"
        zk.change("/m/v-0", b"changed")  # and it still drops the entry
        assert (await cache.get("/m/v-0", decode))[0] == "changed"

    run(scenario, capacity=3)


@pytest.mark.parametrize("state", [KazooState.SUSPENDED, KazooState.LOST])
def test_a_session_change_empties_the_cache(state: KazooState) -> None:
    async def scenario(zk: FakeZooKeeper, cache: WatchedRecords) -> None:
        zk.data["/m"] = b"one"
        await cache.get("/m", decode)
        heard: list[str] = []
        cache.add_listener(heard.append)
        zk.state(state)
        assert len(cache) == 0 and heard == [""]
        zk.state(KazooState.CONNECTED)
        await cache.get("/m", decode)
        assert zk.reads == 2
        # Kept again under a new watch (the old ones are not trusted).
        assert len(zk.watches["/m"]) == 2 and len(cache) == 1

    run(scenario)
