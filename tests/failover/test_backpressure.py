"""Backpressure: past ZOOTRAIN_MAX_QUEUE unfinished jobs a submit is refused with 429
problem+json and Retry-After, and writes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from kazoo.client import KazooClient

from testkit.stack import Stack
from tests.failover.helpers import (
    RetryingClient,
    children,
    idempotency_path,
    idempotency_records,
    iris_spec,
    wait_layout,
)

pytestmark = pytest.mark.integration


def test_a_full_queue_refuses_submits_with_429_and_writes_nothing(
    tmp_path: Path, settings_env: dict[str, str], kazoo: KazooClient, zk_root: str
) -> None:
    stack = Stack(tmp_path, {**settings_env, "ZOOTRAIN_MAX_QUEUE": "3"})
    try:
        stack.start_api()  # and no worker: nothing leaves the queue
        wait_layout(kazoo, zk_root)
        assert stack.api_url is not None
        client = RetryingClient(stack.api_url)
        accepted = []
        for index in range(3):
            response = client.submit(iris_spec(f"bp-{index}"), f"bp-key-{index}")
            assert response.status_code == 202, response.text
            accepted.append(response.json()["id"])

        refused = client.submit(iris_spec("bp-3"), "bp-key-3")
        assert refused.status_code == 429, refused.text
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert int(refused.headers["retry-after"]) > 0
        problem = refused.json()
        assert problem["status"] == 429 and problem["title"] and problem["detail"]
        assert "3" in problem["detail"], problem

        # Nothing was written for the refused submit: no job, no queue entry, no key.
        assert sorted(children(kazoo, f"{zk_root}/jobs")) == sorted(accepted)
        assert len(children(kazoo, f"{zk_root}/queue")) == 3
        assert not kazoo.exists(idempotency_path(zk_root, "bp-key-3"))
        assert len(idempotency_records(kazoo, zk_root)) == 3

        # A retry of an accepted submit is not a new job: it replays even with the queue full.
        replay = client.submit(iris_spec("bp-0"), "bp-key-0")
        assert replay.status_code == 200, replay.text
        assert replay.json()["id"] == accepted[0]

        # The limit counts unfinished jobs: a cancel makes room, and the refused key is free.
        cancelled = client.request("DELETE", f"/v1/jobs/{accepted[1]}")
        assert cancelled.status_code == 200, cancelled.text
        again = client.submit(iris_spec("bp-3"), "bp-key-3")
        assert again.status_code == 202, again.text
        assert again.json()["id"] not in accepted
        assert len(children(kazoo, f"{zk_root}/jobs")) == 4
        assert len(children(kazoo, f"{zk_root}/queue")) == 3
        assert client.submit(iris_spec("bp-4"), "bp-key-4").status_code == 429
        assert len(children(kazoo, f"{zk_root}/jobs")) == 4
    finally:
        stack.stop()
