"""ZooKeeper ACLs: with ZOOTRAIN_ZK_AUTH set, a client without the credentials can read nothing
private and change or delete nothing: every znode under the root, of every kind (jobs, shards,
queue entries, locks, election candidates, workers, model versions, datasets, Idempotency-Keys
and their buckets, the token list), checked while each kind exists."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import NoAuthError, NoNodeError

from testkit.auth import AUTH, bearer
from testkit.stack import ROOT, Stack, environment, wait_for, wait_job
from testkit.zkserver import ZooKeeperCluster, free_port, free_port_run
from tests.integration.conftest import iris_spec, start_api

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
    "token list": r"/tokens",
    "live configuration": r"/config",
    "configuration history": r"/config/history",
    "drain requests": r"/drains",
}
# Kinds that exist only for a moment, or only while a job trains in rounds or a worker is
# drained: checked when the walk meets them.
FLEETING = {
    "merge lock": r"/locks/[0-9a-f]{20}\.merge",
    "drain request": r"/drains/[^/]+",
    "round record": r"/jobs/[0-9a-f]{20}/rounds",
    "round": r"/jobs/[0-9a-f]{20}/rounds/r-\d{10}",
    "round result": r"/jobs/[0-9a-f]{20}/rounds/r-\d{10}/\d{4}",
}


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
        added = zootrain_cli(stack.settings, "token", "add", "acl-walk", "--scopes", "read")
        assert added.returncode == 0, added.stderr  # the token list's znode exists now
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


# -- closed by default: make up's credentials, and `zootrain zk secure` for what came before --

ZKCLI = Path("/usr/share/zookeeper/bin/zkCli.sh")  # Debian's zookeeper package


def zkcli(hosts: str, *command: str) -> str:
    """A bare zkCli.sh: no `addauth`, so it is any client of the ensemble."""
    done = subprocess.run(
        [str(ZKCLI), "-server", hosts, *command],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.stdout + done.stderr


def assert_closed(kazoo: KazooClient, hosts: str, job: str, parent: str) -> None:
    with pytest.raises(NoAuthError):
        kazoo.get(job)
    with pytest.raises(NoAuthError):
        kazoo.delete(job, recursive=True)
    with pytest.raises(NoAuthError):
        kazoo.get_children(parent)
    assert ZKCLI.exists(), "zkCli.sh comes with Debian's zookeeper package (make test installs it)"
    for command in (["get", job], ["deleteall", job], ["ls", parent]):
        said = zkcli(hosts, *command)
        assert "NoAuth" in said or "Insufficient permission" in said, (command, said[-500:])


def test_make_up_closes_zookeeper_by_default(tmp_path: Path) -> None:
    var = tmp_path / "var"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("ZOOTRAIN_")},
        "ZOOTRAIN_VAR": str(var),
        "ZOOTRAIN_ZK_PORT": str(free_port()),
        "ZOOTRAIN_API_PORT": str(free_port()),
        # up.sh binds this base plus 1 and plus 2 for its workers' metrics.
        "ZOOTRAIN_WORKER_METRICS_BASE": str(free_port_run(3)),
        "VENV": sys.prefix,
        "WEB_CONCURRENCY": "1",
    }
    hosts = f"127.0.0.1:{env['ZOOTRAIN_ZK_PORT']}"
    try:
        up = subprocess.run(
            ["scripts/up.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
        )
        assert up.returncode == 0, up.stdout + up.stderr
        credentials = var / "zk-auth"
        assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
        assert credentials.read_text().strip() not in up.stdout + up.stderr
        token = (var / "token").read_text().strip()
        url = f"http://127.0.0.1:{env['ZOOTRAIN_API_PORT']}"
        with httpx.Client(base_url=url, headers=bearer(token), timeout=60) as api:
            submitted = api.post("/v1/jobs", json=iris_spec(model_name="up-forest", shards=2))
            assert submitted.status_code == 202, submitted.text
            job_id = submitted.json()["id"]
        bare = KazooClient(hosts=hosts)
        bare.start(30)
        try:
            assert_closed(bare, hosts, f"/zootrain/jobs/{job_id}", "/zootrain/jobs")
        finally:
            bare.stop()
            bare.close()
    finally:
        down = subprocess.run(
            ["scripts/down.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
        )
        assert down.returncode == 0, down.stdout + down.stderr


def zootrain_cli(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "zootrain.cli", *argv],
        env=environment(env),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_zk_secure_closes_what_was_made_before_the_credentials(
    stack: Stack, kazoo: KazooClient, zk_root: str, zookeeper: ZooKeeperCluster
) -> None:
    # An installation that ran without credentials: its job and every node around it are open.
    start_api(stack, kazoo)
    api = stack.processes[-1]
    wait_for(lambda: "ZOOKEEPER ACLS ARE OFF" in api.output(), 30, "the loud warning")
    with httpx.Client(headers=AUTH, base_url=stack.api_url or "", timeout=30) as client:
        submitted = client.post("/v1/jobs", json=iris_spec(model_name="old-forest"))
        assert submitted.status_code == 202, submitted.text
    job = f"{zk_root}/jobs/{submitted.json()['id']}"
    assert kazoo.get(job)[0]  # open to anyone
    worker = stack.start_worker()
    assert "ZOOKEEPER ACLS ARE OFF" in worker.output()
    stack.stop()

    secured = zootrain_cli({**stack.settings, "ZOOTRAIN_ZK_AUTH": CREDENTIALS}, "zk", "secure")
    assert secured.returncode == 0, secured.stdout + secured.stderr
    assert "closed" in secured.stdout and CREDENTIALS not in secured.stdout + secured.stderr
    assert_closed(kazoo, zookeeper.hosts, job, f"{zk_root}/jobs")

    # Idempotent: a second run finds every node closed already and changes nothing.
    again = zootrain_cli(
        {**stack.settings, "ZOOTRAIN_ZK_AUTH": CREDENTIALS}, "zk", "secure", "--json"
    )
    assert again.returncode == 0, again.stderr
    report = json.loads(again.stdout)
    assert report["secured"] == 0 and report["already"] > 10 and report["refused"] == []

    # The service started again with the credentials reads the old job, and says nothing loud.
    stack.settings["ZOOTRAIN_ZK_AUTH"] = CREDENTIALS
    before = len(api.output())  # the same log file: what the new process writes comes after
    restarted = stack.start_api()
    with httpx.Client(headers=AUTH, base_url=stack.api_url or "", timeout=30) as client:
        again_read = client.get(f"/v1/jobs/{submitted.json()['id']}")
        assert again_read.status_code == 200, again_read.text
    assert "ZOOKEEPER ACLS ARE OFF" not in restarted.output()[before:]


def test_zk_secure_needs_the_credentials(stack: Stack) -> None:
    refused = zootrain_cli(stack.settings, "zk", "secure")
    assert refused.returncode == 1 and "ZOOTRAIN_ZK_AUTH" in refused.stderr
