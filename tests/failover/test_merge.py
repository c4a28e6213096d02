"""Merges: one per job, even when one worker trains several shards of a job at once; retried
like a shard when the merging process dies, under the job's max_attempts and with a backoff."""

from __future__ import annotations

import os
import re
import signal
import time

import httpx
import pytest
from kazoo.client import KazooClient

from testkit.auth import AUTH
from testkit.stack import Stack, descendants, wait_for, wait_job
from tests.failover.helpers import (
    iris_spec,
    job_record,
    lines_matching,
    slow_spec,
    versions_by_job,
    wait_no_locks,
)

pytestmark = pytest.mark.integration


def merge_claims(output: str, job_id: str) -> int:
    return len(re.findall(rf"claim {job_id}/merge\b", output))


def test_a_worker_training_several_shards_of_a_job_claims_its_merge_once(
    stack: Stack, kazoo: KazooClient, zk_root: str
) -> None:
    stack.start_api()
    worker = stack.start_worker("worker", ZOOTRAIN_WORKER_CONCURRENCY="2")
    with httpx.Client(headers=AUTH, base_url=str(stack.api_url), timeout=30) as client:
        # Two equal shards per job, trained side by side: they finish together, and both
        # shards' tasks (and the dispatcher) find the job ready to merge at once.
        job_ids = []
        for number in range(12):
            response = client.post(
                "/v1/jobs", json=iris_spec(f"twins-{number}", shards=2, random_state=number)
            )
            assert response.status_code == 202, response.text
            job_ids.append(response.json()["id"])
        views = [wait_job(client, job_id, timeout=120) for job_id in job_ids]
    assert all(v["state"] == "succeeded" for v in views), [v["state"] for v in views]
    output = worker.output()
    claims = {job_id: merge_claims(output, job_id) for job_id in job_ids}
    assert all(count == 1 for count in claims.values()), claims
    assert all(v["merge_attempts"] == 1 for v in views)
    published = versions_by_job(kazoo, zk_root)
    assert all(len(published[job_id]) == 1 for job_id in job_ids), published
    assert "could not release" not in output
    assert "changed while merging" not in output
    wait_no_locks(kazoo, zk_root)


@pytest.mark.parametrize("warm", ["0", "2"], ids=["fresh-children", "warm-children"])
def test_a_merge_whose_process_dies_is_retried_after_a_backoff(
    stack: Stack, kazoo: KazooClient, zk_root: str, warm: str
) -> None:
    stack.start_api()
    # The merging process is among the worker's children started since it went idle: with
    # warm children it may be one that trained a shard, so every such child is killed.
    worker = stack.start_worker(
        "worker", ZOOTRAIN_RETRY_BACKOFF="2", ZOOTRAIN_WORKER_WARM_CHILDREN=warm
    )
    idle = descendants(worker.popen.pid)
    spec = {**slow_spec("merge-dies", n_samples=40_000, max_attempts=2), "shards": 2}
    with httpx.Client(headers=AUTH, base_url=str(stack.api_url), timeout=30) as client:
        response = client.post("/v1/jobs", json=spec)
        assert response.status_code == 202, response.text
        job_id = response.json()["id"]
        wait_for(
            lambda: lines_matching(worker, rf"claim {job_id}/merge\b"),
            120,
            "the merge to be claimed",
        )
        # The merging process (a child of the forkserver): kill it as the OOM killer would.
        merging: set[int] = set()

        def started() -> bool:
            merging.update(descendants(worker.popen.pid) - idle)
            return bool(merging)

        wait_for(started, 30, "the merging process", interval=0.01)
        for pid in merging:
            os.kill(pid, signal.SIGKILL)
        killed_at = time.monotonic()

        view = wait_job(client, job_id, timeout=120)
        print(f"merge: published {time.monotonic() - killed_at:.1f}s after its process died")
        assert view["state"] == "succeeded", view
        assert view["merge_attempts"] == 2, view
        assert "killed by SIGKILL" in (view["merge_error"] or ""), view
    output = worker.output()
    assert merge_claims(output, job_id) == 2
    # It backed off (ZOOTRAIN_RETRY_BACKOFF) before the second attempt.
    assert lines_matching(worker, rf"merge of {job_id} retries in 2\.0s"), output[-3000:]
    record = job_record(kazoo, zk_root, job_id)
    assert record is not None and record["merge_not_before"] is None
    published = versions_by_job(kazoo, zk_root)
    assert list(published) == [job_id] and len(published[job_id]) == 1, published
