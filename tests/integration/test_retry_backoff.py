"""A failed shard waits before its next attempt: ``not_before`` is set to the write's time plus
ZOOTRAIN_RETRY_BACKOFF, doubled per attempt and capped at ZOOTRAIN_RETRY_BACKOFF_MAX
(docs/failure-model.md), and no worker claims it before then. Read from every version of the
shard record that ZooKeeper holds, with the server's own time of each write (``mtime``)."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from fastapi.testclient import TestClient
from kazoo.client import KazooClient
from kazoo.protocol.states import ZnodeStat

from testkit.stack import Stack, wait_job
from tests.support.specs import poison_spec
from zootrain.paths import Paths

pytestmark = pytest.mark.integration

BASE = 1.5  # seconds: ZOOTRAIN_RETRY_BACKOFF
CAP = 4.0  # ZOOTRAIN_RETRY_BACKOFF_MAX: the doubling 1.5, 3, 6, 12 is cut to 1.5, 3, 4, 4
ATTEMPTS = 5
# A write carries the worker's clock read just before it; ZooKeeper stamps it when it commits.
SLACK = 0.7

# Accepted, and fails on every attempt (past its time limit).
POISON = poison_spec("backoff-poison", max_attempts=ATTEMPTS)


class History:
    """Every version of one znode, as a data watch sees them (each is re-read at once; a state
    that lasts a second or more is never missed)."""

    def __init__(self, kazoo: KazooClient, path: str) -> None:
        self.versions: list[tuple[dict[str, Any], ZnodeStat]] = []
        self._lock = threading.Lock()
        kazoo.DataWatch(path, self._changed)

    def _changed(self, data: bytes | None, stat: ZnodeStat | None) -> None:
        if data is None or stat is None:
            return
        with self._lock:
            if not self.versions or self.versions[-1][1].version != stat.version:
                self.versions.append((json.loads(data), stat))


def test_not_before_doubles_per_attempt_up_to_the_cap_and_is_respected(
    api: TestClient, stack: Stack, kazoo: KazooClient, zk_root: str
) -> None:
    accepted = api.post("/v1/jobs", json=POISON)
    assert accepted.status_code == 202, accepted.text
    job_id = accepted.json()["id"]
    history = History(kazoo, Paths(zk_root).shard(job_id, 0))
    stack.start_worker(ZOOTRAIN_RETRY_BACKOFF=str(BASE), ZOOTRAIN_RETRY_BACKOFF_MAX=str(CAP))

    view = wait_job(api, job_id, timeout=180)
    assert view["state"] == "failed", view
    assert view["shards"][0]["attempts"] == ATTEMPTS

    retries = [(r, s) for r, s in history.versions if r["state"] == "pending" and r["not_before"]]
    claims = [(r, s) for r, s in history.versions if r["state"] == "running"]
    assert [r["attempts"] for r, _ in retries] == list(range(1, ATTEMPTS)), history.versions
    assert [r["attempts"] for r, _ in claims] == list(range(1, ATTEMPTS + 1)), history.versions
    waited = []
    for (record, stat), (claim, claim_stat) in zip(retries, claims[1:], strict=True):
        expected = min(CAP, BASE * 2 ** (record["attempts"] - 1))
        delay = record["not_before"] - stat.mtime / 1000
        waited.append(round(delay, 2))
        assert expected - SLACK <= delay <= expected + 0.01, (record["attempts"], delay, expected)
        # The next attempt was claimed only once the backoff had run out.
        assert claim["attempts"] == record["attempts"] + 1
        assert claim_stat.mtime / 1000 >= record["not_before"] - 0.01, (claim, record)
    print(f"backoff: not_before - write time per failed attempt {waited} (cap {CAP})")
