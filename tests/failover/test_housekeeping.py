"""Housekeeping: one elected leader among the workers (another takes over when it dies), finished
jobs deleted after the retention, orphan queue entries removed."""

from __future__ import annotations

import time

import httpx
import pytest
from kazoo.client import KazooClient

from testkit.auth import AUTH
from testkit.stack import Stack, wait_for, wait_job
from testkit.zkserver import ZooKeeperCluster, watches_by_path
from tests.failover.helpers import (
    TERMINAL,
    children,
    iris_spec,
    job_record,
    slow_spec,
    versions_by_job,
)

pytestmark = pytest.mark.integration

SESSION_TIMEOUT = 4.0  # tests/conftest.py settings_env
SLACK = 16.0  # shared 2-core machine


def leading(output: str) -> int:
    return output.count("leading housekeeping")


def submit(client: httpx.Client, spec: dict[str, object], **headers: str) -> str:
    response = client.post("/v1/jobs", json=spec, headers=headers)
    assert response.status_code == 202, response.text
    job_id: str = response.json()["id"]
    return job_id


def test_exactly_one_leader_and_another_takes_over_when_it_is_killed(
    stack: Stack, kazoo: KazooClient, zk_root: str, zookeeper: ZooKeeperCluster
) -> None:
    workers = {name: stack.start_worker("hk", ZOOTRAIN_WORKER_ID=name) for name in ("hk-a", "hk-b")}
    election = f"{zk_root}/election"
    wait_for(lambda: len(children(kazoo, election)) == 2, 30, "both workers to stand")
    wait_for(
        lambda: any(leading(w.output()) for w in workers.values()), 30, "a housekeeping leader"
    )
    # The leader is the candidate with the lowest sequence number ...
    first, second = sorted(children(kazoo, election), key=lambda n: int(n[-10:]))
    leader = kazoo.get(f"{election}/{first}")[0].decode()
    follower = ({"hk-a", "hk-b"} - {leader}).pop()
    assert kazoo.get(f"{election}/{second}")[0].decode() == follower
    assert leading(workers[leader].output()) == 1
    # ... and the other is parked on a watch of it, which ZooKeeper itself lists: it cannot
    # lead until that node is gone (no waiting to see whether a second leader shows up).
    follower_session = kazoo.exists(f"{election}/{second}").ephemeralOwner
    port = zookeeper.nodes[0].client_port
    wait_for(
        lambda: follower_session in watches_by_path(port).get(f"{election}/{first}", set()),
        30,
        "the follower to watch the leader's candidate node",
    )
    assert leading(workers[follower].output()) == 0, workers[follower].output()[-2000:]

    killed_at = time.monotonic()
    workers[leader].kill()  # SIGKILL: its candidate node goes only when its session expires
    wait_for(
        lambda: leading(workers[follower].output()) >= 1,
        SESSION_TIMEOUT + SLACK,
        "the other worker to take over housekeeping",
    )
    took = time.monotonic() - killed_at
    assert leading(workers[follower].output()) == 1
    remaining = children(kazoo, election)
    assert [kazoo.get(f"{election}/{n}")[0].decode() for n in remaining] == [follower]
    assert workers[follower].alive()
    print(f"housekeeping: {follower} took over {took:.1f}s after {leader} was killed")


def test_finished_jobs_are_deleted_after_the_retention_and_running_ones_are_not(
    stack: Stack, kazoo: KazooClient, zk_root: str
) -> None:
    stack.start_api()
    stack.start_worker(
        "worker",
        ZOOTRAIN_JOB_RETENTION="1",
        ZOOTRAIN_HOUSEKEEPING_INTERVAL="0.5",
        ZOOTRAIN_WORKER_CONCURRENCY="2",
    )
    with httpx.Client(headers=AUTH, base_url=str(stack.api_url), timeout=30) as client:
        slow = submit(client, slow_spec("retained-slow", n_samples=20_000))
        quick = submit(client, iris_spec("retained-quick"))

        # The quick job publishes, then its record and shards go about a second later.
        wait_for(lambda: quick in versions_by_job(kazoo, zk_root), 60, "the quick job to publish")
        wait_for(
            lambda: not kazoo.exists(f"{zk_root}/jobs/{quick}"), 30, "the quick job to be deleted"
        )
        assert not kazoo.exists(f"{zk_root}/jobs/{quick}/shards")
        assert client.get(f"/v1/jobs/{quick}").status_code == 404

        # The slow job is never deleted before it is finished.
        last = None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            record = job_record(kazoo, zk_root, slow)
            if record is None:
                break
            last = record["state"]
            time.sleep(0.05)
        assert last == "succeeded", f"deleted while {last}"
        assert not kazoo.exists(f"{zk_root}/jobs/{slow}")

    # Only the jobs went: their published versions stay, nothing is left queued.
    published = versions_by_job(kazoo, zk_root)
    assert sorted(published) == sorted([quick, slow])
    assert children(kazoo, f"{zk_root}/jobs") == []
    assert children(kazoo, f"{zk_root}/queue") == []


def test_a_key_whose_job_was_deleted_by_retention_submits_a_new_job(
    stack: Stack, kazoo: KazooClient, zk_root: str
) -> None:
    stack.start_api()
    stack.start_worker("worker", ZOOTRAIN_JOB_RETENTION="1", ZOOTRAIN_HOUSEKEEPING_INTERVAL="0.5")
    spec = iris_spec("retained-key")
    with httpx.Client(headers=AUTH, base_url=str(stack.api_url), timeout=30) as client:
        first = submit(client, spec, **{"Idempotency-Key": "kept-key"})
        wait_for(lambda: first in versions_by_job(kazoo, zk_root), 60, "the job to publish")
        wait_for(lambda: not kazoo.exists(f"{zk_root}/jobs/{first}"), 30, "its deletion")
        # The key no longer stands for a job (queue.py: "the key no longer stands for it"):
        # the same request is a new submit.
        response = client.post("/v1/jobs", json=spec, headers={"Idempotency-Key": "kept-key"})
        assert response.status_code == 202, response.text
        second = response.json()["id"]
        assert second != first
        wait_for(lambda: second in versions_by_job(kazoo, zk_root), 60, "the new job to publish")


def test_orphan_queue_entries_are_removed_by_the_leader(
    stack: Stack, kazoo: KazooClient, zk_root: str
) -> None:
    stack.start_api()
    worker = stack.start_worker("worker", ZOOTRAIN_HOUSEKEEPING_INTERVAL="0.5")
    wait_for(lambda: leading(worker.output()), 30, "the worker to lead housekeeping")
    with httpx.Client(headers=AUTH, base_url=str(stack.api_url), timeout=30) as client:
        job_id = submit(client, iris_spec("orphaned"))
        view = wait_job(client, job_id, timeout=60)
        assert view["state"] == "succeeded", view
    assert children(kazoo, f"{zk_root}/queue") == []
    record_stat = kazoo.exists(f"{zk_root}/jobs/{job_id}")

    # Entries no finisher will delete: one for a succeeded job, one for a job that never was.
    ghost = f"{int(time.time() * 1000):012x}0badf00d"
    orphans = [
        kazoo.create(f"{zk_root}/queue/4-{job_id}-", job_id.encode(), sequence=True),
        kazoo.create(f"{zk_root}/queue/4-{ghost}-", ghost.encode(), sequence=True),
    ]
    assert len(children(kazoo, f"{zk_root}/queue")) == 2, orphans
    wait_for(
        lambda: children(kazoo, f"{zk_root}/queue") == [], 30, "the leader to remove the orphans"
    )
    wait_for(lambda: "housekeeping removed" in worker.output(), 15, "the sweep's report")

    # Nothing else was touched: the job, its single version, no ghost job.
    assert kazoo.exists(f"{zk_root}/jobs/{job_id}").mzxid == record_stat.mzxid
    assert (job_record(kazoo, zk_root, job_id) or {}).get("state") in TERMINAL
    assert children(kazoo, f"{zk_root}/jobs") == [job_id]
    published = versions_by_job(kazoo, zk_root)
    assert list(published) == [job_id] and len(published[job_id]) == 1
    assert worker.output().count(f"claim {job_id}/merge") == 1
