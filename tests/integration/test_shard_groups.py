"""Small jobs (workers/shard_groups.py): a job whose shards train in milliseconds has them
claimed together by one worker, trained by one child and merged there; each shard keeps its
own lock, record version, outcome and attempts, so a worker's death or a cancel is handled
shard by shard as for any claim."""

from __future__ import annotations

import itertools

import httpx
import pytest
from kazoo.client import KazooClient

from testkit.auth import AUTH
from testkit.stack import Stack, descendants, wait_for, wait_job
from tests.integration.conftest import (
    children,
    claim_lines,
    iris_spec,
    pid_alive,
    shard_records,
    start_api,
    submit,
    wait_until_empty,
)

pytestmark = pytest.mark.integration

# Seconds a shard: long enough to kill a worker, or cancel its job, while its child trains.
# Far over the default limit of a group (ZOOTRAIN_WORKER_GROUP_WORK): the workers below are
# given one that takes it, so that a group lives long enough to be seen.
SLOW = iris_spec(
    model_name="slow-group",
    dataset={"kind": "synthetic", "task": "classification", "n_samples": 40_000},
    params={"n_estimators": 60, "max_depth": 12},
    shards=2,
)
GROUP_ANYTHING = {"ZOOTRAIN_WORKER_GROUP_WORK": str(10**12)}


def grouped_running(kazoo: KazooClient, zk_root: str, job_id: str) -> dict[str, object] | None:
    """The shards' common record fields once both run under one claim, else None."""
    shards = shard_records(kazoo, zk_root, job_id)
    if [s["state"] for s in shards] != ["running", "running"]:
        return None
    assert len({(s["worker"], s["started_at"]) for s in shards}) == 1, shards
    return {"worker": shards[0]["worker"], "started_at": shards[0]["started_at"]}


def test_a_small_jobs_shards_are_claimed_together_and_merged_by_the_same_worker(
    stack: Stack, kazoo: KazooClient, zk_root: str
) -> None:
    api_url = start_api(stack, kazoo)
    workers = {
        name: stack.start_worker("worker", ZOOTRAIN_WORKER_ID=name) for name in ("alpha", "beta")
    }
    spec = iris_spec(model_name="small-job")  # 3 trees on iris: a few milliseconds a shard
    with httpx.Client(headers=AUTH, base_url=api_url, timeout=30) as client:
        for _ in range(3):
            job_id = submit(client, spec)["id"]
            view = wait_job(client, job_id)
            assert view["state"] == "succeeded", view
            shards = view["shards"]
            owner = shards[0]["worker"]
            # One claim: the same worker, the same moment, one attempt each.
            assert {(s["worker"], s["started_at"], s["attempts"]) for s in shards} == {
                (owner, shards[0]["started_at"], 1)
            }, shards
            # The claim's multi marked the job running too, at the same moment.
            assert view["started_at"] == shards[0]["started_at"], view
            (merge,) = view["merges"]
            assert merge["worker"] == owner, view["merges"]
            other = workers[({"alpha", "beta"} - {owner}).pop()]
            assert claim_lines(other, job_id, 0) == claim_lines(other, job_id, 1) == []
            for index in (0, 1):
                (line,) = claim_lines(workers[owner], job_id, index)
                assert line.endswith("attempt 1 (a group of 2)"), line
        assert children(kazoo, f"{zk_root}/locks") == []


def test_a_job_over_the_limit_has_each_shard_claimed_alone(
    stack: Stack, kazoo: KazooClient, zk_root: str
) -> None:
    api_url = start_api(stack, kazoo)
    # 0: never together, however small.
    worker = stack.start_worker("worker", ZOOTRAIN_WORKER_GROUP_WORK="0")
    with httpx.Client(headers=AUTH, base_url=api_url, timeout=30) as client:
        job_id = submit(client, iris_spec(model_name="alone"))["id"]
        view = wait_job(client, job_id)
        assert view["state"] == "succeeded", view
        first, second = view["shards"]
        assert first["started_at"] != second["started_at"], view["shards"]
        assert "a group of" not in worker.output()


def test_a_killed_group_owner_s_shards_are_reclaimed_and_the_job_succeeds(
    stack: Stack, kazoo: KazooClient, zk_root: str
) -> None:
    api_url = start_api(stack, kazoo)
    workers = {
        name: stack.start_worker("worker", ZOOTRAIN_WORKER_ID=name, **GROUP_ANYTHING)
        for name in ("alpha", "beta")
    }
    with httpx.Client(headers=AUTH, base_url=api_url, timeout=30) as client:
        job_id = submit(client, SLOW)["id"]
        wait_for(lambda: grouped_running(kazoo, zk_root, job_id), 60, "both shards claimed")
        held = grouped_running(kazoo, zk_root, job_id)
        assert held is not None
        victim_id = str(held["worker"])
        survivor_id = ({"alpha", "beta"} - {victim_id}).pop()
        workers[victim_id].kill()  # the worker and the child training its group

        view = wait_job(client, job_id, timeout=180)
        assert view["state"] == "succeeded", view
        for shard in view["shards"]:
            # Each shard's own attempt count and history: the lost attempt, then the redo.
            assert (shard["state"], shard["attempts"], shard["worker"]) == (
                "done",
                2,
                survivor_id,
            ), shard
            lost, redone = shard["history"]
            assert (lost["worker"], lost["outcome"]) == (victim_id, "lost"), lost
            assert (redone["worker"], redone["outcome"]) == (survivor_id, "done"), redone
        assert children(kazoo, f"{zk_root}/locks") == []


def test_cancelling_a_grouped_job_stops_every_shard_and_the_child(
    stack: Stack, kazoo: KazooClient, zk_root: str
) -> None:
    api_url = start_api(stack, kazoo)
    worker = stack.start_worker("worker", **GROUP_ANYTHING)
    idle = descendants(worker.popen.pid)
    with httpx.Client(headers=AUTH, base_url=api_url, timeout=30) as client:
        job_id = submit(client, SLOW)["id"]
        wait_for(lambda: grouped_running(kazoo, zk_root, job_id), 60, "both shards claimed")
        wait_for(lambda: descendants(worker.popen.pid) - idle, 30, "the group's child")
        trainers = descendants(worker.popen.pid) - idle

        cancelled = client.delete(f"/v1/jobs/{job_id}")
        assert cancelled.status_code == 200, cancelled.text

        for index in (0, 1):
            wait_for(
                lambda index=index: f"stopped {job_id}/{index} (cancelled)" in worker.output(),
                30,
                f"shard {index} to stop",
            )
        wait_until_empty(kazoo, f"{zk_root}/locks")
        wait_for(lambda: not any(pid_alive(p) for p in trainers), 15, "the child to die")
        view = client.get(f"/v1/jobs/{job_id}").json()
        assert view["state"] == "cancelled" and view["model"] is None, view
        for shard in view["shards"]:
            (stopped,) = shard["history"]
            assert stopped["outcome"] == "cancelled" and stopped["ended_at"], shard

        # The slot is free again: the next small job is trained.
        later = submit(client, iris_spec(model_name="after-group-cancel"))
        assert wait_job(client, later["id"])["state"] == "succeeded"


def test_a_group_holding_its_whole_job_passes_its_slot_to_the_merge(
    stack: Stack, kazoo: KazooClient, zk_root: str
) -> None:
    """A worker of one slot, two small jobs queued: the first job's group keeps the slot while
    its members settle, and the last one's merge claim takes it, before any scan claims the
    second job (a scan in between would read the second job only for the merge to take the
    slot)."""
    api_url = start_api(stack, kazoo)
    with httpx.Client(headers=AUTH, base_url=api_url, timeout=30) as client:
        ids = [submit(client, iris_spec(model_name=f"passed-{i}"))["id"] for i in range(4)]
        worker = stack.start_worker("worker", ZOOTRAIN_WORKER_CONCURRENCY="1")
        for job_id in ids:
            assert wait_job(client, job_id)["state"] == "succeeded"
    lines = worker.output().splitlines()

    def first(pattern: str) -> int:
        return next(i for i, line in enumerate(lines) if pattern in line)

    order = sorted(ids, key=lambda job_id: first(f"claim {job_id}/0 attempt 1 (a group of 2)"))
    for job_id, following in itertools.pairwise(order):
        assert first(f"claim {job_id}/merge attempt 1") < first(f"claim {following}/0 "), lines
    assert children(kazoo, f"{zk_root}/locks") == []
