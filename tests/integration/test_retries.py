"""Retries: a shard whose training raises is retried, then fails its job; it blocks nobody."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from kazoo.client import KazooClient

from testkit.stack import Stack, wait_job
from tests.integration.conftest import (
    children,
    claim_lines,
    iris_spec,
    read_json,
    wait_until_empty,
)
from tests.support.specs import POISON_ERROR, poison_spec

pytestmark = pytest.mark.integration

# Accepted, and fails on every attempt (past its time limit), the same way each time.
POISON = poison_spec("poison", max_attempts=2, priority=9)


def test_failing_shard_is_retried_then_fails_job_without_blocking_the_queue(
    api: TestClient, stack: Stack, kazoo: KazooClient, zk_root: str
) -> None:
    accepted = api.post("/v1/jobs", json=POISON)
    assert accepted.status_code == 202, accepted.text
    poison_id = accepted.json()["id"]
    good = api.post("/v1/jobs", json=iris_spec(model_name="healthy", priority=5))
    assert good.status_code == 202, good.text
    good_id = good.json()["id"]

    # One worker, so the good job can only run if the poison does not hold the worker.
    worker = stack.start_worker()

    poisoned = wait_job(api, poison_id)
    assert poisoned["state"] == "failed", poisoned
    error = poisoned["error"]
    assert "shard 0" in error and "2 attempts" in error, error
    assert POISON_ERROR in error, error
    assert poisoned["model"] is None
    (shard,) = poisoned["shards"]
    assert shard["state"] == "failed"
    assert shard["attempts"] == 2
    assert POISON_ERROR in shard["error"]
    assert [line.rstrip()[-9:] for line in claim_lines(worker, poison_id, 0)] == [
        "attempt 1",
        "attempt 2",
    ]

    healthy = wait_job(api, good_id)
    assert healthy["state"] == "succeeded", healthy
    assert healthy["model"]["name"] == "healthy"

    assert children(kazoo, f"{zk_root}/queue") == []
    assert children(kazoo, f"{zk_root}/models") == ["healthy"]
    assert read_json(kazoo, f"{zk_root}/jobs/{poison_id}")["state"] == "failed"
    assert worker.alive()
    # (The poison's shard lock is checked in test_failed_jobs_release_their_shard_locks.)
    assert [n for n in children(kazoo, f"{zk_root}/locks") if n.startswith(good_id)] == []


def test_failed_jobs_release_their_shard_locks(
    api: TestClient, stack: Stack, kazoo: KazooClient, zk_root: str
) -> None:
    # The leak depends on which of kazoo's two callback threads runs first (the job watch or
    # the multi's reply), so several failing jobs make it show whatever the machine's load.
    ids = [api.post("/v1/jobs", json={**POISON, "max_attempts": 1}).json()["id"] for _ in range(6)]
    worker = stack.start_worker()
    for job_id in ids:
        assert wait_job(api, job_id)["state"] == "failed"
    assert worker.alive()
    wait_until_empty(kazoo, f"{zk_root}/locks", timeout=8)
