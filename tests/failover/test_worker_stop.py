"""SIGTERM: a worker stops gracefully. With time to spare it finishes its shard; past its grace
period it hands the shard back (no attempt consumed) and closes its session, so its ephemeral
nodes go at once and another worker takes over immediately."""

from __future__ import annotations

import signal

import httpx
import pytest
from kazoo.client import KazooClient

from testkit.auth import AUTH
from testkit.stack import Process, Stack, descendants, wait_for, wait_job
from tests.failover.helpers import (
    children,
    claim_lines,
    read_json,
    shard_records,
    slow_spec,
    versions_by_job,
)

pytestmark = pytest.mark.integration


def submit(client: httpx.Client, spec: dict[str, object]) -> str:
    response = client.post("/v1/jobs", json=spec)
    assert response.status_code == 202, response.text
    job_id: str = response.json()["id"]
    return job_id


def wait_training(worker: Process, job_id: str, idle: set[int]) -> None:
    """Until ``worker`` has claimed shard 0 of the job and its training child is running."""
    wait_for(lambda: claim_lines(worker, job_id, 0), 60, f"{worker.name} to claim {job_id}/0")
    wait_for(lambda: descendants(worker.popen.pid) - idle, 30, "the training child")


def election_owners(kazoo: KazooClient, root: str) -> list[str]:
    path = f"{root}/election"
    return sorted(kazoo.get(f"{path}/{name}")[0].decode() for name in children(kazoo, path))


def test_sigterm_with_long_grace_finishes_the_running_shard(
    stack: Stack, kazoo: KazooClient, zk_root: str
) -> None:
    stack.start_api()
    patient = stack.start_worker(
        "patient", ZOOTRAIN_WORKER_ID="patient", ZOOTRAIN_WORKER_GRACE="120"
    )
    idle = descendants(patient.popen.pid)
    with httpx.Client(headers=AUTH, base_url=str(stack.api_url), timeout=30) as client:
        job_id = submit(client, slow_spec("patient-forest", n_samples=20_000))
        wait_training(patient, job_id, idle)
        shard = shard_records(kazoo, zk_root, job_id)[0]
        assert (shard["state"], shard["attempts"], shard["worker"]) == ("running", 1, "patient")

        patient.signal(signal.SIGTERM)  # mid-shard: the shard has seconds left to train
        assert patient.popen.wait(120) == 0, patient.output()[-3000:]

        output = patient.output()
        assert f"done {job_id}/0 in " in output, output[-3000:]
        # The stop arrived mid-shard, and the shard still finished.
        assert output.index("worker patient stopping") < output.index(f"done {job_id}/0 in ")
        assert f"stopped {job_id}/0" not in output
        shard = shard_records(kazoo, zk_root, job_id)[0]
        assert shard["state"] == "done", shard
        assert (shard["attempts"], shard["worker"]) == (1, "patient"), shard
        assert shard["artifact"] and shard["sha256"], shard
        # It closed its session on the way out: its ephemeral nodes are gone already.
        assert children(kazoo, f"{zk_root}/locks") == []
        assert children(kazoo, f"{zk_root}/workers") == []
        assert election_owners(kazoo, zk_root) == []

        # The finished shard is kept: a later worker merges it and does not train it again.
        successor = stack.start_worker("successor", ZOOTRAIN_WORKER_ID="successor")
        view = wait_job(client, job_id, timeout=120)
        assert view["state"] == "succeeded", view
        assert claim_lines(successor, job_id, 0) == []
        assert view["shards"][0]["attempts"] == 1
        assert view["shards"][0]["worker"] == "patient"
        assert view["shards"][0]["sha256"] == shard["sha256"]
        published = versions_by_job(kazoo, zk_root)
        assert list(published) == [job_id] and len(published[job_id]) == 1, published
        assert children(kazoo, f"{zk_root}/queue") == []


def test_sigterm_past_grace_hands_the_shard_back_and_another_worker_finishes(
    stack: Stack, kazoo: KazooClient, zk_root: str
) -> None:
    stack.start_api()
    first = stack.start_worker("first", ZOOTRAIN_WORKER_ID="first")
    idle = descendants(first.popen.pid)
    with httpx.Client(headers=AUTH, base_url=str(stack.api_url), timeout=30) as client:
        job_id = submit(client, slow_spec("handback-forest", n_samples=25_000, max_attempts=3))

        # A first attempt dies with its worker, so the shard to hand back is on attempt 2:
        # handing back must restore 1, not reset to 0.
        wait_training(first, job_id, idle)
        first.kill()
        quitter = stack.start_worker(
            "quitter", ZOOTRAIN_WORKER_ID="quitter", ZOOTRAIN_WORKER_GRACE="0.5"
        )
        quitter_idle = descendants(quitter.popen.pid)
        wait_for(
            lambda: claim_lines(quitter, job_id, 0), 60, "the quitter to re-claim after expiry"
        )
        wait_for(lambda: descendants(quitter.popen.pid) - quitter_idle, 30, "the training child")
        shard = shard_records(kazoo, zk_root, job_id)[0]
        assert (shard["state"], shard["attempts"], shard["worker"]) == ("running", 2, "quitter")
        assert claim_lines(quitter, job_id, 0)[0].rstrip().endswith("attempt 2")

        quitter.signal(signal.SIGTERM)  # the shard needs seconds more; the grace is 0.5 s
        assert quitter.popen.wait(60) == 0, quitter.output()[-3000:]

        # Right after the exit, before any session could have expired: the session was closed.
        assert not kazoo.exists(f"{zk_root}/workers/quitter")
        assert "quitter" not in election_owners(kazoo, zk_root)
        assert children(kazoo, f"{zk_root}/locks") == []
        shard = read_json(kazoo, f"{zk_root}/jobs/{job_id}/shards/0000")
        assert shard["state"] == "pending", shard
        assert shard["attempts"] == 1, shard  # its value before the quitter's claim
        assert shard["worker"] is None, shard
        output = quitter.output()
        assert f"stopped {job_id}/0 (handback)" in output, output[-3000:]
        assert f"done {job_id}/0" not in output

        finisher = stack.start_worker("finisher", ZOOTRAIN_WORKER_ID="finisher")
        view = wait_job(client, job_id, timeout=120)
        assert view["state"] == "succeeded", view
        assert view["shards"][0]["worker"] == "finisher"
        assert view["shards"][0]["attempts"] == 2
        claims = claim_lines(finisher, job_id, 0)
        assert len(claims) == 1 and claims[0].rstrip().endswith("attempt 2"), claims
        published = versions_by_job(kazoo, zk_root)
        assert list(published) == [job_id] and len(published[job_id]) == 1, published
        assert children(kazoo, f"{zk_root}/queue") == []
        wait_for(lambda: children(kazoo, f"{zk_root}/locks") == [], 15, "the locks to go")
