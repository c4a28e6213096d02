"""4. Per-shard overhead: seconds of coordination per shard, against the shard's training time.

Derived from the records the system keeps (no extra instrumentation), for tiny shards (the
dispatch benchmark's jobs) and large ones (the end-to-end jobs); when those did not run in
this invocation, a few of each are run here. Per shard, on the worker that trained it:

- claim: from the job's creation (or the worker's previous shard's finish) to the shard's
  `started_at`: notification, queue scan, lock, record writes;
- in-child overhead: ``finished_at - started_at - train_seconds``: process start, dataset load
  and split, held-out evaluation, model serialisation and the artifact write;
- shards a worker claimed together (a small job's: workers/shard_groups.py; the same
  ``started_at``) share one claim and one child: their claim and in-child time (less all of
  their training) is spread over them, as a job's merge is over its shards;
- merge and publish, per job: last shard's `finished_at` to the job's `finished_at` (merge
  lock, artifact reads, merge, evaluation, artifact write, the publishing multi), divided
  over its shards.
"""

from __future__ import annotations

import asyncio
import statistics
from dataclasses import dataclass
from typing import Any

from bench.e2e import job_spec
from bench.figures import Figure
from bench.harness import Context
from bench.http_load import JobRun, run_job, timestamp, two_worker_stack
from testkit.bench_specs import tiny_spec

TINY_GOAL = 0.020  # seconds of coordination per tiny shard


@dataclass
class Breakdown:
    jobs: int
    shards: int
    claim: float
    in_child: float
    merge: float  # per shard
    train: float
    job: float  # a job's created_at to its finished_at

    @property
    def coordination(self) -> float:
        return self.claim + self.in_child + self.merge


def breakdown(runs: list[JobRun]) -> Breakdown:
    claims: list[float] = []
    in_child: list[float] = []
    merges: list[float] = []
    trains: list[float] = []
    walls: list[float] = []
    jobs = [r for r in runs if r.state == "succeeded"]
    for run in jobs:
        created = timestamp(run.job["created_at"]) or 0.0
        finished = timestamp(run.job["finished_at"]) or 0.0
        by_worker: dict[str, list[dict[str, Any]]] = {}
        for shard in run.shards:
            by_worker.setdefault(str(shard.get("worker")), []).append(shard)
        last = 0.0
        for shards in by_worker.values():
            previous = created
            for together in _claimed_together(shards):
                # Shards claimed together (workers/shard_groups.py) share one claim and one
                # child: its time is spread over them, as a job's merge is over its shards.
                started = timestamp(together[0]["started_at"]) or 0.0
                done = max(timestamp(s["finished_at"]) or 0.0 for s in together)
                train = [float(s.get("train_seconds") or 0.0) for s in together]
                claims.extend([(started - previous) / len(together)] * len(together))
                in_child.extend([(done - started - sum(train)) / len(together)] * len(together))
                trains.extend(train)
                previous = done
                last = max(last, done)
        merges.extend([(finished - last) / len(run.shards)] * len(run.shards))
        walls.append(finished - created)
    mean = statistics.fmean
    return Breakdown(
        jobs=len(jobs),
        shards=len(trains),
        claim=mean(claims) if claims else float("nan"),
        in_child=mean(in_child) if in_child else float("nan"),
        merge=mean(merges) if merges else float("nan"),
        train=mean(trains) if trains else float("nan"),
        job=mean(walls) if walls else float("nan"),
    )


def _claimed_together(shards: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """One worker's shards of a job in the order it claimed them, those it claimed in one
    multi (the same started_at) together."""
    found: dict[str, list[dict[str, Any]]] = {}
    for shard in sorted(shards, key=lambda s: timestamp(s["started_at"]) or 0.0):
        found.setdefault(str(shard["started_at"]), []).append(shard)
    return list(found.values())


async def own_jobs(ctx: Context, *, tiny: bool, large: bool) -> tuple[list[JobRun], list[JobRun]]:
    """Tiny and large jobs, for those of the two that dispatch and e2e did not run in this
    invocation."""
    tiny_count = 5 if ctx.quick else 20
    rows = 20_000 if ctx.quick else 50_000
    async with two_worker_stack(ctx, "overhead") as (stack, client, observer, recover):

        async def job(spec: dict[str, Any]) -> JobRun:
            return await asyncio.wait_for(
                run_job(client, observer, stack.paths, spec, stall=30.0, recover=recover),
                1800,
            )

        tiny_runs = [await job(tiny_spec("bench-overhead")) for _ in range(tiny_count * tiny)]
        large_runs = [await job(job_spec(rows, 2))] if large else []
    return tiny_runs, large_runs


async def run(ctx: Context) -> list[Figure]:
    tiny: list[JobRun] = ctx.shared.get("tiny_jobs") or []
    large: list[JobRun] = ctx.shared.get("large_jobs") or []
    if not tiny or not large:
        ctx.log(
            "overhead: running a few jobs of each size that dispatch and e2e did not run here "
            "(their first ones pay the workers' cold children)"
        )
        own_tiny, own_large = await own_jobs(ctx, tiny=not tiny, large=not large)
        tiny, large = tiny or own_tiny, large or own_large
    command = ctx.command("overhead")
    figures: list[Figure] = []
    for label, runs in (("tiny shards (iris)", tiny), ("large shards (forest)", large)):
        b = breakdown([r for r in runs if not r.stalled])
        ctx.log(f"overhead {label}: {b}")
        note = f"{b.shards} shards of {b.jobs} jobs"
        rows = [
            ("coordination per shard", b.coordination, note),
            ("  of which claim", b.claim, ""),
            ("  of which in-child (start, data, eval, artifact)", b.in_child, ""),
            ("  of which merge + publish (per shard)", b.merge, ""),
            ("a job, created_at to finished_at", b.job, "one after another"),
        ]
        for name, value, row_note in rows:
            # Issue 17's goal: what every task of a small job or a cheap search pays.
            goal = label.startswith("tiny") and name == "coordination per shard"
            figures.append(
                Figure(
                    f"overhead, {label}: {name.strip()}",
                    value,
                    "s",
                    baseline=b.train,
                    baseline_name="train_seconds per shard",
                    goal=f"≤ {TINY_GOAL * 1000:.0f} ms" if goal else "",
                    met=value <= TINY_GOAL if goal else None,
                    command=command,
                    note=row_note,
                )
            )
    return figures
