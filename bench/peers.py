"""7. Peers: zootrain against Dask and Ray doing the same work on the same machine, in one run.

What a user choosing a way to train scikit-learn models on several processes would compare:

- the 4-shard random forest of bench/e2e.py (``partition: replicate``, trees calibrated to
  about ``--peers-cpu`` CPU seconds), zootrain with 2 workers from POST to `succeeded`, against
  scikit-learn's own ``fit`` of the same forest (shards x trees, same rows) under Dask
  (``LocalCluster``, 2 single-threaded worker processes, joblib's dask backend), under Ray
  (``ray.init(num_cpus=2)``, ``ray.util.joblib``), and with ``n_jobs=2`` alone;
- an 8-candidate grid search (3 folds, then the best refitted on every training row), zootrain's
  candidates as tasks against ``GridSearchCV(n_jobs=2)`` through the same backends;
- per-task cost: 1,000 tiny tasks at once. zootrain: 500 two-shard iris jobs submitted together
  (1,000 shards: dispatch, claim, a child's start, data and artifact, settle; and the jobs'
  merges and publishes), each shard's slot time (wall x 2 workers / shards) less its own
  training; the peers: 1,000 no-op tasks mapped and gathered, wall x 2 slots / 1,000.

Each peer lives in its own process (bench/peer_child.py), started once and warm for every timed
call, as zootrain's workers are warm, and idle while the others run (measured idle on
2026-12-01, Dask's scheduler and workers took 7 % of a core and Ray's processes 4 %), except
during zootrain's batch of tiny tasks: the peers are stopped for it and started and warmed
again after it, untimed (idle, they cost that batch 4 ms a task and more). Runs are interleaved
(round 1 of every system, then round 2, ...) so that a change in the machine's load falls on all
of them; each figure is the median of ``--peers-runs`` (3) runs. The peers are the ``peers``
extra (``pip install -e '.[peers]'``); a peer that is not installed is reported as missing, not
skipped silently.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Any

from bench.e2e import fit_seconds, training_rows
from bench.figures import Figure
from bench.harness import ROOT, Context
from bench.http_load import JobRun, run_job, timestamp, two_worker_stack
from bench.zk_side import Observer
from testkit.bench_specs import E2E_SHARDS as SHARDS
from testkit.bench_specs import SEARCH_FOLDS as FOLDS
from testkit.bench_specs import e2e_spec as forest_spec
from testkit.bench_specs import search_spec, tiny_spec
from zootrain.paths import Paths

FOREST_GOAL_PEER = 1.00
FOREST_GOAL_SKLEARN = 1.05
SEARCH_GOAL_PEER = 0.90
TINY_GOAL = 0.020  # coordination per tiny shard, seconds
STALL = 30.0
PEER_MODULES = {"dask": "distributed", "ray": "ray"}
NAMES = {"sklearn": "scikit-learn n_jobs=2", "dask": "Dask", "ray": "Ray"}


class PeerProcess:
    """bench/peer_child.py for one peer: a JSON command a line, a JSON answer a line."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.process: asyncio.subprocess.Process | None = None

    async def start(self, timeout: float = 180) -> PeerProcess:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.peer_child",
            self.name,
            cwd=ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        ready = await self._read(timeout)
        if ready.get("ready") != self.name:
            raise RuntimeError(f"peer {self.name} did not start: {ready}")
        return self

    async def _read(self, timeout: float) -> dict[str, Any]:
        assert self.process is not None and self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), timeout)
        if not line:
            raise RuntimeError(f"peer {self.name} exited ({await self.process.wait()})")
        answer: dict[str, Any] = json.loads(line)
        return answer

    async def call(self, timeout: float = 1800, **command: Any) -> float:
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.write((json.dumps(command) + "\n").encode())
        await self.process.stdin.drain()
        answer = await self._read(timeout)
        if "error" in answer:
            raise RuntimeError(f"peer {self.name}: {answer['error']}")
        return float(answer["seconds"])

    async def stop(self) -> None:
        if self.process is None or self.process.returncode is not None:
            return
        assert self.process.stdin is not None
        self.process.stdin.write(b'{"what": "quit"}\n')
        try:
            await self.process.stdin.drain()
            await asyncio.wait_for(self.process.wait(), 60)
        except (TimeoutError, ConnectionError):
            self.process.kill()
            await self.process.wait()


@dataclass
class Tiny:
    """One batch of tiny tasks: wall seconds, tasks, and zootrain's own records of them."""

    wall: float
    tasks: int
    train: float = 0.0  # mean train_seconds per task (zootrain's shards)

    @property
    def slot(self) -> float:
        """Seconds of one of the 2 slots each task occupied."""
        return self.wall * 2 / self.tasks

    @property
    def coordination(self) -> float:
        return self.slot - self.train


async def tiny_batch(
    client: Any, observer: Observer, paths: Paths, jobs: int, concurrency: int = 16
) -> Tiny:
    """``jobs`` two-shard iris jobs submitted together; wall time to the last one's end."""
    spec = tiny_spec("bench-peers-tiny", shards=2)
    ids: list[str] = []
    gate = asyncio.Semaphore(concurrency)

    async def submit() -> None:
        async with gate:
            response = await client.post("/v1/jobs", json=spec)
        if response.status_code != 202:
            raise RuntimeError(f"submit answered {response.status_code}: {response.text}")
        ids.append(response.json()["id"])

    async def finished(job_id: str) -> dict[str, Any]:
        record, _ = await observer.wait_until(
            paths.job(job_id), lambda r: r["state"] in ("succeeded", "failed", "cancelled")
        )
        return record

    async def all_finished() -> list[dict[str, Any]]:
        # The last job submitted first, then the rest one by one: by the time it ends nearly
        # every other job has, and each is read once. A watch on every job from the start
        # made this process read each record at each of its changes (queued, running,
        # merging, succeeded) while the batch ran, on the same two cores and the same
        # ZooKeeper as the workers: 3 ms of CPU a task that Dask's and Ray's batches, which
        # only wait on their futures, do not pay. The wall time comes from the records'
        # finished_at, not from when this process saw them.
        found: dict[str, dict[str, Any]] = {}
        for job_id in reversed(ids):
            found[job_id] = await finished(job_id)
        return [found[job_id] for job_id in ids]

    started = time.time()
    await asyncio.gather(*(submit() for _ in range(jobs)))
    records = await asyncio.wait_for(all_finished(), 3600)
    last = max(timestamp(r.get("finished_at")) or time.time() for r in records)
    bad = [r["id"] for r in records if r["state"] != "succeeded"]
    if bad:
        raise RuntimeError(f"{len(bad)} tiny jobs did not succeed, e.g. {bad[0]}")
    shards = await asyncio.gather(
        *(observer.get(paths.shard(job_id, i)) for job_id in ids for i in range(2))
    )
    train = statistics.fmean(json.loads(data).get("train_seconds") or 0.0 for data, _ in shards)
    return Tiny(wall=last - started, tasks=2 * jobs, train=train)


def peers_available() -> tuple[list[str], list[str]]:
    present = [p for p, module in PEER_MODULES.items() if importlib.util.find_spec(module)]
    return present, [p for p in PEER_MODULES if p not in present]


async def run(ctx: Context) -> list[Figure]:
    rows = int(ctx.options.get("e2e_rows") or (20_000 if ctx.quick else 100_000))
    cpu = float(ctx.options.get("peers_cpu") or (3.0 if ctx.quick else 12.0))
    runs = int(ctx.options.get("peers_runs") or (1 if ctx.quick else 3))
    tasks = int(ctx.options.get("peers_tasks") or (100 if ctx.quick else 1000))
    search_rows = 5_000 if ctx.quick else 20_000
    search_trees = 5 if ctx.quick else 10
    command = ctx.command("peers")
    loop = asyncio.get_running_loop()
    X, y = await loop.run_in_executor(None, training_rows, rows)
    one_tree = min([await loop.run_in_executor(None, fit_seconds, X, y, 1, 1) for _ in range(2)])
    del X, y
    per_shard = max(1, round(cpu / SHARDS / one_tree))
    trees = per_shard * SHARDS
    present, missing = peers_available()
    ctx.log(f"peers: {trees} trees on {rows:,} rows; peers {present}, missing {missing}")
    systems = ["sklearn", *present]
    peers = {name: PeerProcess(name) for name in systems}
    forest: dict[str, list[float]] = {name: [] for name in ["zootrain", *systems]}
    search: dict[str, list[float]] = {name: [] for name in ["zootrain", *systems]}
    tiny: dict[str, list[Tiny]] = {name: [] for name in ["zootrain", *present]}
    try:
        for peer in peers.values():
            await peer.start()
        async with two_worker_stack(ctx, "peers") as (stack, client, observer, recover):

            async def zootrain_job(spec: dict[str, Any]) -> JobRun:
                job = await asyncio.wait_for(
                    run_job(client, observer, stack.paths, spec, stall=STALL, recover=recover),
                    3600,
                )
                if job.state != "succeeded":
                    raise RuntimeError(f"peers job {job.id} {job.state}: {job.job.get('error')}")
                return job

            # Warm-up, untimed: every system's first fit (imports, first children, caches),
            # and a batch of tiny tasks as large as the peers' below (ZooKeeper's JIT: the
            # first batch of 1,000 tiny tasks on a fresh server took about 10 % longer a task
            # than the next, in the same stack).
            for _ in range(2):
                await zootrain_job(tiny_spec("bench-peers-warm"))
            await tiny_batch(client, observer, stack.paths, min(tasks, 100) // 2)
            await zootrain_job(search_spec(search_rows // 4, 2))

            async def warm(name: str, peer: PeerProcess) -> None:
                await peer.call(what="forest", rows=rows, trees=2)
                await peer.call(what="search", rows=search_rows // 4, trees=2)
                if name != "sklearn":
                    await peer.call(what="tiny", tasks=min(tasks, 100))

            for name, peer in peers.items():
                await warm(name, peer)
            for round_ in range(runs):
                job = await zootrain_job(forest_spec(rows, per_shard))
                forest["zootrain"].append(job.finished - job.posted)
                for name, peer in peers.items():
                    forest[name].append(await peer.call(what="forest", rows=rows, trees=trees))
                job = await zootrain_job(search_spec(search_rows, search_trees))
                search["zootrain"].append(job.finished - job.posted)
                for name, peer in peers.items():
                    search[name].append(
                        await peer.call(what="search", rows=search_rows, trees=search_trees)
                    )
                # zootrain's tiny batch runs with the peers stopped, then they are started and
                # warmed again, untimed. The batch keeps both cores busy, and idle after their
                # first fits, Dask's and Ray's processes took a share of every tiny task's slot
                # (a probe of the same batch with and without them: 38.4 against 34.2 ms; here,
                # after their forests and searches, more: docs/performance.md).
                # Their own batches run beside zootrain's idle stack (a ZooKeeper server and
                # two workers waiting on watches).
                await asyncio.gather(*(peer.stop() for peer in peers.values()))
                batch = await tiny_batch(client, observer, stack.paths, tasks // 2)
                tiny["zootrain"].append(batch)
                for name, peer in peers.items():
                    await peer.start()
                    await warm(name, peer)
                for name in present:
                    wall = await peers[name].call(what="tiny", tasks=tasks)
                    tiny[name].append(Tiny(wall=wall, tasks=tasks))
                ctx.log(
                    f"peers round {round_ + 1}: forest "
                    + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in forest.items())
                    + "; search "
                    + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in search.items())
                    + "; tiny slot "
                    + ", ".join(f"{k} {v[-1].slot * 1000:.1f}ms" for k, v in tiny.items())
                )
    finally:
        await asyncio.gather(*(peer.stop() for peer in peers.values()))
    note = f"median of {runs}"
    return [
        *comparisons(
            f"peers: {SHARDS}-shard forest ({trees} trees, {rows:,} rows), 2 workers",
            forest,
            present,
            FOREST_GOAL_PEER,
            FOREST_GOAL_SKLEARN,
            note,
            command,
        ),
        *comparisons(
            f"peers: 8-candidate search ({FOLDS} folds, {search_trees} trees, "
            f"{search_rows:,} rows), 2 workers",
            search,
            present,
            SEARCH_GOAL_PEER,
            None,
            note,
            command,
        ),
        *tiny_figures(tiny, present, tasks, note, command),
        *[
            Figure(f"peers: {name} not installed", None, "", note="pip install -e '.[peers]'")
            for name in missing
        ],
    ]


def comparisons(
    label: str,
    times: dict[str, list[float]],
    present: list[str],
    peer_goal: float,
    sklearn_goal: float | None,
    note: str,
    command: str,
) -> list[Figure]:
    ours = statistics.median(times["zootrain"])
    medians = {name: statistics.median(times[name]) for name in present}
    faster = min(medians, key=lambda n: medians[n]) if medians else None
    figures = []
    for name in present:
        goal = name == faster
        figures.append(
            Figure(
                f"{label}: zootrain vs {NAMES[name]}" + (" (the faster peer)" if goal else ""),
                ours,
                "s",
                baseline=medians[name],
                baseline_name=NAMES[name],
                goal=f"≤ {peer_goal:.2f}x" if goal else "",
                met=ours / medians[name] <= peer_goal if goal else None,
                command=command,
                note=note,
            )
        )
    sklearn = statistics.median(times["sklearn"])
    figures.append(
        Figure(
            f"{label}: zootrain vs scikit-learn",
            ours,
            "s",
            baseline=sklearn,
            baseline_name=NAMES["sklearn"],
            goal=f"≤ {sklearn_goal:.2f}x" if sklearn_goal else "",
            met=ours / sklearn <= sklearn_goal if sklearn_goal else None,
            command=command,
            note=note,
        )
    )
    return figures


def tiny_figures(
    tiny: dict[str, list[Tiny]], present: list[str], tasks: int, note: str, command: str
) -> list[Figure]:
    ours = tiny["zootrain"]
    slot = statistics.median(t.slot for t in ours)
    coordination = statistics.median(t.coordination for t in ours)
    train = statistics.median(t.train for t in ours)
    figures = [
        Figure(
            f"peers: {tasks:,} tiny tasks, zootrain coordination per shard (slot time less "
            "training)",
            coordination,
            "s",
            baseline=train,
            baseline_name="train_seconds per shard",
            goal=f"≤ {TINY_GOAL * 1000:.0f} ms",
            met=coordination <= TINY_GOAL,
            command=command,
            note=f"{note}; slot time {slot * 1000:.1f} ms",
        )
    ]
    for name in present:
        theirs = statistics.median(t.slot for t in tiny[name])
        figures.append(
            Figure(
                f"peers: {tasks:,} tiny tasks, slot time per task: zootrain vs {NAMES[name]}",
                slot,
                "s",
                baseline=theirs,
                baseline_name=f"{NAMES[name]}, no-op tasks",
                command=command,
                note=note,
            )
        )
    return figures
