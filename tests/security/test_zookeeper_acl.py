"""ZooKeeper ACLs: with ZOOTRAIN_ZK_AUTH set, a client without the credentials can read nothing
private and change or delete nothing."""

from __future__ import annotations

import httpx
import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import NoAuthError

from tests.support.auth import AUTH
from tests.support.stack import Stack, wait_job
from tests.support.zkserver import ZooKeeperCluster

pytestmark = pytest.mark.integration

CREDENTIALS = "zootrain:s3cret-for-tests"


def test_a_bare_client_can_neither_read_nor_write(
    stack: Stack, kazoo: KazooClient, zk_root: str, zookeeper: ZooKeeperCluster
) -> None:
    stack.settings["ZOOTRAIN_ZK_AUTH"] = CREDENTIALS
    stack.start_api()
    stack.start_worker()
    with httpx.Client(headers=AUTH, base_url=stack.api_url or "", timeout=30) as api:
        submitted = api.post(
            "/v1/jobs",
            json={
                "model_name": "acl-forest",
                "algorithm": "random_forest_classifier",
                "params": {"n_estimators": 3},
                "dataset": {"kind": "builtin", "name": "iris"},
                "shards": 2,
            },
        )
        assert submitted.status_code == 202, submitted.text
        job_id = submitted.json()["id"]
        assert wait_job(api, job_id)["state"] == "succeeded"

    private = [
        f"{zk_root}/jobs",
        f"{zk_root}/jobs/{job_id}",
        f"{zk_root}/jobs/{job_id}/shards/0000",
        f"{zk_root}/models/acl-forest/v-0000000000",
        f"{zk_root}/queue",
        f"{zk_root}/workers",
    ]
    for path in private:  # the `kazoo` fixture holds no credentials
        with pytest.raises(NoAuthError):
            kazoo.get(path)
    with pytest.raises(NoAuthError):
        kazoo.get_children(f"{zk_root}/jobs")
    with pytest.raises(NoAuthError):
        kazoo.set(f"{zk_root}/jobs/{job_id}", b"{}")
    with pytest.raises(NoAuthError):
        kazoo.create(f"{zk_root}/queue/9-forged-", b"x", sequence=True)
    with pytest.raises(NoAuthError):
        kazoo.delete(f"{zk_root}/models/acl-forest/v-0000000000")

    # The credentials open them again: the data is there, only closed to others.
    owner = KazooClient(hosts=zookeeper.hosts, auth_data=[("digest", CREDENTIALS)])
    owner.start(30)
    try:
        data, _ = owner.get(f"{zk_root}/jobs/{job_id}")
        assert b'"succeeded"' in data
    finally:
        owner.stop()
        owner.close()
