"""A ZooKeeper connection that drops in the middle of a lock release (the delete never reaches
the server; the session survives): the lock must still go, or nobody else can ever take it and
/locks keeps a node for a claim that ended. The drop is made exact by a proxy (zkproxy.py)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from kazoo.client import KazooClient

from tests.failover.helpers import (
    children,
    describe_locks,
    iris_spec,
    versions_by_job,
    wait_layout,
)
from tests.failover.zkproxy import ZooKeeperProxy
from tests.support.stack import Stack, wait_for, wait_job
from tests.support.zkserver import ZooKeeperCluster

pytestmark = pytest.mark.integration


@pytest.fixture
def proxy(zookeeper: ZooKeeperCluster) -> Iterator[ZooKeeperProxy]:
    running = ZooKeeperProxy(zookeeper.nodes[0].client_port).start()
    yield running
    running.close()


def test_a_lock_release_cut_off_by_a_connection_drop_still_releases_the_lock(
    stack: Stack, proxy: ZooKeeperProxy, kazoo: KazooClient, zk_root: str
) -> None:
    stack.start_api()
    wait_layout(kazoo, zk_root)
    proxy.cut_next_delete(f"{zk_root}/locks/")
    worker = stack.start_worker("worker", ZOOTRAIN_ZK_HOSTS=proxy.address)
    with httpx.Client(base_url=str(stack.api_url), timeout=30) as client:
        response = client.post("/v1/jobs", json=iris_spec("cut-off", shards=1))
        assert response.status_code == 202, response.text
        job_id = response.json()["id"]
        view = wait_job(client, job_id, timeout=60)
    assert view["state"] == "succeeded", view
    # The fault hit what it was meant to: the release of the shard's lock.
    assert proxy.cut == [f"{zk_root}/locks/{job_id}.0000"], proxy.cut
    assert proxy.connections >= 2  # the worker reconnected, with the same session
    assert worker.alive()
    assert list(versions_by_job(kazoo, zk_root)) == [job_id]

    try:
        wait_for(lambda: children(kazoo, f"{zk_root}/locks") == [], 8, "the lock to go")
    except TimeoutError:
        pytest.fail(f"lock left behind by a live worker: {describe_locks(kazoo, zk_root)}")
