"""What every benchmark stands on: figures, real ZooKeeper and real processes, raw kazoo.

Processes are the real ones (``uvicorn app.main:app``, ``python -m workers``) started by the
shared test kit (testkit/); ZooKeeper is a real server on a free loopback port, a fresh
one for each benchmark so that one benchmark's znodes never slow the next one down.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import shutil
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from kazoo.client import KazooClient, TransactionRequest
from kazoo.exceptions import NodeExistsError
from kazoo.protocol.states import WatchedEvent, ZnodeStat

from testkit.stack import Process, Stack, wait_for
from testkit.zkserver import ZooKeeperCluster, four_letter, free_port
from zootrain.auth import config_entry, new_token
from zootrain.paths import IDEMPOTENCY_BUCKETS, Paths
from zootrain.records import JobRecord, JobSpec, ShardRecord, new_job_id, utcnow

ROOT = Path(__file__).resolve().parents[1]
TERMINAL = ("succeeded", "failed", "cancelled")

# One admin token per run: the job service gets only its hash (ZOOTRAIN_TOKENS), every request
# of the benchmarks carries it.
TOKEN_NAME = "bench"
TOKEN = new_token()
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def auth_env() -> dict[str, str]:
    """The job service's settings for the run's token, with no per-token submit rate limit
    (the benchmarks measure throughput)."""
    return {
        "ZOOTRAIN_TOKENS": config_entry(TOKEN_NAME, TOKEN, ["admin"]),
        "ZOOTRAIN_SUBMIT_RATE": "0",
    }


def api_client(url: str, **kwargs: Any) -> httpx.AsyncClient:
    """An httpx client for the job service that sends the run's token on every request."""
    kwargs.setdefault("timeout", 60)
    return httpx.AsyncClient(base_url=url, headers=AUTH, **kwargs)


# -- figures -------------------------------------------------------------------------------------


@dataclass
class Figure:
    """One row of the report: a value, the same-run baseline it is compared with, a goal."""

    name: str
    value: float | None
    unit: str
    baseline: float | None = None
    baseline_name: str = ""
    baseline_unit: str | None = None  # defaults to ``unit``
    goal: str = ""
    met: bool | None = None
    command: str = ""
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.value is None or self.baseline is None or self.baseline == 0:
            return None
        return self.value / self.baseline


def fmt(value: float | None, unit: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if unit == "s" and abs(value) < 1:
        return f"{value * 1000:.1f} ms"
    if unit == "B" and abs(value) >= 1024 * 1024:
        return f"{value / (1024 * 1024):.1f} MB"
    if unit == "B" and abs(value) >= 10 * 1024:
        return f"{value / 1024:.1f} KB"
    if abs(value) >= 100 or float(value).is_integer():
        return f"{value:,.0f} {unit}".strip()
    return f"{value:.3g} {unit}".strip()


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def median(values: list[float]) -> float:
    return percentile(values, 50)


# -- the run's context ---------------------------------------------------------------------------


@dataclass
class Context:
    quick: bool
    workdir: Path
    profile: bool = False
    verbose: bool = True
    options: dict[str, Any] = field(default_factory=dict)
    # Results one benchmark leaves for another (dispatch's and e2e's jobs, for overhead).
    shared: dict[str, Any] = field(default_factory=dict)
    profiles: list[str] = field(default_factory=list)

    def command(self, name: str) -> str:
        return f"python -m bench --only {name}" + (" --quick" if self.quick else "")

    def log(self, message: str) -> None:
        if self.verbose:
            stamp = time.strftime("%H:%M:%S")
            print(f"[bench {stamp}] {message}", file=sys.stderr, flush=True)

    def directory(self, name: str) -> Path:
        path = self.workdir / f"{name}-{uuid.uuid4().hex[:6]}"
        path.mkdir(parents=True)
        return path

    @contextlib.contextmanager
    def zookeeper(self, name: str) -> Iterator[ZooKeeperCluster]:
        """A fresh standalone ZooKeeper server for one benchmark."""
        cluster = ZooKeeperCluster(self.directory(f"zk-{name}"), size=1)
        try:
            cluster.start()
            yield cluster
        finally:
            cluster.stop()

    @contextlib.contextmanager
    def stack(self, name: str, zk: ZooKeeperCluster, **extra: str) -> Iterator[BenchStack]:
        directory = self.directory(name)
        env = settings_env(zk, f"/bench-{name}-{uuid.uuid4().hex[:6]}", directory, **extra)
        stack = BenchStack(directory, env)
        try:
            yield stack
        finally:
            stack.stop()


def settings_env(zk: ZooKeeperCluster, root: str, directory: Path, **extra: str) -> dict[str, str]:
    env = {
        "ZOOTRAIN_ZK_HOSTS": zk.hosts,
        "ZOOTRAIN_ZK_ROOT": root,
        "ZOOTRAIN_ARTIFACTS": str(directory / "artifacts"),
        "ZOOTRAIN_ZK_SESSION_TIMEOUT": "10",
        # The benchmarks fill the queue far past the default backpressure limit.
        "ZOOTRAIN_MAX_QUEUE": "1000000",
        # Sweeps walk the whole queue: keep them out of the measurements.
        "ZOOTRAIN_HOUSEKEEPING_INTERVAL": "3600",
        **auth_env(),
    }
    env.update(extra)
    return env


class BenchStack(Stack):
    """testkit.stack.Stack, plus a job service with ``uvicorn --workers N``."""

    @property
    def root(self) -> str:
        return self.settings["ZOOTRAIN_ZK_ROOT"]

    @property
    def paths(self) -> Paths:
        return Paths(self.root)

    @property
    def url(self) -> str:
        assert self.api_url is not None, "start_api_server() first"
        return self.api_url

    def start_api_server(self, workers: int = 1, *extra: str) -> Process:
        port = free_port()
        argv = [sys.executable, "-m", "uvicorn", "app.main:app"]
        argv += ["--host", "127.0.0.1", "--port", str(port), *extra]
        if workers > 1:
            argv += ["--workers", str(workers)]
        name = "api" if workers == 1 else f"api-x{workers}"
        process = self._spawn(f"{name}-{port}", argv)
        self.api_url = f"http://127.0.0.1:{port}"
        url = self.api_url

        def ready() -> bool:
            try:
                return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(lambda: ready() or not process.alive(), 90, "the job service")
        assert process.alive(), process.output()
        self.wait_layout()
        return process

    def workers(self) -> list[Process]:
        return [p for p in self.processes if p.name.startswith("worker") and p.alive()]

    def restart_workers(self) -> list[Process]:
        """Replace every live worker with a fresh process (same settings)."""
        count = len(self.workers())
        for process in self.workers():
            process.stop(20)
        return [self.start_worker("worker") for _ in range(count)]

    def wait_layout(self) -> None:
        """/readyz says "connected": the base znodes are created just after."""
        paths = self.paths
        client = KazooClient(hosts=self.settings["ZOOTRAIN_ZK_HOSTS"])
        client.start(30)
        try:

            def ready() -> bool:
                if not all(client.exists(p) for p in paths.bases):
                    return False
                return len(client.get_children(paths.idempotency)) >= len(IDEMPOTENCY_BUCKETS)

            wait_for(ready, 60, "the base znodes")
        finally:
            client.stop()
            client.close()


# -- ZooKeeper from the benchmark's side ---------------------------------------------------------


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


# -- the same multi submit commits, issued by kazoo itself ---------------------------------------


class RawJobs:
    """Builds submit's multi (job record, shards node, shard records, sequential queue entry)
    with the very bytes the job service writes, for jobs of ``spec``."""

    PLACEHOLDER = "f" * 20

    def __init__(
        self,
        paths: Paths,
        spec: dict[str, Any],
        *,
        shard: dict[str, Any] | None = None,
    ) -> None:
        self.paths = paths
        parsed = JobSpec.model_validate(spec)
        now = utcnow()
        record = JobRecord(id=self.PLACEHOLDER, spec=parsed, created_at=now, updated_at=now)
        self.job_bytes = record.dump()
        self.shards = parsed.shards
        self.priority = parsed.priority
        self.shard_bytes = [
            ShardRecord(index=i, **(shard or {})).dump() for i in range(parsed.shards)
        ]

    def transaction(self, client: KazooClient) -> tuple[str, TransactionRequest]:
        job_id = new_job_id()
        tx = client.transaction()
        tx.create(
            self.paths.job(job_id),
            self.job_bytes.replace(self.PLACEHOLDER.encode(), job_id.encode()),
        )
        tx.create(self.paths.shards(job_id))
        for index, data in enumerate(self.shard_bytes):
            tx.create(self.paths.shard(job_id, index), data)
        tx.create(self.paths.queue_prefix(job_id, self.priority), job_id.encode(), sequence=True)
        return job_id, tx


def ensure_bases(client: KazooClient, paths: Paths) -> None:
    for path in (paths.queue, paths.jobs):
        with contextlib.suppress(NodeExistsError):
            client.ensure_path(path)


@dataclass
class Pipelined:
    done: int
    failed: int
    elapsed: float
    latencies: list[float]

    @property
    def rate(self) -> float:
        return self.done / self.elapsed if self.elapsed > 0 else math.nan


def pipelined_commits(
    client: KazooClient,
    jobs: RawJobs,
    *,
    duration: float | None = None,
    count: int | None = None,
    window: int = 64,
) -> Pipelined:
    """Commit submit's multi as fast as kazoo goes, ``window`` commits in flight at once."""
    slots = threading.Semaphore(window)
    lock = threading.Lock()
    latencies: list[float] = []
    failures = 0

    def settle(started: float) -> Callable[[Any], None]:
        def done(result: Any) -> None:
            nonlocal failures
            elapsed = time.perf_counter() - started
            ok = result.successful() and not any(
                isinstance(r, Exception) for r in (result.value or [])
            )
            with lock:
                if ok:
                    latencies.append(elapsed)
                else:
                    failures += 1
            slots.release()

        return done

    started = time.perf_counter()
    stop = started + duration if duration is not None else math.inf
    issued = 0
    while time.perf_counter() < stop and (count is None or issued < count):
        slots.acquire()
        _, tx = jobs.transaction(client)
        tx.commit_async().rawlink(settle(time.perf_counter()))
        issued += 1
    for _ in range(window):
        slots.acquire()
    elapsed = time.perf_counter() - started
    return Pipelined(len(latencies), failures, elapsed, latencies)


# -- HTTP ----------------------------------------------------------------------------------------


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


# -- processes -----------------------------------------------------------------------------------


def rss_bytes(pid: int) -> float | None:
    try:
        import psutil  # optional: /proc says the same on Linux

        return float(psutil.Process(pid).memory_info().rss)
    except ImportError:
        pass
    except Exception:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return float(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def cpu_seconds(pid: int, *, children: bool = False) -> float:
    """User + system CPU seconds of ``pid`` (and of its live children), from /proc."""
    pids = [pid] + ([p for p, _ in child_processes(pid)] if children else [])
    total = 0.0
    for each in pids:
        try:
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def own_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def uss_bytes(pid: int) -> float | None:
    """Memory only this process holds (psutil's USS); None without psutil."""
    try:
        import psutil

        return float(psutil.Process(pid).memory_full_info().uss)
    except Exception:
        return None


def child_processes(pid: int) -> list[tuple[int, str]]:
    """(pid, command line) of ``pid``'s live children, from /proc."""
    found: list[tuple[int, str]] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[1]) != pid or fields[0] == "Z":
                continue
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ")
        except (OSError, IndexError, ValueError):
            continue
        found.append((int(entry), cmdline.decode(errors="replace").strip()))
    return found


def tool(name: str) -> str | None:
    """An executable next to this interpreter (the venv's bin/), else on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    return shutil.which(name)
