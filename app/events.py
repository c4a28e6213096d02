"""Live job events for Server-Sent Events streams, driven by ZooKeeper watches.

One ``JobFeed`` per job and per process holds the watches on the job record and its shard
records, however many clients stream that job: each client is a queue the feed fans out to.
Every event's id is ``<mzxid>-<node>``: the changed node's ``mzxid`` (ZooKeeper's global order
of writes) and the node's place in the job (shards by index, the job record last). Writes of one
multi share a zxid, so the node part keeps ids unique and the order total, and the job record's
terminal event comes after the shard writes of its own multi. A client that reconnects with
``Last-Event-ID`` gets exactly the changes it has not seen: each node whose current state is
newer, once, in order. Changes between two reads of one node collapse into its latest state,
which supersedes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

from kazoo.exceptions import NoNodeError

from zootrain.paths import Paths
from zootrain.records import JobRecord, JobState, ShardRecord
from zootrain.zk import TRANSIENT_ERRORS, WatchedEvent, ZooKeeper

log = logging.getLogger("zootrain.events")


@dataclass(frozen=True, order=True)
class Event:
    zxid: int
    node: int  # shard index; the job record is the last node
    kind: str = field(compare=False)  # "job" or "shard"
    data: dict[str, Any] = field(compare=False)

    @property
    def id(self) -> str:
        return f"{self.zxid}-{self.node}"

    @property
    def position(self) -> tuple[int, int]:
        return (self.zxid, self.node)

    @property
    def terminal(self) -> bool:
        # The record was validated when it was read: no second validation for every event.
        return self.kind == "job" and JobState(self.data["state"]).terminal


class JobFeed:
    def __init__(self, zk: ZooKeeper, paths: Paths, job: JobRecord) -> None:
        self.zk = zk
        self.paths = paths
        self.job_id = job.id
        self.tasks = job.spec.tasks
        self.latest: dict[str, Event] = {}  # node path -> its newest event
        self.subscribers: set[asyncio.Queue[Event]] = set()
        self._closed = False

    async def start(self) -> None:
        await asyncio.gather(*(self._read(path) for path in self._paths()))

    def _paths(self) -> list[str]:
        shards = [self.paths.shard(self.job_id, i) for i in range(self.tasks)]
        return [self.paths.job(self.job_id), *shards]

    async def _read(self, path: str) -> None:
        def changed(event: WatchedEvent) -> None:
            if not self._closed:
                asyncio.get_running_loop().create_task(self._reread(path))

        try:
            data, stat = await self.zk.retry(
                lambda: self.zk.get(path, watch=changed), deadline=self.zk.session_timeout * 3
            )
        except NoNodeError:
            return  # the job was deleted (retention): nothing more will happen to it
        if path == self.paths.job(self.job_id):
            node, kind, record = self.tasks, "job", JobRecord.load(data).model_dump(mode="json")
        else:
            shard = ShardRecord.load(data)
            record = {"job_id": self.job_id, **shard.model_dump(mode="json")}
            node, kind = shard.index, "shard"
        event = Event(stat.mzxid, node, kind, record)
        previous = self.latest.get(path)
        if previous is not None and previous.zxid >= event.zxid:
            return  # a watch fired (e.g. on a reconnect) but nothing changed
        self.latest[path] = event
        for queue in self.subscribers:
            queue.put_nowait(event)

    async def _reread(self, path: str) -> None:
        try:
            await self._read(path)
        except TRANSIENT_ERRORS:
            log.warning("event feed of %s lost a watch on %s", self.job_id, path)

    def snapshot(self, after: tuple[int, int]) -> list[Event]:
        return sorted(e for e in self.latest.values() if e.position > after)

    def close(self) -> None:
        self._closed = True


class EventHub:
    """The feeds of this process, shared by every stream of the same job."""

    def __init__(self, zk: ZooKeeper, paths: Paths) -> None:
        self.zk = zk
        self.paths = paths
        self.feeds: dict[str, JobFeed] = {}
        self._starting: dict[str, asyncio.Future[JobFeed]] = {}

    @contextlib.asynccontextmanager
    async def subscribe(self, job: JobRecord) -> Any:
        feed = await self._feed(job)
        queue: asyncio.Queue[Event] = asyncio.Queue()
        feed.subscribers.add(queue)
        try:
            yield feed, queue
        finally:
            feed.subscribers.discard(queue)
            if not feed.subscribers and self.feeds.get(job.id) is feed:
                del self.feeds[job.id]
                feed.close()

    async def _feed(self, job: JobRecord) -> JobFeed:
        if job.id in self.feeds:
            return self.feeds[job.id]
        if job.id in self._starting:  # another stream is setting this feed up
            return await asyncio.shield(self._starting[job.id])
        starting: asyncio.Future[JobFeed] = asyncio.get_running_loop().create_future()
        self._starting[job.id] = starting
        try:
            feed = JobFeed(self.zk, self.paths, job)
            await feed.start()
            self.feeds[job.id] = feed
            starting.set_result(feed)
            return feed
        except BaseException as exc:
            starting.set_exception(exc)
            starting.exception()  # retrieved: waiters re-raise it, nobody else must
            raise
        finally:
            del self._starting[job.id]


async def stream(hub: EventHub, job: JobRecord, last_event_id: tuple[int, int], ping: float) -> Any:
    """Yield every change after ``last_event_id`` (zxid, node), then stop at the job's end."""
    async with hub.subscribe(job) as (feed, queue):
        sent = last_event_id
        pending = feed.snapshot(after=sent)
        final = feed.latest.get(hub.paths.job(job.id))
        if not pending and final is not None and final.terminal:
            return  # the client saw the end already
        while True:
            for event in pending:
                if event.position <= sent:
                    continue
                sent = event.position
                yield event
                if event.terminal:
                    return
            try:
                first = await asyncio.wait_for(queue.get(), timeout=ping)
            except TimeoutError:
                yield None  # keep-alive for proxies
                pending = []
                continue
            pending = [first]
            while not queue.empty():
                pending.append(queue.get_nowait())
            pending.sort()
