"""ZooKeeper ACLs: with ZOOTRAIN_ZK_AUTH set, a client without the credentials can read nothing
private and change or delete nothing: every znode under the root, of every kind (jobs, shards,
queue entries, locks, election candidates, workers, model versions, datasets, Idempotency-Keys
and their buckets), checked while each kind exists."""

from __future__ import annotations

import re

import httpx
import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import NoAuthError, NoNodeError

from tests.support.auth import AUTH
from tests.support.specs import iris_spec
from tests.support.stack import Stack, wait_for, wait_job
from tests.support.zkserver import ZooKeeperCluster

pytestmark = pytest.mark.integration

CREDENTIALS = "zootrain:s3cret-for-tests"
CSV = "a,b,label\n" + "".join(f"{i},{i % 5},{i % 2}\n" for i in range(40))

# Every kind of znode zootrain makes, as a pattern under the root.
KINDS = {
    "root": r"",
    "base": r"/(jobs|queue|locks|workers|models|idempotency|election|datasets)",
    "job": r"/jobs/[0-9a-f]{20}",
    "shards": r"/jobs/[0-9a-f]{20}/shards",
    "shard": r"/jobs/[0-9a-f]{20}/shards/\d{4}",
    "queue entry": r"/queue/\d-[0-9a-f]{20}-\d{10}",
    "shard lock": r"/locks/[0-9a-f]{20}\.\d{4}",
    "worker": r"/workers/[^/]+",
    "election candidate": r"/election/[0-9a-f]{32}-n_\d{10}",
    "model": r"/models/[a-z0-9][a-z0-9._-]*",
    "model version": r"/models/[a-z0-9][a-z0-9._-]*/v-\d{10}",
    "idempotency bucket": r"/idempotency/[0-9a-f]{2}",
    "idempotency key": r"/idempotency/[0-9a-f]{2}/[0-9a-f]{64}",
    "dataset": r"/datasets/[0-9a-f]{20}",
}
# Kinds that exist only for a moment (checked when the walk meets them).
FLEETING = {"merge lock": r"/locks/[0-9a-f]{20}\.merge"}


def walk(client: KazooClient, root: str) -> list[str]:
    found, stack = [], [root]
    while stack:
        path = stack.pop()
        try:
            names = client.get_children(path)
        except NoNodeError:
            continue  # gone meanwhile (a lock, a queue entry)
        found.append(path)
        stack.extend(f"{path}/{name}" for name in names)
    return found


def kind_of(root: str, path: str) -> str:
    relative = path[len(root) :]
    patterns = {**KINDS, **FLEETING}
    matches = [kind for kind, pattern in patterns.items() if re.fullmatch(pattern, relative)]
    assert matches, f"a znode of no known kind: {path}"
    return matches[0]


def test_a_bare_client_can_neither_read_nor_write_any_znode(
    stack: Stack, kazoo: KazooClient, zk_root: str, zookeeper: ZooKeeperCluster
) -> None:
    stack.settings["ZOOTRAIN_ZK_AUTH"] = CREDENTIALS
    stack.start_api()
    stack.start_worker()
    owner = KazooClient(hosts=zookeeper.hosts, auth_data=[("digest", CREDENTIALS)])
    owner.start(30)
    try:
        with httpx.Client(headers=AUTH, base_url=stack.api_url or "", timeout=30) as api:
            keyed = api.post(
                "/v1/jobs", json=iris_spec("acl-forest"), headers={"Idempotency-Key": "acl-key"}
            )
            assert keyed.status_code == 202, keyed.text
            assert wait_job(api, keyed.json()["id"])["state"] == "succeeded"
            uploaded = api.post("/v1/datasets", files={"file": ("acl.csv", CSV.encode())})
            assert uploaded.status_code == 201, uploaded.text
            # A job that trains for a few seconds: its queue entry and shard lock exist now.
            slow = iris_spec(
                "acl-slow",
                dataset={"kind": "synthetic", "task": "classification", "n_samples": 40_000},
                params={"n_estimators": 80, "max_depth": 12},
                shards=1,
            )
            running = api.post("/v1/jobs", json=slow)
            assert running.status_code == 202, running.text
            wait_for(
                lambda: any("." in n for n in owner.get_children(f"{zk_root}/locks")),
                60,
                "the slow job's shard lock",
            )

            checked: dict[str, int] = {}
            for path in walk(owner, zk_root):  # the `kazoo` fixture holds no credentials
                kind = kind_of(zk_root, path)
                try:
                    with pytest.raises(NoAuthError):
                        kazoo.get(path)
                    with pytest.raises(NoAuthError):
                        kazoo.get_children(path)
                    with pytest.raises(NoAuthError):
                        kazoo.set(path, b"{}")
                    with pytest.raises(NoAuthError):
                        kazoo.create(f"{path}/forged", b"x")
                    if kind != "root":
                        with pytest.raises(NoAuthError):
                            kazoo.delete(path)
                except NoNodeError:
                    continue  # it went meanwhile (its job moved on): not checked
                checked[kind] = checked.get(kind, 0) + 1
            assert set(KINDS) <= set(checked), checked
            assert wait_job(api, running.json()["id"], timeout=180)["state"] == "succeeded"

        # The credentials open them again: the data is there, only closed to others.
        data, _ = owner.get(f"{zk_root}/jobs/{keyed.json()['id']}")
        assert b'"succeeded"' in data
    finally:
        owner.stop()
        owner.close()
