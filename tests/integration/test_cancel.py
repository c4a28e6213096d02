"""Cancel: a queued job is never trained; a running job's training process is killed."""

from __future__ import annotations

import httpx
import pytest
from kazoo.client import KazooClient

from testkit.auth import AUTH
from testkit.stack import Stack, descendants, wait_for, wait_job
from tests.integration.conftest import (
    assert_problem,
    children,
    claim_lines,
    iris_spec,
    pid_alive,
    read_json,
    shard_records,
    start_api,
    submit,
    wait_until_empty,
)

pytestmark = pytest.mark.integration

# Long enough that it is still training when the DELETE arrives (many seconds a shard).
SLOW_SPEC = iris_spec(
    model_name="slow-forest",
    dataset={"kind": "synthetic", "task": "classification", "n_samples": 200_000},
    params={"n_estimators": 300},
    shards=2,
)


def test_cancel_queued_job(stack: Stack, kazoo: KazooClient, zk_root: str) -> None:
    api_url = start_api(stack, kazoo)
    with httpx.Client(headers=AUTH, base_url=api_url, timeout=30) as client:
        job = submit(client, iris_spec(model_name="never-trained"))
        job_id = job["id"]
        assert len(children(kazoo, f"{zk_root}/queue")) == 1

        cancelled = client.delete(f"/v1/jobs/{job_id}")
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["state"] == "cancelled"
        assert cancelled.json()["finished_at"]
        assert children(kazoo, f"{zk_root}/queue") == []
        assert read_json(kazoo, f"{zk_root}/jobs/{job_id}")["state"] == "cancelled"

        again = client.delete(f"/v1/jobs/{job_id}")
        assert again.status_code == 200, again.text
        assert again.json()["state"] == "cancelled"
        assert again.json()["finished_at"] == cancelled.json()["finished_at"]

        # A worker arriving afterwards never trains it; a later job shows it is working.
        worker = stack.start_worker()
        later = submit(client, iris_spec(model_name="trained-later"))
        assert wait_job(client, later["id"])["state"] == "succeeded"

        view = client.get(f"/v1/jobs/{job_id}").json()
        assert view["state"] == "cancelled"
        for shard in view["shards"]:  # never claimed: left pending or marked cancelled
            assert shard["state"] in ("pending", "cancelled"), shard
            assert shard["attempts"] == 0 and shard["worker"] is None, shard
        assert job_id not in worker.output()
        assert_problem(client.get("/v1/models/never-trained/versions"), 404)


def test_cancel_running_job_kills_training(stack: Stack, kazoo: KazooClient, zk_root: str) -> None:
    api_url = start_api(stack, kazoo)
    worker = stack.start_worker()
    idle_children = descendants(worker.popen.pid)
    with httpx.Client(headers=AUTH, base_url=api_url, timeout=30) as client:
        job_id = submit(client, SLOW_SPEC)["id"]

        def training() -> bool:
            return any(s["state"] == "running" for s in shard_records(kazoo, zk_root, job_id))

        wait_for(training, 60, "a shard to be running")
        running = next(s for s in shard_records(kazoo, zk_root, job_id) if s["state"] == "running")
        index = running["index"]
        lock = f"{job_id}.{index:04d}"
        assert lock in children(kazoo, f"{zk_root}/locks")
        wait_for(lambda: descendants(worker.popen.pid) - idle_children, 30, "the training child")
        trainers = descendants(worker.popen.pid) - idle_children
        assert claim_lines(worker, job_id, index)

        cancelled = client.delete(f"/v1/jobs/{job_id}")
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["state"] == "cancelled"

        wait_until_empty(kazoo, f"{zk_root}/locks")
        wait_for(
            lambda: f"stopped {job_id}/{index} (cancelled)" in worker.output(),
            15,
            "the worker to stop the shard",
        )
        wait_for(lambda: not any(pid_alive(p) for p in trainers), 15, "the training child to die")
        assert worker.alive()

        view = client.get(f"/v1/jobs/{job_id}").json()
        assert view["state"] == "cancelled"
        assert view["model"] is None
        assert all(s["state"] != "done" for s in view["shards"])
        (stopped,) = view["shards"][index]["history"]  # the attempt the cancel ended
        assert stopped["outcome"] == "cancelled" and stopped["ended_at"], stopped
        assert children(kazoo, f"{zk_root}/queue") == []
        assert children(kazoo, f"{zk_root}/models") == []
        again = client.delete(f"/v1/jobs/{job_id}")
        assert again.status_code == 200 and again.json()["state"] == "cancelled"

        # The worker is free again and takes the next job.
        later = submit(client, iris_spec(model_name="after-cancel"))
        assert wait_job(client, later["id"])["state"] == "succeeded"
        assert read_json(kazoo, f"{zk_root}/jobs/{job_id}")["state"] == "cancelled"


def test_cancel_while_merging_publishes_nothing(
    stack: Stack, kazoo: KazooClient, zk_root: str
) -> None:
    api_url = start_api(stack, kazoo)
    worker = stack.start_worker()
    # Many small trees: quick shards, a merge (load, pool, save) of several seconds.
    spec = iris_spec(model_name="never-published", params={"n_estimators": 700, "max_depth": 3})
    with httpx.Client(headers=AUTH, base_url=api_url, timeout=30) as client:
        job_id = submit(client, spec)["id"]
        wait_for(
            lambda: client.get(f"/v1/jobs/{job_id}").json()["state"] == "merging",
            60,
            "the job to be merging",
        )
        cancelled = client.delete(f"/v1/jobs/{job_id}")
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["state"] == "cancelled"

        wait_for(lambda: f"stopped {job_id}/merge" in worker.output(), 30, "the merge to stop")
        wait_until_empty(kazoo, f"{zk_root}/locks")
        view = client.get(f"/v1/jobs/{job_id}").json()
        assert view["state"] == "cancelled" and view["model"] is None
        assert all(s["state"] == "done" for s in view["shards"])
        assert f"from job {job_id}" not in worker.output()
        versions = client.get("/v1/models/never-published/versions")
        assert versions.status_code == 404 or versions.json() == [], versions.text
        assert children(kazoo, f"{zk_root}/queue") == []
