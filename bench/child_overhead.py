"""What the job service's child processes cost a call: ``python -m bench.child_overhead``.

The job service never imports scikit-learn: it checks a submitted spec
(zootrain.ml.validation.validate_submission, plus the job's cost) and predicts in one of its
child processes (app.pool). This measures those calls' latency, one at a time, without HTTP:
a small train spec and a 24-candidate search, and a one-row predict of a 50-tree forest,
each against the same work done in this process (what the service did before: validation on
its loop, the predict in a thread; and the least a table of scikit-learn's constraints checked
in-process could cost). Median and p99 over ``--requests`` calls after a warm-up, median of
``--runs`` runs.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

import numpy as np
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier

from app.pool import ChildPool
from zootrain.artifacts import ArtifactStore
from zootrain.ml import modelfile
from zootrain.ml.cost import job_cost
from zootrain.ml.validation import validate_submission
from zootrain.spec import JobSpec

SPECS: dict[str, dict[str, Any]] = {
    "train": {
        "model_name": "bench",
        "algorithm": "random_forest_classifier",
        "params": {"n_estimators": 50, "max_depth": 8},
        "dataset": {"kind": "builtin", "name": "iris"},
        "shards": 4,
    },
    "search (24 candidates)": {
        "model_name": "bench",
        "algorithm": "random_forest_classifier",
        "params": {"n_estimators": 20},
        "dataset": {"kind": "builtin", "name": "wine"},
        "kind": "search",
        "search": {
            "param_grid": {
                "max_depth": [2, 4, 8, None],
                "min_samples_leaf": [1, 2, 5],
                "criterion": ["gini", "entropy"],
            }
        },
    },
}


def in_process(spec: JobSpec) -> None:
    job_cost(validate_submission(spec))


async def measure(requests: int, directory: str) -> dict[tuple[str, str], list[float]]:
    X, y = load_iris(return_X_y=True)
    forest = RandomForestClassifier(n_estimators=50, max_depth=8, random_state=0, n_jobs=1)
    data = modelfile.dumps(forest.fit(X, y))
    uri, sha256 = ArtifactStore(directory).put(data)
    model = modelfile.loads(data)
    row = [[5.1, 3.5, 1.4, 0.2]]
    pool = ChildPool(1, artifacts=directory, cache_bytes=1 << 30)
    await pool.start()
    found: dict[tuple[str, str], list[float]] = {}
    try:
        for way in ("in this process (a thread)", "in a child (app.pool)"):
            times = []
            for i in range(20 + requests):
                started = time.perf_counter()
                if way.startswith("in this process"):
                    await asyncio.to_thread(model.predict, np.asarray(row, dtype=np.float64))
                else:
                    await pool.predict(uri, sha256, len(data), row)
                if i >= 20:
                    times.append(time.perf_counter() - started)
            found[("predict, 1 row", way)] = times
        for name, data in SPECS.items():
            spec = JobSpec.model_validate(data)
            for way in ("in this process", "in a child (app.pool)"):
                times = []
                for i in range(20 + requests):
                    started = time.perf_counter()
                    if way == "in this process":
                        in_process(spec)
                    else:
                        await pool.validate(spec)
                    if i >= 20:
                        times.append(time.perf_counter() - started)
                found[(name, way)] = times
    finally:
        await pool.close()
    return found


def main(argv: list[str] | None = None) -> int:
    import tempfile

    parser = argparse.ArgumentParser(prog="python -m bench.child_overhead", description=__doc__)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench-child-") as directory:
        for _ in range(args.runs):
            runs.append(asyncio.run(measure(args.requests, directory)))
    print("| call | made | p50 | p99 |")
    print("| --- | --- | --- | --- |")
    for key in runs[0]:
        p50 = statistics.median(statistics.median(run[key]) for run in runs)
        p99 = statistics.median(statistics.quantiles(run[key], n=100)[98] for run in runs)
        print(f"| {key[0]} | {key[1]} | {p50 * 1000:.2f} ms | {p99 * 1000:.2f} ms |")
    print(f"\nMedian of {args.runs} runs of {args.requests} calls each.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
