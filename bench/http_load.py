"""The job service over HTTP: a job followed from its POST to its end, and submits at a steady
load from many keep-alive clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
from kazoo.protocol.states import ZnodeStat

from bench.harness import AUTH, TERMINAL, BenchStack, Context, api_client
from bench.zk_side import Observer
from zootrain.paths import Paths


@dataclass
class JobRun:
    """One job submitted over HTTP and followed by watches until it finished."""

    id: str
    posted: float  # wall clock (time.time()) when the POST was sent
    accepted: float  # ... when its 202 arrived
    finished: float  # ... when the terminal state was seen
    running: list[float]  # per shard: wall time its `running` write was applied
    missed: int  # shards seen only after `running` (their started_at stands in)
    stalled: bool  # no shard was running within the stall limit: workers were restarted
    job: dict[str, Any]
    job_stat: ZnodeStat
    shards: list[dict[str, Any]]
    shard_stats: list[ZnodeStat]

    @property
    def state(self) -> str:
        return str(self.job["state"])

    @property
    def published_after_last_done(self) -> float:
        """Seconds from the last shard's `done` write to the job's terminal write (server)."""
        return (self.job_stat.mtime - max(s.mtime for s in self.shard_stats)) / 1000


def timestamp(value: str | None) -> float | None:
    return datetime.fromisoformat(value).timestamp() if value else None


Recover = Callable[[], Awaitable[None]]


def restarter(ctx: Context, stack: BenchStack, what: str) -> Recover:
    """A ``recover`` for run_job: replace the stack's workers (they missed a queue change)."""

    async def recover() -> None:
        ctx.log(f"{what}: a job went unclaimed by idle workers: restarting them")
        ctx.shared[f"stalls:{what}"] = ctx.shared.get(f"stalls:{what}", 0) + 1
        await asyncio.get_running_loop().run_in_executor(None, stack.restart_workers)

    return recover


@contextlib.asynccontextmanager
async def two_worker_stack(
    ctx: Context, name: str
) -> AsyncIterator[tuple[BenchStack, httpx.AsyncClient, Observer, Recover]]:
    """A fresh ZooKeeper server with the job service and two workers on it: the stack, an HTTP
    client for the job service, an Observer on the server, and a ``recover`` for run_job that
    restarts the workers."""
    with ctx.zookeeper(name) as zk, ctx.stack(name, zk) as stack:
        stack.start_api_server()
        stack.start_worker("worker")
        stack.start_worker("worker")
        observer = await Observer(zk.hosts).start()
        try:
            async with api_client(stack.url) as client:
                yield stack, client, observer, restarter(ctx, stack, name)
        finally:
            await observer.stop()


async def run_job(
    client: httpx.AsyncClient,
    observer: Observer,
    paths: Paths,
    spec: dict[str, Any],
    *,
    stall: float | None = None,
    recover: Recover | None = None,
    idle: Callable[[], Awaitable[bool]] | None = None,
) -> JobRun:
    """Submit ``spec``, then follow its shards and job by data watches until it ends.

    A shard's dispatch time is when ZooKeeper applied its `running` write (the znode's mtime,
    same clock as ours on one machine), read by the watch that saw the change; a shard already
    past `running` when first read falls back to its record's started_at (counted in missed).

    When no shard is running ``stall`` seconds after the 202 (and, with ``idle``, the workers
    are idle then: not still scanning a long queue), they missed the job: ``recover()`` (e.g.
    restart them) runs, and the run is marked stalled.
    """
    posted = time.time()
    response = await client.post("/v1/jobs", json=spec)
    accepted = time.time()
    if response.status_code != 202:
        raise RuntimeError(f"submit answered {response.status_code}: {response.text}")
    job_id = response.json()["id"]
    missed = 0

    async def running(index: int) -> float:
        nonlocal missed
        record, stat = await observer.wait_until(
            paths.shard(job_id, index), lambda r: r["state"] != "pending"
        )
        if record["state"] == "running":
            return float(stat.mtime) / 1000
        missed += 1
        return timestamp(record.get("started_at")) or float(stat.mtime) / 1000

    async def finished() -> tuple[dict[str, Any], ZnodeStat, float]:
        record, stat = await observer.wait_until(
            paths.job(job_id), lambda r: r["state"] in TERMINAL
        )
        return record, stat, time.time()

    shards = spec.get("shards", 4)
    watches = [asyncio.ensure_future(running(i)) for i in range(shards)]
    end = asyncio.ensure_future(finished())
    stalled = False
    while stall is not None:
        done, _ = await asyncio.wait([*watches, end], timeout=stall, return_when="FIRST_COMPLETED")
        if done:
            break
        if idle is None or await idle():
            stalled = True
            if recover is not None:
                await recover()
            break
    times = await asyncio.gather(*watches)
    job, job_stat, seen = await end
    reads = await asyncio.gather(*(observer.get(paths.shard(job_id, i)) for i in range(shards)))
    return JobRun(
        id=job_id,
        posted=posted,
        accepted=accepted,
        finished=seen,
        running=list(times),
        missed=missed,
        stalled=stalled,
        job=job,
        job_stat=job_stat,
        shards=[json.loads(data) for data, _ in reads],
        shard_stats=[stat for _, stat in reads],
    )


@dataclass
class Load:
    clients: int
    accepted: int
    errors: int
    elapsed: float
    latencies: list[float]
    statuses: dict[int, int]
    in_window: int

    @property
    def rate(self) -> float:
        return self.in_window / self.elapsed if self.elapsed > 0 else math.nan


class RawHTTP:
    """One keep-alive HTTP/1.1 connection that POSTs prepared bytes and reads the answer.

    The load generator shares the machine's cores with the service and ZooKeeper: httpx spends
    about 1 ms of CPU per request (as much as the service itself), this a few dozen µs, so the
    figure measures the service rather than its client. Only what the job service answers is
    understood: a status line, headers with Content-Length, a body.
    """

    def __init__(self, url: str) -> None:
        parsed = httpx.URL(url)
        self.host = parsed.host
        self.port = parsed.port or 80
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def connect(self) -> RawHTTP:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        return self

    def request(self, path: str, body: bytes, headers: dict[str, str]) -> bytes:
        lines = [f"POST {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        lines += [f"Content-Length: {len(body)}", "", ""]
        return "\r\n".join(lines).encode() + body

    async def send(self, request: bytes) -> tuple[int, bytes]:
        assert self.reader is not None and self.writer is not None, "connect() first"
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        body = await self.reader.readexactly(length) if length else b""
        return status, body

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(Exception):
                await self.writer.wait_closed()


async def submit_load(url: str, spec: dict[str, Any], *, clients: int, duration: float) -> Load:
    """``clients`` concurrent keep-alive connections POSTing ``spec`` for ``duration`` seconds.

    Each client is one connection with one request in flight (RawHTTP, not httpx: see there).
    """
    body = json.dumps(spec).encode()
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    pool = [RawHTTP(url) for _ in range(clients)]
    request = pool[0].request("/v1/jobs", body, {"content-type": "application/json", **AUTH})
    try:
        await asyncio.gather(*(client.connect() for client in pool))
        # A first request on every connection: the figure is about a warm service.
        await asyncio.gather(*(client.send(request) for client in pool))
        begin = time.perf_counter()
        stop = begin + duration
        in_window = 0

        async def one(client: RawHTTP) -> None:
            nonlocal in_window
            while time.perf_counter() < stop:
                started = time.perf_counter()
                status, _ = await client.send(request)
                ended = time.perf_counter()
                statuses[status] = statuses.get(status, 0) + 1
                if status == 202:
                    latencies.append(ended - started)
                    in_window += ended <= stop

        await asyncio.gather(*(one(client) for client in pool))
    finally:
        await asyncio.gather(*(client.close() for client in pool))
    # The rate counts what was accepted within the window: requests still in flight at its
    # end finish later and count only for latency.
    accepted = statuses.get(202, 0)
    return Load(
        clients,
        accepted,
        sum(statuses.values()) - accepted,
        duration,
        latencies,
        statuses,
        in_window,
    )
