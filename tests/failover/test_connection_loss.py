"""A worker's ZooKeeper connection drops at an exact request (the request never reaches the
server; the session survives and reconnects at once). The drop is made exact by a proxy
(zkproxy.py) between the worker and ZooKeeper.

- on the publishing multi, which also releases the merge lock: the lock must still go, or
  nobody else can take it and /locks keeps a node for a claim that ended;
- on the multi that records a trained shard as done (and releases its lock): the result must
  still be recorded (the write is version-checked, so retrying it is safe), not thrown away at
  the cost of an attempt, and the lock must go;
- anywhere in a claim, a settle or the publish, with the write applied or not, and a job that
  has one attempt: the job still succeeds, on that attempt.
"""

from __future__ import annotations

import httpx
import pytest
from kazoo.client import KazooClient

from testkit.auth import AUTH
from testkit.stack import Stack, wait_for, wait_job
from testkit.zkproxy import MULTI, SET_DATA, ZooKeeperProxy
from tests.failover.helpers import (
    children,
    describe_locks,
    iris_spec,
    versions_by_job,
    wait_layout,
)

pytestmark = pytest.mark.integration


def test_a_publish_cut_off_by_a_connection_drop_still_releases_the_merge_lock(
    stack: Stack, proxy: ZooKeeperProxy, kazoo: KazooClient, zk_root: str
) -> None:
    """The merge lock is released by the publishing multi itself: cut off, it is sent again
    once the session is back, and the lock goes with it (or it was applied, lock and all)."""
    stack.start_api()
    wait_layout(kazoo, zk_root)
    proxy.cut_next(MULTI, f"{zk_root}/jobs/", b'"state":"succeeded"')
    worker = stack.start_worker("worker", ZOOTRAIN_ZK_HOSTS=proxy.address)
    with httpx.Client(headers=AUTH, base_url=str(stack.api_url), timeout=30) as client:
        response = client.post("/v1/jobs", json=iris_spec("cut-off", shards=1))
        assert response.status_code == 202, response.text
        job_id = response.json()["id"]
        view = wait_job(client, job_id, timeout=60)
    assert view["state"] == "succeeded", view
    # The fault hit what it was meant to: the publishing multi, which carries the release.
    assert proxy.cut == [f"{zk_root}/jobs/{job_id}"], proxy.cut
    assert proxy.connections >= 2  # the worker reconnected, with the same session
    assert worker.alive()
    assert list(versions_by_job(kazoo, zk_root)) == [job_id]
    try:
        wait_for(lambda: children(kazoo, f"{zk_root}/locks") == [], 8, "the lock to go")
    except TimeoutError:
        pytest.fail(f"lock left behind by a live worker: {describe_locks(kazoo, zk_root)}")


def test_a_done_write_cut_off_by_a_connection_drop_still_records_the_shard(
    stack: Stack, proxy: ZooKeeperProxy, kazoo: KazooClient, zk_root: str
) -> None:
    stack.start_api()
    wait_layout(kazoo, zk_root)
    # The done write carries the shard lock's release (one multi).
    proxy.cut_next(MULTI, f"{zk_root}/jobs/", b'"state":"done"')
    worker = stack.start_worker("worker", ZOOTRAIN_ZK_HOSTS=proxy.address)
    with httpx.Client(headers=AUTH, base_url=str(stack.api_url), timeout=30) as client:
        spec = iris_spec("cut-done", shards=1, max_attempts=1)
        response = client.post("/v1/jobs", json=spec)
        assert response.status_code == 202, response.text
        job_id = response.json()["id"]
        view = wait_job(client, job_id, timeout=60)
    # The fault hit the shard's done write, and the worker reconnected with its session.
    assert proxy.cut == [f"{zk_root}/jobs/{job_id}/shards/0000"], proxy.cut
    assert proxy.connections >= 2
    assert worker.alive()
    assert view["state"] == "succeeded", view
    assert view["shards"][0]["attempts"] == 1, view["shards"][0]
    assert list(versions_by_job(kazoo, zk_root)) == [job_id]
    try:
        wait_for(lambda: children(kazoo, f"{zk_root}/locks") == [], 8, "the locks to go")
    except TimeoutError:
        pytest.fail(f"lock left behind by a live worker: {describe_locks(kazoo, zk_root)}")


# (action, opcode, bytes of the request): a shard's claim write, the job's `running` mark, the
# shard's `done` write, the merge claim, the publishing multi. "drop_reply" lets the write
# through and drops the connection before its reply: applied, and the worker cannot know.
FAULTS = [
    ("drop_reply", MULTI, b'"state":"running","attempts":1'),
    ("cut", MULTI, b'"state":"running","attempts":1'),
    ("cut", SET_DATA, b'"state":"running","spec"'),
    ("drop_reply", MULTI, b'"state":"done"'),
    ("drop_reply", MULTI, b'"state":"merging"'),
    ("cut", MULTI, b'"state":"succeeded"'),
    ("drop_reply", MULTI, b'"state":"succeeded"'),
]


def test_with_one_attempt_a_connection_drop_in_claim_settle_or_publish_does_not_fail_the_job(
    stack: Stack, proxy: ZooKeeperProxy, kazoo: KazooClient, zk_root: str
) -> None:
    stack.start_api()
    wait_layout(kazoo, zk_root)
    worker = stack.start_worker("worker", ZOOTRAIN_ZK_HOSTS=proxy.address)
    with httpx.Client(headers=AUTH, base_url=str(stack.api_url), timeout=30) as client:
        for number, (action, opcode, needle) in enumerate(FAULTS):
            proxy.add_rule(opcode, f"{zk_root}/jobs/", needle, action)
            spec = iris_spec(f"fault-{number}", shards=1, max_attempts=1)
            response = client.post("/v1/jobs", json=spec)
            assert response.status_code == 202, response.text
            job_id = response.json()["id"]
            view = wait_job(client, job_id, timeout=60)
            what = f"{action} of {needle.decode()}"
            assert proxy.faults and proxy.faults[-1][0] == action, (what, proxy.faults)
            assert proxy.faults[-1][2].startswith(f"{zk_root}/jobs/{job_id}"), (what, proxy.faults)
            assert view["state"] == "succeeded", (what, view)
            assert view["shards"][0]["attempts"] == 1, (what, view["shards"][0])
            assert view["merge_attempts"] == 1, (what, view)
            assert versions_by_job(kazoo, zk_root)[job_id] == [(f"fault-{number}", "v-0000000000")]
    assert len(proxy.faults) == len(FAULTS)
    # One reconnect per fault, with the same session (the last may come after its job ended).
    wait_for(lambda: proxy.connections > len(FAULTS), 30, "the worker to reconnect")
    assert worker.alive()
    assert "session LOST" not in worker.output()


def test_a_group_claim_whose_reply_is_lost_stands_with_one_attempt(
    stack: Stack, proxy: ZooKeeperProxy, kazoo: KazooClient, zk_root: str
) -> None:
    """A small job's shards are claimed together by one multi (workers/shard_groups.py). Its
    reply lost, the multi applied: the claim stands, as a single shard's does, and a job of
    one attempt still succeeds on it (the group's locks were let go instead, and the shards,
    `running` with one attempt each and no lock, were given up as a dead worker's)."""
    stack.start_api()
    wait_layout(kazoo, zk_root)
    worker = stack.start_worker("worker", ZOOTRAIN_ZK_HOSTS=proxy.address)
    with httpx.Client(headers=AUTH, base_url=str(stack.api_url), timeout=30) as client:
        for action in ("drop_reply", "cut"):
            proxy.add_rule(MULTI, f"{zk_root}/jobs/", b'"state":"running","attempts":1', action)
            spec = iris_spec(f"group-{action}", shards=2, max_attempts=1)
            response = client.post("/v1/jobs", json=spec)
            assert response.status_code == 202, response.text
            job_id = response.json()["id"]
            view = wait_job(client, job_id, timeout=60)
            assert proxy.faults and proxy.faults[-1][0] == action, proxy.faults
            assert proxy.faults[-1][2].startswith(f"{zk_root}/jobs/{job_id}"), proxy.faults
            assert view["state"] == "succeeded", (action, view)
            assert [s["attempts"] for s in view["shards"]] == [1, 1], (action, view["shards"])
    assert "(a group of 2)" in worker.output()
    assert worker.alive()
    wait_for(lambda: children(kazoo, f"{zk_root}/locks") == [], 8, "the locks to go")
