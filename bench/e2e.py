"""3. End to end: a 4-shard random forest trained by zootrain against scikit-learn's own fit.

The job uses ``partition: replicate``: every shard trains on all of the job's training rows and
grows ``n_estimators`` trees with its own seed, so the merged forest is the same kind of forest
as scikit-learn's ``RandomForestClassifier(n_estimators=shards x n_estimators)`` fitted on the
same rows (the job's own split, computed by zootrain's code), which is the baseline: with
``n_jobs=2`` against 2 workers, and ``n_jobs=1`` against 1 worker. zootrain's time runs from
sending the POST to seeing the job `succeeded` (data watch); scikit-learn's is ``fit`` alone.
The tree count is calibrated in the run so that the forest takes about ``--e2e-cpu`` seconds
of CPU (default 20) on this machine as it is loaded now.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np
from sklearn.ensemble import RandomForestClassifier

from bench.figures import Figure
from bench.harness import Context
from bench.http_load import JobRun, run_job, two_worker_stack
from testkit.bench_specs import E2E_SEED as SEED
from testkit.bench_specs import E2E_SHARDS as SHARDS
from testkit.bench_specs import E2E_TEST_SIZE as TEST_SIZE
from testkit.bench_specs import e2e_dataset as dataset
from testkit.bench_specs import e2e_spec as job_spec
from testkit.bench_specs import tiny_spec
from zootrain.ml.datasets import SyntheticDataset, dataset_task, load_dataset, split_dataset

GOAL = 1.10
STALL = 30.0  # no shard running this long after the 202: the idle workers missed the job


def training_rows(rows: int) -> tuple[np.ndarray, np.ndarray]:
    """The rows every shard of the job trains on: zootrain's own load and split."""
    spec = SyntheticDataset.model_validate(dataset(rows))
    X, y = load_dataset(spec)
    split = split_dataset(X, y, task=dataset_task(spec), test_size=TEST_SIZE, seed=SEED)
    return split.X_train, split.y_train


def fit_seconds(X: np.ndarray, y: np.ndarray, trees: int, n_jobs: int) -> float:
    forest = RandomForestClassifier(n_estimators=trees, n_jobs=n_jobs, random_state=SEED)
    started = time.perf_counter()
    forest.fit(X, y)
    return time.perf_counter() - started


async def run(ctx: Context) -> list[Figure]:
    rows = int(ctx.options.get("e2e_rows") or (20_000 if ctx.quick else 100_000))
    cpu = float(ctx.options.get("e2e_cpu") or (3.0 if ctx.quick else 20.0))
    command = ctx.command("e2e")
    loop = asyncio.get_running_loop()
    X, y = await loop.run_in_executor(None, training_rows, rows)
    one_tree = min([await loop.run_in_executor(None, fit_seconds, X, y, 1, 1) for _ in range(2)])
    per_shard = max(1, round(cpu / SHARDS / one_tree))
    trees = per_shard * SHARDS
    ctx.log(
        f"e2e: {len(X)} training rows, one tree {one_tree:.2f}s → {per_shard} trees per shard, "
        f"{trees} in all"
    )
    spec = job_spec(rows, per_shard)
    results: dict[int, tuple[JobRun, float]] = {}
    async with two_worker_stack(ctx, "e2e") as (stack, client, observer, recover):
        # Warm-up: both workers' first children, first imports, first artifact writes.
        await asyncio.gather(
            *(
                asyncio.wait_for(
                    run_job(
                        client,
                        observer,
                        stack.paths,
                        tiny_spec(),
                        stall=STALL,
                        recover=recover,
                    ),
                    300,
                )
                for _ in range(2)
            )
        )
        for count in (2, 1):
            if count == 1:
                stack.workers()[-1].stop()
            baseline = await loop.run_in_executor(None, fit_seconds, X, y, trees, count)
            ctx.log(f"e2e: scikit-learn n_jobs={count}: {baseline:.1f}s")
            job = await asyncio.wait_for(
                run_job(client, observer, stack.paths, spec, stall=STALL, recover=recover),
                3600,
            )
            if job.state != "succeeded":
                raise RuntimeError(f"e2e job {job.id} {job.state}: {job.job.get('error')}")
            ctx.log(f"e2e: zootrain, {count} worker(s): {job.finished - job.posted:.1f}s")
            results[count] = (job, baseline)
    ctx.shared["large_jobs"] = [job for job, _ in results.values()]
    figures: list[Figure] = []
    for count, (job, baseline) in results.items():
        wall = job.finished - job.posted
        ratio = wall / baseline
        train = sum(float(s.get("train_seconds") or 0) for s in job.shards)
        figures.append(
            Figure(
                f"e2e: {SHARDS}-shard forest ({trees} trees, {len(X):,} rows), "
                f"{count} worker{'s' if count > 1 else ''}",
                wall,
                "s",
                baseline=baseline,
                baseline_name=f"sklearn fit, n_jobs={count}",
                goal=f"≤ {GOAL:.2f}x",
                met=ratio <= GOAL,
                command=command,
                note=f"shards trained {train:.1f} s in all"
                + ("; STALLED, workers restarted" if job.stalled else ""),
            )
        )
    return figures
