"""The cost of training in rounds: a 200,000-row logistic regression at 4 shards, end to end.

    python -m bench.rounds                 # 200,000 rows, 4 shards, 3 runs (the median is printed)
    python -m bench.rounds --rows 20000 --runs 1
    python -m bench.rounds --against-threads 0   # interleaved with the children's BLAS/OpenMP
                                                 # at a thread per core (ratios printed)

A fresh standalone ZooKeeper server, the job service and two workers; the job trains in rounds
(zootrain/rounds.py). Printed: the rounds, the job's wall time (POST to `succeeded`), the time
per round (the round record's creation to its last write, over the rounds), the ZooKeeper
writes per round (the zxids the server spent between the round record's creation and its last
write: every write of every client on that server, a multi counting one), and beside it the
shards' compute per round: one shard's loss and gradient on its rows, and round 0's combine (one
L-BFGS step), measured in this process on the same rows, median of five. The ratio says what the
coordination costs a round beyond the arithmetic.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from kazoo.client import KazooClient

from testkit.auth import AUTH, TOKENS
from testkit.stack import Stack, wait_for
from testkit.zkserver import ZooKeeperCluster
from zootrain.ml import round_steps as rounds
from zootrain.ml.datasets import SyntheticDataset, dataset_task, load_dataset, split_dataset
from zootrain.ml.partition import shard_rows

SHARDS = 4


def spec(rows: int) -> dict[str, Any]:
    return {
        "model_name": "bench-rounds",
        "algorithm": "logistic_regression",
        "params": {"C": 1.0},
        "dataset": {
            "kind": "synthetic",
            "task": "classification",
            "n_samples": rows,
            "n_features": 20,
            "n_classes": 3,
            "n_informative": 10,
        },
        "shards": SHARDS,
    }


def one_job(
    directory: Path, zk: ZooKeeperCluster, rows: int, child_threads: int | None = None
) -> dict[str, float]:
    root = f"/bench-rounds-{uuid.uuid4().hex[:6]}"
    threads = {} if child_threads is None else {"ZOOTRAIN_WORKER_CHILD_THREADS": str(child_threads)}
    env = {
        **threads,
        "ZOOTRAIN_ZK_HOSTS": zk.hosts,
        "ZOOTRAIN_ZK_ROOT": root,
        "ZOOTRAIN_ARTIFACTS": str(directory / "artifacts"),
        "ZOOTRAIN_ZK_SESSION_TIMEOUT": "10",
        "ZOOTRAIN_HOUSEKEEPING_INTERVAL": "3600",
        "ZOOTRAIN_TOKENS": TOKENS,
    }
    stack = Stack(directory, env)
    kazoo = KazooClient(hosts=zk.hosts)
    kazoo.start(30)
    try:
        stack.start_api()
        stack.start_worker("worker")
        stack.start_worker("worker")
        with httpx.Client(headers=AUTH, base_url=stack.api_url or "", timeout=60) as client:
            started = time.perf_counter()
            response = client.post("/v1/jobs", json=spec(rows))
            response.raise_for_status()
            job_id = response.json()["id"]

            def finished() -> bool:
                state = client.get(f"/v1/jobs/{job_id}").json()["state"]
                if state in ("failed", "cancelled"):
                    raise RuntimeError(f"job {job_id} {state}")
                return bool(state == "succeeded")

            wait_for(finished, 3600, f"job {job_id}", interval=0.05)
            wall = time.perf_counter() - started
        _, stat = kazoo.get(f"{root}/jobs/{job_id}/rounds")
        view = client_view(stack, job_id)
        number = int(view["rounds"]["round"]) + 1  # the final round measures nothing new
        return {
            "rounds": float(number),
            "wall": wall,
            "per_round": (stat.mtime - stat.ctime) / 1000.0 / number,
            "writes_per_round": (stat.mzxid - stat.czxid) / number,
        }
    finally:
        kazoo.stop()
        kazoo.close()
        stack.stop()


def client_view(stack: Stack, job_id: str) -> dict[str, Any]:
    with httpx.Client(headers=AUTH, base_url=stack.api_url or "", timeout=60) as client:
        view: dict[str, Any] = client.get(f"/v1/jobs/{job_id}").json()
        return view


def compute_per_round(rows: int) -> tuple[float, float]:
    """One shard's loss and gradient, and one combine, on the job's own rows (seconds)."""
    dataset = SyntheticDataset.model_validate(spec(rows)["dataset"])
    X, y = load_dataset(dataset)
    split = split_dataset(X, y, task=dataset_task(dataset), test_size=0.2, seed=0)
    part = shard_rows(len(split.X_train), SHARDS, 0, "random", 0, y=split.y_train)
    Xs, ys, classes = split.X_train[part], split.y_train[part], split.classes
    state = rounds.start("logistic_regression", {}, Xs, classes, 0)
    local = []
    for _ in range(5):
        began = time.perf_counter()
        result = rounds.local("logistic_regression", {}, Xs, ys, classes, state)
        local.append(time.perf_counter() - began)
    combine = []
    for _ in range(5):
        began = time.perf_counter()
        rounds.combine("logistic_regression", {}, state, [result] * SHARDS)
        combine.append(time.perf_counter() - began)
    return statistics.median(local), statistics.median(combine)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--against-threads",
        type=int,
        help="also run, interleaved, with ZOOTRAIN_WORKER_CHILD_THREADS at this value (0: the "
        "native libraries' own thread per core in every child) and print the ratio",
    )
    args = parser.parse_args()
    settings: list[int | None] = [None]
    if args.against_threads is not None:
        settings.append(args.against_threads)
    runs: dict[int | None, list[dict[str, float]]] = {t: [] for t in settings}
    with tempfile.TemporaryDirectory(prefix="bench-rounds-") as scratch:
        base = Path(scratch)
        zk = ZooKeeperCluster(base / "zk", size=1)
        zk.start()
        try:
            for run in range(args.runs):
                for threads in settings:  # interleaved: a slow spell falls on both
                    directory = base / f"run-{run}-{threads}"
                    directory.mkdir()
                    runs[threads].append(one_job(directory, zk, args.rows, threads))
        finally:
            zk.stop()
    local, combine = compute_per_round(args.rows)
    compute = local + combine
    print(
        "| child threads | rows | shards | rounds | wall s | s/round | ZooKeeper writes/round "
        "| shard compute s/round | combine s/round | s/round ÷ compute |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    medians = {}
    for threads in settings:
        done = runs[threads]
        median = {key: float(np.median([r[key] for r in done])) for key in done[0]}
        medians[threads] = median
        label = "default (1)" if threads is None else str(threads)
        print(
            f"| {label} | {args.rows:,} | {SHARDS} | {median['rounds']:.0f} | {median['wall']:.2f} "
            f"| {median['per_round']:.3f} | {median['writes_per_round']:.1f} | {local:.4f} "
            f"| {combine:.4f} | {median['per_round'] / compute:.1f} |"
        )
    for threads in settings:
        print(f"(child threads {threads}: median of {len(runs[threads])} runs; {runs[threads]})")
    if args.against_threads is not None:
        ours, other = medians[None], medians[args.against_threads]
        print(
            f"s/round default ÷ {args.against_threads} threads: "
            f"{ours['per_round'] / other['per_round']:.2f}x; wall: "
            f"{ours['wall'] / other['wall']:.2f}x"
        )


if __name__ == "__main__":
    main()
