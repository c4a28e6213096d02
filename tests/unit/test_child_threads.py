"""A training child's native thread pools (workers/processes.py): held to
ZOOTRAIN_WORKER_CHILD_THREADS, so that a worker's children do not each start a thread per core."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from typing import Any

import pytest

from workers import processes

# Run in the children: module-level, so that a child resolves them by name.
POOLS = "tests.unit.test_child_threads:child_pools"
SESSION = "tests.unit.test_child_threads:session_pools"


def child_pools(payload: dict[str, Any]) -> dict[str, Any]:
    import scipy.linalg  # noqa: F401  (scipy's own OpenBLAS, as the estimators load it)
    import threadpoolctl

    info: list[dict[str, Any]] = threadpoolctl.threadpool_info()
    pools = {f"{p['user_api']}:{p['filepath']}": p["num_threads"] for p in info}
    return {"pools": pools, "env": os.environ.get("OPENBLAS_NUM_THREADS")}


def session_pools(payload: dict[str, Any]) -> Any:
    return lambda message: child_pools(message)


@pytest.fixture(autouse=True)
def restore() -> Iterator[None]:
    processes.close_idle()
    yield
    processes.configure(2, 1)
    processes.close_idle()


@pytest.mark.parametrize("threads", [1, 2])
def test_a_training_child_holds_its_pools_to_the_setting(threads: int) -> None:
    processes.configure(0, threads)
    answer = asyncio.run(processes.run_in_child(POOLS, {}))
    blas = {name: n for name, n in answer["pools"].items() if name.startswith("blas:")}
    assert blas, answer  # numpy's and scipy's OpenBLAS are loaded: the check sees something
    assert set(answer["pools"].values()) == {threads}, answer
    assert answer["env"] == str(threads)


def test_a_session_child_holds_its_pools_too() -> None:
    processes.configure(0, 1)

    async def scenario() -> dict[str, Any]:
        session = await processes.start_session(SESSION, {}, timeout=60)
        try:
            return await session.request({}, 60)
        finally:
            await session.close()

    answer = asyncio.run(scenario())
    assert set(answer["pools"].values()) == {1}, answer


def test_zero_leaves_the_libraries_their_own_default() -> None:
    processes.configure(0, 0)
    answer = asyncio.run(processes.run_in_child(POOLS, {}))
    assert answer["env"] is None or answer["env"] == os.environ.get("OPENBLAS_NUM_THREADS")
    cores = len(os.sched_getaffinity(0))
    # OpenBLAS starts a thread per core it may use (capped by its build, never above the cores).
    blas = [n for name, n in answer["pools"].items() if name.startswith("blas:")]
    assert blas and all(1 <= n <= cores for n in blas), answer
