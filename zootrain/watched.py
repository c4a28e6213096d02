"""Watched records: znodes read once, kept in memory, dropped when ZooKeeper says they changed.

A predict resolves its version from the model's node (its aliases) and the version's record.
Reading both on every request costs two round trips; these records change rarely (an alias
move, a delete), so the job service keeps them here and reads each again only after a watch
says it changed. The rules that keep this correct:

- An entry is kept only while a watch set by our own read stands on its node. ZooKeeper fires
  a watch once, for the first change after the read that set it, so a kept entry is at most one
  undelivered notification old.
- A read in flight while anything is invalidated (a watch firing, our own write, a session
  change) is not kept: its answer may predate the change, and the watch it set may be the one
  that already fired. A global epoch says so, not a per-key one: simpler, and the only cost is
  an extra read when invalidations race reads.
- Our own writes drop their nodes as soon as the commit returns (``forget``): the watch event
  comes asynchronously, and the process that made a change must see it on its next request.
  Other processes see it when the watch is delivered (docs/design.md gives that window).
- A missing node is never kept (a getData on a missing node sets no watch, so nothing would
  tell us it appeared): an unknown version answers 404 from ZooKeeper itself every time.
- While the session is not connected we hear of no change, and after an expiry the server has
  forgotten our watches: any state other than CONNECTED empties the cache and forgets which
  nodes are watched. A reconnect therefore starts cold rather than trusting that kazoo
  re-registered every watch.
- The cache holds at most ``capacity`` entries, least recently used dropped first. An evicted
  node's watch still stands, so reading it again sets no second watch (kazoo would keep both
  callbacks until the node changed: a leak for records that never change).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TypeVar

from zootrain.zk import KazooState, WatchedEvent, ZnodeStat, ZooKeeper

T = TypeVar("T")


class WatchedRecords:
    """Node data (``get``) and child lists (``children``) kept under watches, by path."""

    def __init__(self, zk: ZooKeeper, capacity: int = 10_000) -> None:
        self.zk = zk
        self.capacity = capacity
        # Keys are ("data" | "children", path): a node's two kinds of watch fire separately.
        self._entries: OrderedDict[tuple[str, str], Any] = OrderedDict()
        self._watched: set[tuple[str, str]] = set()  # keys with a watch of ours standing
        self._epoch = 0  # bumped by every invalidation
        self.hits = 0
        self.reads = 0  # round trips to ZooKeeper made through the cache
        self._listeners: list[Callable[[str], None]] = []
        zk.add_state_listener(self._on_state)

    def add_listener(self, listener: Callable[[str], None]) -> None:
        """``listener(path)`` runs on the loop after a watch dropped ``path`` ("" when a
        session change emptied the cache): for metrics, and for tests to wait on."""
        self._listeners.append(listener)

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, path: str, parse: Callable[[bytes], T]) -> tuple[T, ZnodeStat]:
        """``path``'s data, parsed, and its stat. NoNodeError passes through, uncached."""
        found: tuple[T, ZnodeStat] = await self._fetch(
            ("data", path),
            lambda watch: self.zk.get(path, watch),
            lambda answer: (parse(answer[0]), answer[1]),
        )
        return found

    async def children(self, path: str) -> list[str]:
        """``path``'s children (a new list each time). NoNodeError passes through, uncached."""
        found: list[str] = await self._fetch(
            ("children", path), lambda watch: self.zk.get_children(path, watch), list
        )
        return list(found)

    def forget(self, path: str) -> None:
        """Drop ``path``'s entries now: called by this process after it changed the node."""
        self._epoch += 1
        self._entries.pop(("data", path), None)
        self._entries.pop(("children", path), None)

    def clear(self) -> None:
        self._epoch += 1
        self._entries.clear()
        self._watched.clear()
        self._tell("")

    async def _fetch(
        self,
        key: tuple[str, str],
        read: Callable[[Callable[[WatchedEvent], None] | None], Any],
        keep: Callable[[Any], Any],
    ) -> Any:
        if key in self._entries:
            self._entries.move_to_end(key)
            self.hits += 1
            return self._entries[key]
        epoch = self._epoch
        # One standing watch per node: an evicted node's watch still covers a re-read.
        watch = None if key in self._watched else self._watcher(key)
        self.reads += 1
        answer = await read(watch)
        value = keep(answer)
        if watch is not None and epoch == self._epoch:
            self._watched.add(key)
        if epoch == self._epoch and key in self._watched:
            self._entries[key] = value
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)
        return value

    def _watcher(self, key: tuple[str, str]) -> Callable[[WatchedEvent], None]:
        def fired(event: WatchedEvent) -> None:  # on the loop (the bridge hands it over)
            # Any event, a change, a delete or a session notice, ends this watch.
            self._epoch += 1
            self._entries.pop(key, None)
            self._watched.discard(key)
            self._tell(key[1])

        return fired

    def _tell(self, path: str) -> None:
        for listener in list(self._listeners):
            listener(path)

    def _on_state(self, state: KazooState) -> None:
        if state != KazooState.CONNECTED:
            self.clear()
