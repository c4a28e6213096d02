"""Warm training children (workers/processes.py): a child whose task succeeded runs the next
task; one that failed, ran out of time or was cancelled never does; and what a warm child keeps
of a job (workers/train_child.py) leaves the merged model the same file as a fresh child's."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from testkit.bench_specs import tiny_spec
from workers import processes, train_child
from zootrain.artifacts import ArtifactStore
from zootrain.ml import modelfile
from zootrain.spec import JobSpec

# Run in the children: module-level, so that a child resolves them by name.
PID = "tests.unit.test_warm_children:child_pid"
RAISE = "tests.unit.test_warm_children:child_raise"
SLEEP = "tests.unit.test_warm_children:child_sleep"
GROW = "tests.unit.test_warm_children:child_grow"


def child_pid(payload: dict[str, Any]) -> dict[str, Any]:
    return {"pid": os.getpid()}


def child_raise(payload: dict[str, Any]) -> dict[str, Any]:
    raise ValueError(f"asked to fail with pid {os.getpid()}")


def child_sleep(payload: dict[str, Any]) -> dict[str, Any]:
    time.sleep(payload["seconds"])
    return {"pid": os.getpid()}


def child_grow(payload: dict[str, Any]) -> dict[str, Any]:
    held = np.ones(payload["bytes"] // 8)  # touched: resident, not only reserved
    return {"pid": os.getpid(), "sum": float(held.sum())}


@pytest.fixture(autouse=True)
def no_idle_children() -> Iterator[None]:
    processes.close_idle()
    yield
    processes.close_idle()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie not reaped yet by its forkserver counts as gone.
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split(") ")[1][0] != "Z"


def wait_gone(pid: int, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return False


def test_a_child_whose_task_succeeded_runs_the_next_task() -> None:
    async def scenario() -> tuple[int, int]:
        first = await processes.run_in_child(PID, {})
        assert processes.idle_children() == 1
        second = await processes.run_in_child(PID, {})
        return first["pid"], second["pid"]

    first, second = asyncio.run(scenario())
    assert first == second != os.getpid()


def test_a_child_whose_task_raised_is_never_reused() -> None:
    async def scenario() -> tuple[int, int]:
        await processes.run_in_child(PID, {})
        with pytest.raises(processes.ChildFailed, match="asked to fail with pid") as failed:
            await processes.run_in_child(RAISE, {})
        assert processes.idle_children() == 0
        failed_pid = int(str(failed.value).rsplit(" ", 1)[1])
        after = await processes.run_in_child(PID, {})
        return failed_pid, after["pid"]

    failed_pid, after = asyncio.run(scenario())
    assert after != failed_pid
    assert wait_gone(failed_pid)


def test_a_child_past_its_time_limit_is_killed_not_reused() -> None:
    async def scenario() -> tuple[int, int]:
        warm = (await processes.run_in_child(PID, {}))["pid"]
        with pytest.raises(processes.TimeLimitExceeded):
            await processes.run_in_child(SLEEP, {"seconds": 60}, time_limit=0.5)
        after = (await processes.run_in_child(PID, {}))["pid"]
        return warm, after

    warm, after = asyncio.run(scenario())
    assert warm != after
    assert wait_gone(warm)


def test_a_cancelled_task_kills_its_warm_child() -> None:
    async def scenario() -> int:
        warm = (await processes.run_in_child(PID, {}))["pid"]
        task = asyncio.ensure_future(processes.run_in_child(SLEEP, {"seconds": 60}))
        await asyncio.sleep(0.5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert processes.idle_children() == 0
        return warm

    assert wait_gone(asyncio.run(scenario()))


def test_a_child_that_grew_is_not_reused(monkeypatch: pytest.MonkeyPatch) -> None:
    """Memory a task freed may stay mapped in its child and count against the next task's
    memory limit: a child whose peak grew past WARM_MAX_GROWTH exits after its task."""
    monkeypatch.setattr(processes, "WARM_MAX_GROWTH", 16 << 20)

    async def scenario() -> tuple[int, int]:
        grown = (await processes.run_in_child(GROW, {"bytes": 64 << 20}))["pid"]
        assert processes.idle_children() == 0
        after = (await processes.run_in_child(PID, {}))["pid"]
        return grown, after

    grown, after = asyncio.run(scenario())
    assert grown != after
    assert wait_gone(grown)


def test_affinity_picks_the_child_that_ran_the_same_job() -> None:
    async def scenario() -> tuple[int, int, int]:
        # Two children at once, one for each job, both idle afterwards.
        a, b = await asyncio.gather(
            processes.run_in_child(SLEEP, {"seconds": 0.3}, affinity="job-a"),
            processes.run_in_child(SLEEP, {"seconds": 0.3}, affinity="job-b"),
        )
        assert processes.idle_children() == 2
        again = await processes.run_in_child(PID, {}, affinity="job-a")
        return a["pid"], b["pid"], again["pid"]

    a, b, again = asyncio.run(scenario())
    assert a != b
    assert again == a


def test_idle_children_exit_when_let_go() -> None:
    pid = asyncio.run(processes.run_in_child(PID, {}))["pid"]
    assert alive(pid)
    processes.close_idle()
    assert wait_gone(pid)


def test_a_warm_merge_writes_the_same_model_file_as_a_fresh_one(tmp_path: Path) -> None:
    """The merge reuses the models this child trained (and the job's rows): the merged model
    (every tree's arrays), its metrics and everything published from it are those of a merge
    that loaded every shard's file. (The files' bytes differ between any two dumps: skops
    records Python object ids.)"""
    spec = JobSpec.model_validate(tiny_spec(shards=3, trees=3)).model_dump(mode="json")
    base = {"spec": spec, "artifacts": str(tmp_path), "dataset_source": None}
    results = [train_child.train_shard({**base, "index": i}) for i in range(3)]
    shards = [
        {
            "role": "shard",
            "artifact": r["artifact"],
            "sha256": r["sha256"],
            "rows": r["rows"],
            "metrics": r["metrics"],
        }
        for r in results
    ]
    assert set(train_child._WARM.models) == {r["sha256"] for r in results}
    warm = train_child.merge_job({**base, "shards": shards})
    train_child._WARM = train_child._Warm()  # a fresh child: nothing kept
    fresh = train_child.merge_job({**base, "shards": shards})
    volatile = {"artifact", "sha256", "size"}
    assert {k: v for k, v in warm.items() if k not in volatile} == {
        k: v for k, v in fresh.items() if k not in volatile
    }
    store = ArtifactStore(str(tmp_path))
    models = [modelfile.loads(store.get(r["artifact"], r["sha256"])) for r in (warm, fresh)]
    assert_same_state(*models)
    assert len(models[0].estimators_) == 9


def assert_same_state(a: Any, b: Any, where: str = "model") -> None:
    """Two fitted objects hold the same state: same types, equal arrays, recursively."""
    assert type(a) is type(b), where
    if isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and np.array_equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_same_state(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same_state(x, y, f"{where}[{i}]")
    elif hasattr(a, "__getstate__") and not isinstance(a, str | int | float | bool | type(None)):
        assert_same_state(a.__getstate__(), b.__getstate__(), where)
    else:
        assert a == b, where
