"""What validating a submit in a child costs: ``python -m bench.submit_validation``.

The job service checks a spec against scikit-learn (zootrain.ml.validation.validate_submission,
plus the job's cost) in one of its prediction processes (app.pool), since it never imports
scikit-learn itself. This measures that call's latency, one at a time, for a small train spec
and a 24-candidate search, against the same validation made in this process (what the service
did before, and the least a table of scikit-learn's constraints checked in-process could cost).
Median and p99 over ``--requests`` calls after a warm-up, median of three runs.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

from app.pool import ChildPool
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
    pool = ChildPool(1, artifacts=directory, cache_bytes=1 << 20)
    await pool.start()
    found: dict[tuple[str, str], list[float]] = {}
    try:
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

    parser = argparse.ArgumentParser(prog="python -m bench.submit_validation", description=__doc__)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench-validation-") as directory:
        for _ in range(args.runs):
            runs.append(asyncio.run(measure(args.requests, directory)))
    print("| spec | validated | p50 | p99 |")
    print("| --- | --- | --- | --- |")
    for key in runs[0]:
        p50 = statistics.median(statistics.median(run[key]) for run in runs)
        p99 = statistics.median(statistics.quantiles(run[key], n=100)[98] for run in runs)
        print(f"| {key[0]} | {key[1]} | {p50 * 1000:.2f} ms | {p99 * 1000:.2f} ms |")
    print(f"\nMedian of {args.runs} runs of {args.requests} calls each.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
