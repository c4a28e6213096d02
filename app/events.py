"""Live job events for Server-Sent Events streams, driven by ZooKeeper watches.

One ``JobFeed`` per job and per process holds the watches on the job record and its shard
records, however many clients stream that job: each client is a subscription the feed fans out
to. Every event's id is ``<mzxid>-<node>``: the changed node's ``mzxid`` (ZooKeeper's global
order of writes) and the node's place in the job (shards by index, the job record last). Writes
of one multi share a zxid, so the node part keeps ids unique and the order total, and the job
record's terminal event comes after the shard writes of its own multi. A client that reconnects
with ``Last-Event-ID`` gets exactly the changes it has not seen: each node whose current state is
newer, once, in order. Changes between two reads of one node collapse into its latest state,
which supersedes them.

Watches are a resource of the ZooKeeper server and of kazoo's tables (kazoo keeps a callback
until its node changes; there is no removing it), so a feed spends them carefully:

- a record in a final state (a terminal job, a shard done, failed or cancelled) is never
  watched: nothing will change it again but its deletion. A record is read first, and only if
  it can still change is a watch set, with ``exists``, whose stat says whether it changed in
  between. A stream of a finished job therefore sets no watch at all;
- each node has one callback per feed, and kazoo's tables are sets: re-arming never adds one;
- when the last stream of a job closes, its feed stays (with its watches) until they fire, and
  re-arms none of them; a stream opened meanwhile shares it. Opening and closing streams, any
  number of times, never holds more than one watch per record that can still change;
- kazoo fires every watch when the connection drops: the feed re-reads once a session is
  connected again (the hub listens for that), however long the outage was; an open stream
  meanwhile gets keep-alive comments;
- a job deleted (by retention, or an operator) ends its streams; reconnecting then gets 404.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from kazoo.exceptions import NoNodeError

from zootrain.paths import Paths
from zootrain.records import JobRecord, ShardRecord, ShardState
from zootrain.zk import TRANSIENT_ERRORS, KazooState, WatchedEvent, ZooKeeper

log = logging.getLogger("zootrain.events")

_FINAL_SHARD = (ShardState.done, ShardState.failed, ShardState.cancelled)


@dataclass(frozen=True, order=True)
class Event:
    zxid: int
    node: int  # shard index; the job record is the last node
    kind: str = field(compare=False)  # "job" or "shard"
    data: dict[str, Any] = field(compare=False)
    final: bool = field(compare=False, default=False)  # the record can no longer change

    @property
    def id(self) -> str:
        return f"{self.zxid}-{self.node}"

    @property
    def position(self) -> tuple[int, int]:
        return (self.zxid, self.node)

    @property
    def terminal(self) -> bool:
        return self.kind == "job" and self.final


# What a subscription's queue carries: an event, or None when the job was deleted.
Subscription = asyncio.Queue[Event | None]


class JobFeed:
    def __init__(self, zk: ZooKeeper, paths: Paths, job: JobRecord, on_idle: Callable[[], None]):
        self.zk = zk
        self.paths = paths
        self.job_id = job.id
        self.tasks = job.spec.tasks
        self.latest: dict[str, Event] = {}  # node path -> its newest event
        self.subscribers: set[Subscription] = set()
        self.armed: set[str] = set()  # watches set and not yet fired
        self.gone = False  # the job was deleted
        self._on_idle = on_idle  # no subscriber and no watch left: the hub forgets us
        self._callbacks = {path: self._callback(path) for path in self._paths()}

    def _paths(self) -> list[str]:
        shards = [self.paths.shard(self.job_id, i) for i in range(self.tasks)]
        return [self.paths.job(self.job_id), *shards]

    @property
    def idle(self) -> bool:
        return not self.subscribers and not self.armed

    async def refresh(self) -> None:
        """Read every record that can still change and is not watched (all, at first)."""
        stale = [
            path
            for path in self._paths()
            if path not in self.armed and not (path in self.latest and self.latest[path].final)
        ]
        await asyncio.gather(*(self._read(path) for path in stale))

    def _callback(self, path: str) -> Callable[[WatchedEvent], None]:
        # One callback object per node for the feed's whole life: kazoo keeps its watchers in
        # sets, so arming the same node again never adds a second one.
        def fired(event: WatchedEvent) -> None:
            self.armed.discard(path)
            if self.subscribers and self.zk.connected and not self.gone:
                asyncio.get_running_loop().create_task(self._reread(path))
            elif self.idle:
                self._on_idle()
            # Disconnected: the hub calls refresh() when a session is connected again.

        return fired

    async def _reread(self, path: str) -> None:
        try:
            await self._read(path)
        except TRANSIENT_ERRORS:
            # The connection dropped again: the next CONNECTED refreshes this node.
            log.info("event feed of %s: re-reading %s waits for the session", self.job_id, path)
        except Exception:
            log.exception("event feed of %s: re-reading %s failed", self.job_id, path)

    async def _read(self, path: str) -> None:
        while True:
            try:
                data, stat = await self.zk.get(path)
            except NoNodeError:
                self._deleted()
                return
            event = self._event(path, data, stat.mzxid)
            if not event.final and self.subscribers and path not in self.armed:
                # Mark first: the watch may fire before the reply reaches us (kazoo runs
                # callbacks and replies on different threads).
                self.armed.add(path)
                try:
                    now = await self.zk.exists(path, watch=self._callbacks[path])
                except BaseException:
                    self.armed.discard(path)
                    raise
                if now is None:
                    self.armed.discard(path)  # an exists watch on a missing node: it fired
                    self._deleted()
                    return
                if now.mzxid != stat.mzxid:
                    self._publish(path, event)
                    continue  # changed between the two reads: read the newer state
            self._publish(path, event)
            return

    def _event(self, path: str, data: bytes, zxid: int) -> Event:
        if path == self.paths.job(self.job_id):
            job = JobRecord.load(data)
            return Event(zxid, self.tasks, "job", job.model_dump(mode="json"), job.state.terminal)
        shard = ShardRecord.load(data)
        record = {"job_id": self.job_id, **shard.model_dump(mode="json")}
        return Event(zxid, shard.index, "shard", record, shard.state in _FINAL_SHARD)

    def _publish(self, path: str, event: Event) -> None:
        previous = self.latest.get(path)
        if previous is not None and previous.zxid >= event.zxid:
            return  # a watch fired (e.g. on a reconnect) but nothing changed
        self.latest[path] = event
        for queue in self.subscribers:
            queue.put_nowait(event)

    def _deleted(self) -> None:
        # Shards are deleted with their job, in one multi: either node gone means the job is.
        if self.gone:
            return
        self.gone = True
        for queue in self.subscribers:
            queue.put_nowait(None)

    def snapshot(self, after: tuple[int, int]) -> list[Event]:
        return sorted(e for e in self.latest.values() if e.position > after)


class EventHub:
    """The feeds of this process, shared by every stream of the same job."""

    def __init__(self, zk: ZooKeeper, paths: Paths) -> None:
        self.zk = zk
        self.paths = paths
        self.feeds: dict[str, JobFeed] = {}
        zk.add_state_listener(self._on_session)

    def _on_session(self, state: KazooState) -> None:
        if state != KazooState.CONNECTED:
            return
        for feed in list(self.feeds.values()):
            if feed.subscribers and not feed.gone:
                asyncio.get_running_loop().create_task(self._refresh(feed))

    async def _refresh(self, feed: JobFeed) -> None:
        try:
            await feed.refresh()
        except TRANSIENT_ERRORS:
            pass  # dropped again: the next CONNECTED comes back here
        except Exception:
            log.exception("event feed of %s: refresh after reconnecting failed", feed.job_id)

    @contextlib.asynccontextmanager
    async def subscribe(self, job: JobRecord) -> AsyncIterator[tuple[JobFeed, Subscription]]:
        """A subscription to the job's feed. Entering reads what the feed does not watch (the
        caller's ZooKeeper deadline applies: a stream opened during an outage fails fast)."""
        feed = self.feeds.get(job.id)
        if feed is None or feed.gone:
            feed = JobFeed(self.zk, self.paths, job, lambda: self._forget(job.id))
            self.feeds[job.id] = feed
        queue: Subscription = asyncio.Queue()
        feed.subscribers.add(queue)
        try:
            await feed.refresh()
            yield feed, queue
        finally:
            feed.subscribers.discard(queue)
            if feed.idle:
                self._forget(job.id)

    def _forget(self, job_id: str) -> None:
        feed = self.feeds.get(job_id)
        if feed is not None and feed.idle:
            del self.feeds[job_id]


async def stream(
    feed: JobFeed, queue: Subscription, last_event_id: tuple[int, int], ping: float
) -> AsyncIterator[Event | None]:
    """Yield every change after ``last_event_id`` (zxid, node), then stop at the job's end (or
    its deletion). ``None`` is a keep-alive, at least every ``ping`` seconds."""
    sent = last_event_id
    if feed.gone:
        return
    pending: list[Event | None] = list(feed.snapshot(after=sent))
    final = feed.latest.get(feed.paths.job(feed.job_id))
    if not pending and final is not None and final.terminal:
        return  # the client saw the end already
    while True:
        for event in pending:
            if event is None:
                return  # the job was deleted
            if event.position <= sent:
                continue
            sent = event.position
            yield event
            if event.terminal:
                return
        try:
            first = await asyncio.wait_for(queue.get(), timeout=ping)
        except TimeoutError:
            yield None  # keep-alive for proxies, and through a ZooKeeper outage
            pending = []
            continue
        received = [first]
        while not queue.empty():
            received.append(queue.get_nowait())
        events = sorted(e for e in received if e is not None)
        pending = [*events, None] if None in received else list(events)
