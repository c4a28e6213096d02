"""Fixtures for the failover tests: a 3-node ZooKeeper ensemble and a stack that uses all of it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from testkit.auth import TOKENS
from testkit.stack import Stack
from testkit.zkserver import ZooKeeperCluster


@pytest.fixture
def ensemble(tmp_path: Path) -> Iterator[ZooKeeperCluster]:
    """A fresh 3-node quorum for one test: the test kills and restarts its nodes."""
    cluster = ZooKeeperCluster(tmp_path / "ensemble", size=3).start()
    yield cluster
    cluster.stop()


@pytest.fixture
def ensemble_env(ensemble: ZooKeeperCluster, tmp_path: Path) -> dict[str, str]:
    return {
        "ZOOTRAIN_ZK_HOSTS": ensemble.hosts,  # every node: clients fail over between them
        "ZOOTRAIN_ZK_ROOT": f"/failover-{uuid.uuid4().hex[:12]}",
        "ZOOTRAIN_ARTIFACTS": str(tmp_path / "artifacts"),
        "ZOOTRAIN_ZK_SESSION_TIMEOUT": "4",
        "ZOOTRAIN_RETRY_BACKOFF": "0.2",
        "ZOOTRAIN_TOKENS": TOKENS,
    }


@pytest.fixture
def ensemble_stack(tmp_path: Path, ensemble_env: dict[str, str]) -> Iterator[Stack]:
    running = Stack(tmp_path, ensemble_env)
    yield running
    running.stop()
