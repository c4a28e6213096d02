"""The housekeeper's chores, each shown on its own: old version records trimmed to the cap,
expired Idempotency-Keys deleted (and only those), and a merge that nobody was going to start
woken up. Everything is read straight from ZooKeeper; nothing waits on a clock to prove it."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from kazoo.client import KazooClient

from testkit.auth import AUTH
from testkit.stack import Stack, wait_for, wait_job
from testkit.zkserver import ZooKeeperCluster, watches_by_path
from tests.failover.helpers import (
    children,
    idempotency_path,
    iris_spec,
    job_record,
    read_json,
    shard_records,
    versions_by_job,
)
from tests.integration.conftest import wait_layout
from zootrain.paths import Paths

pytestmark = pytest.mark.integration

SWEEPS = {"ZOOTRAIN_HOUSEKEEPING_INTERVAL": "0.5"}


def submit(client: httpx.Client, spec: dict[str, Any], **headers: str) -> str:
    response = client.post("/v1/jobs", json=spec, headers=headers)
    assert response.status_code == 202, response.text
    job_id: str = response.json()["id"]
    return job_id


def test_versions_beyond_the_cap_are_trimmed_oldest_first_and_numbers_go_on(
    stack: Stack, kazoo: KazooClient, zk_root: str
) -> None:
    stack.start_api()
    stack.start_worker("worker", ZOOTRAIN_MAX_VERSIONS="2", **SWEEPS)
    model = f"{zk_root}/models/trimmed"
    with httpx.Client(headers=AUTH, base_url=str(stack.api_url), timeout=30) as client:
        jobs = []
        for _ in range(3):
            jobs.append(submit(client, iris_spec("trimmed")))
            assert wait_job(client, jobs[-1])["state"] == "succeeded"
        # Three published, two kept: the oldest record goes.
        wait_for(lambda: len(children(kazoo, model)) == 2, 30, "the oldest version to go")
        assert children(kazoo, model) == ["v-0000000001", "v-0000000002"]
        assert [v["version"] for v in client.get("/v1/models/trimmed/versions").json()] == [2, 3]
        assert client.get("/v1/models/trimmed/versions/1").status_code in (404, 410)
        assert client.get("/v1/models/trimmed/versions/2").status_code == 200

        # The next version is 4, not a reused 1 (the sequence lives in the parent node).
        jobs.append(submit(client, iris_spec("trimmed")))
        view = wait_job(client, jobs[-1])
        assert view["state"] == "succeeded" and view["model"]["version"] == 4, view
        wait_for(
            lambda: children(kazoo, model) == ["v-0000000002", "v-0000000003"],
            30,
            "version 2 to go",
        )
        predicted = client.post("/v1/models/trimmed/predict", json={"instances": [[5, 3, 1, 0]]})
        assert predicted.status_code == 200 and predicted.json()["version"] == 4
    # Only versions went: the jobs that made them are all still there.
    assert sorted(children(kazoo, f"{zk_root}/jobs")) == sorted(jobs)


def _forge_key(kazoo: KazooClient, bucket: str, age: timedelta) -> str:
    """An Idempotency-Key record created ``age`` ago (keys are never back-dated otherwise)."""
    path = f"{bucket}/{uuid.uuid4().hex * 2}"
    record = {
        "job_id": "0" * 20,
        "fingerprint": "f" * 64,
        "created_at": (datetime.now(UTC) - age).isoformat(),
    }
    kazoo.create(path, json.dumps(record).encode())
    return path


def test_idempotency_keys_past_their_retention_are_deleted_and_younger_ones_kept(
    stack: Stack, kazoo: KazooClient, zk_root: str
) -> None:
    stack.start_api()
    stack.start_worker("worker", ZOOTRAIN_IDEMPOTENCY_RETENTION="3600", **SWEEPS)
    with httpx.Client(headers=AUTH, base_url=str(stack.api_url), timeout=30) as client:
        job_id = submit(client, iris_spec("keyed"), **{"Idempotency-Key": "young-key"})
        young = idempotency_path(zk_root, "young-key")
        bucket = young.rsplit("/", 1)[0]
        # In the real key's bucket: one older than the retention, one younger.
        old = _forge_key(kazoo, bucket, timedelta(hours=2))
        recent = _forge_key(kazoo, bucket, timedelta(minutes=30))
        wait_for(lambda: not kazoo.exists(old), 30, "the expired key to be deleted")
        # A sweep lists a bucket once and judges every key in it: a second expired key, made
        # after the first was deleted, goes in a later sweep, so the bucket's other keys were
        # judged at least once by then.
        later = _forge_key(kazoo, bucket, timedelta(days=3))
        wait_for(lambda: not kazoo.exists(later), 30, "the second expired key to be deleted")
        assert kazoo.exists(recent) and kazoo.exists(young)
        assert read_json(kazoo, young)["job_id"] == job_id
        # The kept key still stands for its job.
        again = client.post(
            "/v1/jobs", json=iris_spec("keyed"), headers={"Idempotency-Key": "young-key"}
        )
        assert again.status_code == 200 and again.json()["id"] == job_id, again.text
        wait_job(client, job_id)
    # Deleting keys touched no job.
    assert children(kazoo, f"{zk_root}/jobs") == [job_id]


def test_a_merge_nobody_would_start_is_woken_by_the_housekeeper(
    stack: Stack, kazoo: KazooClient, zk_root: str, zookeeper: ZooKeeperCluster
) -> None:
    """A worker wrote its shard's last "done" and froze before letting go of its lock: no watch
    will tell the other worker that the job can be merged. Only the housekeeper's sweep, which
    finds a running job with every shard done and no merge lock, wakes it (a write to the queue
    node every worker watches)."""
    paths = Paths(zk_root)
    port = zookeeper.nodes[0].client_port
    stack.start_api()
    wait_layout(kazoo, zk_root)
    # This test's own candidate stands first, so the worker is not the housekeeper until the
    # test steps down: the sweep runs exactly when the test wants it.
    candidate = kazoo.create(
        f"{paths.election}/{uuid.uuid4().hex}-n_", b"test", ephemeral=True, sequence=True
    )
    worker = stack.start_worker("worker", **SWEEPS)

    def session() -> int:
        (name,) = children(kazoo, paths.workers)
        return int(kazoo.exists(paths.worker(name)).ephemeralOwner)

    wait_for(
        lambda: session() in watches_by_path(port).get(candidate, set()),
        30,
        "the worker to stand behind the test's candidate",
    )

    with httpx.Client(headers=AUTH, base_url=str(stack.api_url), timeout=30) as client:
        model = "woken"
        done = submit(client, iris_spec(model))
        assert wait_job(client, done)["state"] == "succeeded"
    record = job_record(kazoo, zk_root, done)
    shards = shard_records(kazoo, zk_root, done)
    assert record is not None and len(shards) == 2

    # A copy of that job, running: shard 0 done, shard 1 claimed by a "frozen" worker (the
    # test's session holds its lock), all in one multi.
    job_id = f"{int(time.time() * 1000):012x}{uuid.uuid4().hex[:8]}"
    running = {**record, "id": job_id, "state": "running", "model": None, "finished_at": None}
    claimed = {**shards[1], "state": "running", "worker": "frozen-worker", "finished_at": None}
    tx = kazoo.transaction()
    tx.create(paths.job(job_id), json.dumps(running).encode())
    tx.create(paths.shards(job_id))
    tx.create(paths.shard(job_id, 0), json.dumps(shards[0]).encode())
    tx.create(paths.shard(job_id, 1), json.dumps(claimed).encode())
    tx.create(paths.shard_lock(job_id, 1), b"frozen-worker", ephemeral=True)
    entry = paths.queue_prefix(job_id, record["spec"]["priority"])
    tx.create(entry, job_id.encode(), sequence=True)
    results = tx.commit()
    assert not [r for r in results if isinstance(r, Exception)], results
    # The worker sees the job and parks on the lock's release.
    lock = paths.shard_lock(job_id, 1)
    wait_for(lambda: session() in watches_by_path(port).get(lock, set()), 30, "the lock watch")

    # The frozen worker's last write: shard 1 done. It keeps its lock; no watch fires.
    _, stat = kazoo.get(paths.shard(job_id, 1))
    kazoo.set(paths.shard(job_id, 1), json.dumps(shards[1]).encode(), version=stat.version)
    queue_before = kazoo.exists(paths.queue).mzxid
    assert (job_record(kazoo, zk_root, job_id) or {})["state"] == "running"
    assert not kazoo.exists(paths.merge_lock(job_id))

    kazoo.delete(candidate)  # the worker leads housekeeping now
    wait_for(
        lambda: (job_record(kazoo, zk_root, job_id) or {}).get("state") == "succeeded",
        60,
        "the stalled job to be merged",
    )
    # The housekeeper's nudge did it: the queue node was written, and the frozen worker's
    # lock, whose release would have been the other wake-up, is still held.
    assert kazoo.exists(paths.queue).mzxid > queue_before
    assert kazoo.exists(lock).ephemeralOwner == kazoo.client_id[0]
    assert "leading housekeeping" in worker.output()
    assert worker.output().count(f"claim {job_id}/merge") == 1
    published = versions_by_job(kazoo, zk_root)
    assert len(published[job_id]) == 1 and len(published[done]) == 1
    assert children(kazoo, paths.queue) == []
