"""6. Scale: dispatch latency and submit throughput as unfinished jobs pile up in the queue.

The queue is filled with raw kazoo multis (submit's very znodes) of jobs no worker can take:
priority 0, their one shard `pending` with a retry backoff (``not_before``) a month away. They
are what a backlog of retried jobs looks like, and workers do look at them: an idle worker's
scan lists the queue (one getChildren) and reads every entry's job and shards until it finds
something to claim. The timed jobs have priority 9, so they sort first.

At every size (and at 0, the baseline of every figure) it measures:

- getChildren(queue) alone, and a sequential read of every entry's job and shard (what one
  idle scan of a worker costs in round trips), from the benchmark's own kazoo session;
- dispatch (submit multi applied → shard `running`, both on ZooKeeper's clock) of jobs
  submitted when ZooKeeper is quiet (the workers finished scanning), and of jobs submitted
  right after the previous one finished (the workers are rescanning the queue then);
- how long the workers keep ZooKeeper busy after a job is published (their rescans);
- submit throughput with 8 clients against a second job service on its own root, with no
  workers, whose queue holds the same number of waiting jobs.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from kazoo.client import KazooClient

from bench.figures import Figure, median, percentile
from bench.harness import Context, api_client
from bench.http_load import Recover, restarter, run_job, submit_load
from bench.raw_commits import RawJobs, pipelined_commits
from bench.zk_side import Observer, close_kazoo, kazoo_client, wait_quiet, zk_idle
from testkit.bench_specs import tiny_spec
from testkit.zkserver import ZooKeeperCluster
from zootrain.paths import Paths, queue_rank

MONTH = 30 * 86_400.0
# A job still unclaimed this long after its 202, while ZooKeeper hears nothing from the workers
# (they are not scanning the queue), was missed: the workers are restarted.
STALL = 10.0


@dataclass
class Level:
    size: int
    get_children: float = float("nan")
    walk: float = float("nan")
    quiet: list[float] = field(default_factory=list)
    busy: list[float] = field(default_factory=list)
    rescan: list[float] = field(default_factory=list)
    stalls: int = 0
    submit_rate: float = float("nan")


def queue_size(client: KazooClient, paths: Paths) -> int:
    stat = client.exists(paths.queue)
    return int(stat.numChildren) if stat is not None else 0


def fill(client: KazooClient, jobs: RawJobs, size: int) -> int:
    """Add waiting jobs until the queue holds ``size`` entries; how many were added."""
    missing = size - queue_size(client, jobs.paths)
    if missing > 0:
        result = pipelined_commits(client, jobs, count=missing, window=128)
        if result.failed:
            raise RuntimeError(f"{result.failed} filler multis failed")
    return max(0, missing)


def time_get_children(client: KazooClient, paths: Paths, rounds: int = 9) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        client.get_children(paths.queue)
        times.append(time.perf_counter() - started)
    return median(times)


def time_walk(client: KazooClient, paths: Paths) -> float:
    """One pass over the queue as an idle worker's scan makes it: list, then read each job
    and its shard, one round trip after another."""
    started = time.perf_counter()
    for name in sorted(client.get_children(paths.queue)):
        job_id = name.split("-")[1]
        client.get(paths.job(job_id))
        client.get(paths.shard(job_id, 0))
    return time.perf_counter() - started


def drop_entries(client: KazooClient, paths: Paths, priority: int) -> None:
    """Delete the queue entries of jobs at ``priority`` (the submit load's): the queue is back
    to the fillers, whose priority differs."""
    prefix = f"{queue_rank(priority)}-"
    names = [n for n in client.get_children(paths.queue) if n.startswith(prefix)]
    pending = [client.delete_async(paths.queue_entry(n)) for n in names]
    for result in pending:
        result.get(30)


async def measure_level(
    ctx: Context,
    zk: ZooKeeperCluster,
    level: Level,
    dispatch_url: str,
    dispatch_paths: Paths,
    submit_url: str,
    submit_paths: Paths,
    client: KazooClient,
    observer: Observer,
    recover: Recover,
) -> None:
    loop = asyncio.get_running_loop()

    async def idle() -> bool:
        return await zk_idle(zk)

    await wait_quiet(zk)
    level.get_children = await loop.run_in_executor(None, time_get_children, client, dispatch_paths)
    level.walk = await loop.run_in_executor(None, time_walk, client, dispatch_paths)
    spec = tiny_spec("bench-scale", shards=1, priority=9)
    quiet_jobs, busy_jobs = (3, 3) if ctx.quick else (8, 5)
    budget = 20.0 if ctx.quick else 60.0  # per kind of job and size; at least 2 jobs each
    async with api_client(dispatch_url) as http:
        # Quiet: each job submitted once ZooKeeper has gone quiet (the workers idle); busy: one
        # right after another.
        for delays, count in ((level.quiet, quiet_jobs), (level.busy, busy_jobs)):
            started = time.monotonic()
            for index in range(count):
                if delays is level.quiet:
                    waited = await wait_quiet(zk)
                    if index > 0:  # the first wait follows our own reads, not a publish
                        level.rescan.append(waited)
                run = await asyncio.wait_for(
                    run_job(
                        http,
                        observer,
                        dispatch_paths,
                        spec,
                        stall=STALL,
                        recover=recover,
                        idle=idle,
                    ),
                    600,
                )
                if run.stalled:
                    level.stalls += 1
                else:
                    delays.append(run.running[0] - run.job_stat.ctime / 1000)
                if index >= 1 and time.monotonic() - started > budget:
                    break
    await wait_quiet(zk)
    load_spec = tiny_spec("bench-scale-submit", shards=1, priority=5)
    load = await submit_load(submit_url, load_spec, clients=8, duration=1.5 if ctx.quick else 4.0)
    level.submit_rate = load.rate
    await loop.run_in_executor(None, drop_entries, client, submit_paths, 5)


async def run(ctx: Context) -> list[Figure]:
    sizes: list[int] = ctx.options.get("scale_sizes") or (
        [100, 1000] if ctx.quick else [100, 1000, 10_000]
    )
    command = ctx.command("scale")
    loop = asyncio.get_running_loop()
    levels = [Level(0)] + [Level(s) for s in sorted(sizes)]
    with (
        ctx.zookeeper("scale") as zk,
        ctx.stack("scale-dispatch", zk) as dispatch,
        ctx.stack("scale-submit", zk) as submit,
    ):
        submit.start_api_server()
        dispatch.start_api_server()
        dispatch.start_worker("worker")
        dispatch.start_worker("worker")
        client = kazoo_client(zk.hosts)
        observer = await Observer(zk.hosts).start()
        filler_spec = tiny_spec("bench-scale-filler", shards=1, priority=0)
        backoff = {"not_before": time.time() + MONTH}
        fillers = [
            RawJobs(submit.paths, filler_spec, shard=backoff),  # no workers there: first
            RawJobs(dispatch.paths, filler_spec, shard=backoff),
        ]
        try:
            for level in levels:
                for jobs in fillers:
                    added = await loop.run_in_executor(None, fill, client, jobs, level.size)
                    ctx.log(f"scale: {jobs.paths.root}: +{added} waiting jobs")
                await measure_level(
                    ctx,
                    zk,
                    level,
                    dispatch.url,
                    dispatch.paths,
                    submit.url,
                    submit.paths,
                    client,
                    observer,
                    restarter(ctx, dispatch, "scale"),
                )
                ctx.log(
                    f"scale {level.size}: getChildren {level.get_children * 1000:.1f} ms, "
                    f"walk {level.walk * 1000:.0f} ms, dispatch quiet "
                    f"{[round(x * 1000) for x in level.quiet]} ms, busy "
                    f"{[round(x * 1000) for x in level.busy]} ms, rescans "
                    f"{[round(x, 2) for x in level.rescan]} s, submit "
                    f"{level.submit_rate:.0f}/s, {level.stalls} stalled"
                )
        finally:
            await observer.stop()
            close_kazoo(client)
    return figures(levels, command)


def figures(levels: list[Level], command: str) -> list[Figure]:
    base = levels[0]
    out: list[Figure] = []

    def add(
        level: Level,
        name: str,
        value: float,
        baseline: float,
        unit: str = "s",
        baseline_name: str = "same, empty queue",
        note: str = "",
    ) -> None:
        out.append(
            Figure(
                f"scale: {name}, {level.size:,} waiting",
                value,
                unit,
                baseline=baseline,
                baseline_name=baseline_name,
                command=command,
                note=note,
            )
        )

    for level in levels[1:]:
        add(level, "getChildren(queue)", level.get_children, base.get_children)
        add(
            level,
            "sequential read of every entry's job + shard",
            level.walk,
            level.get_children,
            baseline_name="getChildren at this size",
        )
        add(
            level,
            "dispatch p50, quiet ZooKeeper",
            median(level.quiet),
            median(base.quiet),
            note=f"{len(level.quiet)} + {len(level.busy)} jobs"
            + (f", {level.stalls} unclaimed (excluded)" if level.stalls else ""),
        )
        add(
            level,
            "dispatch p99, quiet ZooKeeper",
            percentile(level.quiet, 99),
            percentile(base.quiet, 99),
        )
        add(level, "dispatch p50, right after a job", median(level.busy), median(base.busy))
        add(level, "workers busy after a publish", median(level.rescan), median(base.rescan))
        add(level, "submit, 8 clients", level.submit_rate, base.submit_rate, unit="jobs/s")
    return out
