"""2. Dispatch latency: from a submit's 202 to a shard's `running`, with idle workers.

Each job is followed by data watches (never by polling): the shard znodes until they leave
`pending`, the job record until it is terminal. A shard's dispatch time is when ZooKeeper
applied its `running` write (the znode's mtime, the same clock as ours on one machine). The
time from the last shard's `done` write to the job's `succeeded` write is the merge-and-publish
latency. Baseline: a raw kazoo round trip, create by one session to the data watch of another
session firing, on the same server.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid

from bench.figures import Figure, percentile
from bench.harness import Context, api_client
from bench.http_load import JobRun, Recover, run_job
from bench.profile import Profiler
from bench.zk_side import Observer, close_kazoo, kazoo_client
from testkit.bench_specs import tiny_spec
from zootrain.paths import Paths

GOAL_P50 = 0.020
# Idle workers claim a job in milliseconds: one still unclaimed after this long was missed.
STALL = 10.0
GOAL_P99 = 0.100


def watch_round_trips(hosts: str, count: int) -> list[float]:
    """Seconds from one session's create to another session's exists-watch firing."""
    watcher = kazoo_client(hosts)
    creator = kazoo_client(hosts)
    root = f"/bench-watch-{uuid.uuid4().hex[:6]}"
    creator.ensure_path(root)
    times: list[float] = []
    try:
        for index in range(count):
            path = f"{root}/n{index}"
            fired = threading.Event()
            seen = [0.0]

            def fire(_: object, seen: list[float] = seen, fired: threading.Event = fired) -> None:
                seen[0] = time.perf_counter()
                fired.set()

            watcher.exists(path, watch=fire)
            started = time.perf_counter()
            creator.create(path)
            if fired.wait(10):
                times.append(seen[0] - started)
    finally:
        close_kazoo(watcher)
        close_kazoo(creator)
    return times


async def timed_jobs(
    ctx: Context,
    url: str,
    observer: Observer,
    stack_paths: Paths,
    count: int,
    budget: float,
    recover: Recover,
) -> list[JobRun]:
    spec = tiny_spec("bench-dispatch", shards=2)
    runs: list[JobRun] = []

    async def job() -> JobRun:
        return await asyncio.wait_for(
            run_job(client, observer, stack_paths, spec, stall=STALL, recover=recover), 300
        )

    async with api_client(url) as client:
        for _ in range(2):  # warm-up: first forks, first imports in the children
            await job()
        stop = time.monotonic() + budget
        for index in range(count):
            if time.monotonic() > stop:
                ctx.log(f"dispatch: time budget of {budget:.0f}s spent after {index} jobs")
                break
            run = await job()
            runs.append(run)
            if run.stalled:
                ctx.log(f"dispatch: job {run.id} was not claimed within {STALL:.0f}s")
            if run.state != "succeeded":
                ctx.log(f"dispatch: job {run.id} ended {run.state}: {run.job.get('error')}")
            if (index + 1) % 50 == 0:
                ctx.log(f"dispatch: {index + 1}/{count} jobs")
            await asyncio.sleep(0.02)  # the workers' own wake-ups after a publish settle
    return runs


async def run(ctx: Context) -> list[Figure]:
    count = int(ctx.options.get("dispatch_jobs") or (20 if ctx.quick else 500))
    # A loaded machine makes every job slower: the full form stops after this long.
    budget = 120.0 if ctx.quick else 300.0
    command = ctx.command("dispatch") + (" --profile" if ctx.profile else "")
    loop = asyncio.get_running_loop()
    with ctx.zookeeper("dispatch") as zk:
        ctx.log("dispatch: raw create→watch baseline")
        rounds = 50 if ctx.quick else 300
        raw = await loop.run_in_executor(None, watch_round_trips, zk.hosts, rounds)
        raw_p50, raw_p99 = percentile(raw, 50), percentile(raw, 99)
        with ctx.stack("dispatch", zk) as stack:
            api = stack.start_api_server()
            workers = [stack.start_worker("worker"), stack.start_worker("worker")]
            observer = await Observer(zk.hosts).start()
            profilers: list[Profiler] = []
            if ctx.profile:
                if Profiler.available():
                    directory = ctx.directory("profiles")
                    profilers = [
                        Profiler("job-service", api.popen.pid, directory).start(),
                        Profiler(
                            "worker", workers[0].popen.pid, directory, subprocesses=True
                        ).start(),
                    ]
                else:
                    ctx.log("dispatch: py-spy is not installed: no profile")

            async def recover() -> None:
                # Idle workers missed a queue change (see the report): fresh ones see the job.
                ctx.log("dispatch: restarting the workers")
                fresh = await loop.run_in_executor(None, stack.restart_workers)
                for profiler in profilers:
                    if profiler.name == "worker":
                        await loop.run_in_executor(None, profiler.retarget, fresh[0].popen.pid)

            try:
                ctx.log(f"dispatch: {count} jobs, 2 shards each, 2 idle workers")
                runs = await timed_jobs(
                    ctx, stack.url, observer, stack.paths, count, budget, recover
                )
            finally:
                for profiler in profilers:
                    profiler.stop()
                await observer.stop()
            for profiler in profilers:
                ctx.profiles.append(profiler.summary())
    ctx.shared["tiny_jobs"] = [r for r in runs if not r.stalled]
    stalls = sum(r.stalled for r in runs)
    runs = [r for r in runs if not r.stalled]  # their latency is our stall limit, not theirs
    done = [r for r in runs if r.state == "succeeded"]
    # Server side, one clock: the submit multi applied (job znode ctime) → `running` applied.
    committed = [min(r.running) - r.job_stat.ctime / 1000 for r in runs]
    first = [min(r.running) - r.accepted for r in runs]
    every = [max(r.running) - r.accepted for r in runs]
    posted = [min(r.running) - r.posted for r in runs]
    publish = [r.published_after_last_done for r in done]
    missed = sum(r.missed for r in runs)
    note = f"{len(runs)} jobs" + (f", {missed} shards seen late" if missed else "")
    p50 = percentile(first, 50)
    p99 = percentile(first, 99)

    def figure(
        name: str,
        value: float,
        base: float,
        base_name: str,
        goal: str = "",
        met: bool | None = None,
        note: str = "",
    ) -> Figure:
        return Figure(
            f"dispatch: {name}",
            value,
            "s",
            baseline=base,
            baseline_name=base_name,
            goal=goal,
            met=met,
            command=command,
            note=note,
        )

    return [
        Figure(
            f"dispatch: jobs no idle worker claimed within {STALL:.0f} s",
            stalls,
            "jobs",
            goal="0",
            met=stalls == 0,
            command=command,
            note=f"of {len(runs) + stalls}; workers restarted each time, excluded below",
        ),
        figure(
            "submit multi applied → first shard running, p50",
            percentile(committed, 50),
            raw_p50,
            "create→watch p50",
            note=note,
        ),
        figure(
            "submit multi applied → first shard running, p99",
            percentile(committed, 99),
            raw_p99,
            "create→watch p99",
        ),
        figure(
            "202 → first shard running, p50",
            p50,
            raw_p50,
            "create→watch p50",
            goal=f"≤ {GOAL_P50 * 1000:.0f} ms",
            met=p50 <= GOAL_P50,
            note="< 0: running before the 202 arrived" if p50 < 0 else "",
        ),
        figure(
            "202 → first shard running, p99",
            p99,
            raw_p99,
            "create→watch p99",
            goal=f"≤ {GOAL_P99 * 1000:.0f} ms",
            met=p99 <= GOAL_P99,
        ),
        figure("202 → both shards running, p50", percentile(every, 50), raw_p50, "p50"),
        figure("202 → both shards running, p99", percentile(every, 99), raw_p99, "p99"),
        figure("POST sent → first shard running, p50", percentile(posted, 50), raw_p50, "p50"),
        figure(
            "last shard done → published, p50",
            percentile(publish, 50),
            raw_p50,
            "p50",
            note=f"{len(done)} jobs",
        ),
        figure("last shard done → published, p99", percentile(publish, 99), raw_p99, "p99"),
    ]
