"""Fencing: a worker frozen mid-shard past its session timeout loses its claim; the shard is
re-claimed and finished by another worker; when the frozen worker resumes it must not write its
stale result or publish, and the job succeeds exactly once."""

from __future__ import annotations

import os
import signal
import time

import httpx
import pytest
from kazoo.client import KazooClient

from testkit.auth import AUTH
from testkit.stack import Stack, descendants, wait_for, wait_job
from tests.failover.helpers import (
    children,
    claim_lines,
    lines_matching,
    shard_records,
    slow_spec,
    versions_by_job,
)

pytestmark = pytest.mark.integration

PAUSE = 10.0  # seconds frozen, against a 4 s session timeout


def test_worker_frozen_past_its_session_cannot_overwrite_or_publish(
    stack: Stack, kazoo: KazooClient, zk_root: str
) -> None:
    stack.start_api()
    workers = {
        name: stack.start_worker("worker", ZOOTRAIN_WORKER_ID=name) for name in ("left", "right")
    }
    idle = {name: descendants(w.popen.pid) for name, w in workers.items()}
    with httpx.Client(headers=AUTH, base_url=str(stack.api_url), timeout=30) as client:
        response = client.post("/v1/jobs", json=slow_spec("fenced-forest", n_samples=25_000))
        assert response.status_code == 202, response.text
        job_id = response.json()["id"]
        shard_path = f"{zk_root}/jobs/{job_id}/shards/0000"

        wait_for(
            lambda: shard_records(kazoo, zk_root, job_id)[0]["state"] == "running",
            60,
            "the shard to be claimed",
        )
        owner = shard_records(kazoo, zk_root, job_id)[0]["worker"]
        other = ({"left", "right"} - {owner}).pop()
        sleeper, awake = workers[owner], workers[other]
        wait_for(lambda: descendants(sleeper.popen.pid) - idle[owner], 30, "the training child")

        os.killpg(sleeper.popen.pid, signal.SIGSTOP)  # the worker, its forkserver and child
        frozen_at = time.monotonic()
        try:
            wait_for(
                lambda: shard_records(kazoo, zk_root, job_id)[0]["attempts"] == 2,
                60,
                "the other worker to re-claim the shard",
            )
            shard = shard_records(kazoo, zk_root, job_id)[0]
            assert (shard["worker"], shard["state"]) == (other, "running"), shard
            view = wait_job(client, job_id, timeout=120)
            assert view["state"] == "succeeded", view
            time.sleep(max(0.0, PAUSE - (time.monotonic() - frozen_at)))
            before_data, before_stat = kazoo.get(shard_path)
            job_before = kazoo.get(f"{zk_root}/jobs/{job_id}")
        finally:
            os.killpg(sleeper.popen.pid, signal.SIGCONT)

        # The resumed worker learns its session is gone and drops what it was training (or,
        # if its child answered first, has its write refused by the version check).
        wait_for(
            lambda: lines_matching(
                sleeper, rf"stopped {job_id}/0 \(lost\)|shard {job_id}/0 was taken over"
            ),
            30,
            "the resumed worker to drop its stale shard",
        )
        # It registers again with a new session and stays in service.
        wait_for(
            lambda: owner in children(kazoo, f"{zk_root}/workers"),
            30,
            "the resumed worker to register again",
        )
        assert sleeper.alive()

        after_data, after_stat = kazoo.get(shard_path)
        assert after_data == before_data, (before_data, after_data)
        assert after_stat.version == before_stat.version
        assert after_stat.mzxid == before_stat.mzxid
        assert kazoo.get(f"{zk_root}/jobs/{job_id}")[1].mzxid == job_before[1].mzxid

        output = sleeper.output()
        assert f"done {job_id}/0" not in output, output[-3000:]
        assert f"from job {job_id}" not in output, output[-3000:]
        assert len(claim_lines(sleeper, job_id, 0)) == 1
        reclaims = claim_lines(awake, job_id, 0)
        assert len(reclaims) == 1 and reclaims[0].rstrip().endswith("attempt 2"), reclaims
        assert f"from job {job_id}" in awake.output()

        view = client.get(f"/v1/jobs/{job_id}").json()
        assert view["state"] == "succeeded"
        assert view["shards"][0]["worker"] == other and view["shards"][0]["attempts"] == 2
        published = versions_by_job(kazoo, zk_root)
        assert list(published) == [job_id] and len(published[job_id]) == 1, published
        assert view["model"]["version"] == 1
        assert children(kazoo, f"{zk_root}/queue") == []
        wait_for(lambda: children(kazoo, f"{zk_root}/locks") == [], 15, "the locks to go")
