from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kazoo.client import KazooClient

from tests.support.auth import TOKENS
from tests.support.stack import Stack
from tests.support.zkserver import ZooKeeperCluster


@pytest.fixture(scope="session")
def zookeeper(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ZooKeeperCluster]:
    """One real standalone ZooKeeper for the whole run; each test gets its own root znode."""
    cluster = ZooKeeperCluster(tmp_path_factory.mktemp("zookeeper"), size=1).start()
    yield cluster
    cluster.stop()


@pytest.fixture
def zk_root() -> str:
    return f"/test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def settings_env(zookeeper: ZooKeeperCluster, zk_root: str, tmp_path: Path) -> dict[str, str]:
    return {
        "ZOOTRAIN_ZK_HOSTS": zookeeper.hosts,
        "ZOOTRAIN_ZK_ROOT": zk_root,
        "ZOOTRAIN_ARTIFACTS": str(tmp_path / "artifacts"),
        "ZOOTRAIN_ZK_SESSION_TIMEOUT": "4",
        "ZOOTRAIN_RETRY_BACKOFF": "0.2",
        "ZOOTRAIN_TOKENS": TOKENS,
    }


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
