from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kazoo.client import KazooClient

from testkit.auth import TOKENS
from testkit.s3server import S3Server
from testkit.stack import Stack
from testkit.zkproxy import ZooKeeperProxy
from testkit.zkserver import ZooKeeperCluster


@pytest.fixture(scope="session")
def zookeeper(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ZooKeeperCluster]:
    """One real standalone ZooKeeper for the whole run; each test gets its own root znode."""
    cluster = ZooKeeperCluster(tmp_path_factory.mktemp("zookeeper"), size=1).start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def s3server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """moto's standalone S3 emulator for the whole run, started on first use; each stack gets
    its own bucket."""
    server = S3Server(tmp_path_factory.mktemp("moto")).start()
    yield server
    server.stop()


def artifact_settings(
    backend: str, directory: Path, request: pytest.FixtureRequest
) -> dict[str, str]:
    """ZOOTRAIN_ARTIFACTS (and, for S3, the standard AWS_* variables) of one backend."""
    if backend == "s3":
        server: S3Server = request.getfixturevalue("s3server")
        bucket = server.create_bucket()
        return {"ZOOTRAIN_ARTIFACTS": f"s3://{bucket}/zootrain", **server.environment()}
    return {"ZOOTRAIN_ARTIFACTS": str(directory / "artifacts")}


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    """The artifact store of ``stack``: "file" unless a test parametrizes it (indirect)."""
    return str(getattr(request, "param", "file"))


@pytest.fixture
def zk_root() -> str:
    return f"/test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def settings_env(
    zookeeper: ZooKeeperCluster,
    zk_root: str,
    tmp_path: Path,
    backend: str,
    request: pytest.FixtureRequest,
) -> dict[str, str]:
    return {
        "ZOOTRAIN_ZK_HOSTS": zookeeper.hosts,
        "ZOOTRAIN_ZK_ROOT": zk_root,
        **artifact_settings(backend, tmp_path, request),
        "ZOOTRAIN_ZK_SESSION_TIMEOUT": "4",
        "ZOOTRAIN_RETRY_BACKOFF": "0.2",
        "ZOOTRAIN_TOKENS": TOKENS,
    }


@pytest.fixture
def proxy(zookeeper: ZooKeeperCluster) -> Iterator[ZooKeeperProxy]:
    """A proxy between the code under test and ZooKeeper (testkit/zkproxy.py) that cuts,
    holds or drops chosen requests."""
    running = ZooKeeperProxy(zookeeper.nodes[0].client_port).start()
    yield running
    running.close()


@pytest.fixture
def kazoo(zookeeper: ZooKeeperCluster) -> Iterator[KazooClient]:
    """A plain client straight against ZooKeeper, for checking what the code wrote."""
    client = KazooClient(hosts=zookeeper.hosts)
    client.start(30)
    yield client
    client.stop()
    client.close()


@pytest.fixture
def stack(tmp_path: Path, settings_env: dict[str, str]) -> Iterator[Stack]:
    running = Stack(tmp_path, settings_env)
    yield running
    running.stop()
