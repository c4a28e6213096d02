"""ZooKeeper ACLs: with ZOOTRAIN_ZK_AUTH set, a client without the credentials can read nothing
private and change or delete nothing."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import NoAuthError

from tests.integration.conftest import iris_spec, start_api
from tests.support.auth import AUTH, bearer
from tests.support.stack import ROOT, Stack, environment, wait_for, wait_job
from tests.support.zkserver import ZooKeeperCluster, free_port

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
        "ZOOTRAIN_WORKER_METRICS_BASE": str(free_port()),
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
