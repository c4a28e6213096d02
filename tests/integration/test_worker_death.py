"""Worker death, freeze and stop: SIGKILL mid-shard and mid-merge, SIGSTOP past the session
timeout (fencing), SIGTERM (hand-back); and housekeeping after a session expiry."""

from __future__ import annotations

import os
import signal

import httpx
import pytest
from kazoo.client import KazooClient

from testkit.auth import AUTH
from testkit.stack import Stack, descendants, wait_for, wait_job
from tests.integration.conftest import (
    children,
    claim_lines,
    iris_spec,
    shard_records,
    start_api,
    submit,
    wait_until_empty,
)

pytestmark = pytest.mark.integration

# A few seconds a shard on this machine: long enough to kill a worker in the middle of one.
SPEC = iris_spec(
    model_name="survivor-forest",
    dataset={"kind": "synthetic", "task": "classification", "n_samples": 40_000},
    params={"n_estimators": 80, "max_depth": 12},
    shards=2,
)


def test_killed_worker_shard_is_reclaimed_and_job_succeeds(
    stack: Stack, kazoo: KazooClient, zk_root: str
) -> None:
    api_url = start_api(stack, kazoo)
    workers = {
        "alpha": stack.start_worker("worker", ZOOTRAIN_WORKER_ID="alpha"),
        "beta": stack.start_worker("worker", ZOOTRAIN_WORKER_ID="beta"),
    }
    with httpx.Client(headers=AUTH, base_url=api_url, timeout=30) as client:
        job_id = submit(client, SPEC)["id"]

        def both_running() -> bool:
            return [s["state"] for s in shard_records(kazoo, zk_root, job_id)] == [
                "running",
                "running",
            ]

        wait_for(both_running, 60, "both shards to be running")
        shard0 = shard_records(kazoo, zk_root, job_id)[0]
        victim_id = shard0["worker"]
        survivor_id = ({"alpha", "beta"} - {victim_id}).pop()
        victim, survivor = workers[victim_id], workers[survivor_id]
        assert shard0["attempts"] == 1

        victim.kill()  # SIGKILL to its process group: the worker and its training child
        assert not victim.alive()

        view = wait_job(client, job_id, timeout=120)
        assert view["state"] == "succeeded", view

        shards = view["shards"]
        assert shards[0]["state"] == "done" and shards[1]["state"] == "done"
        assert shards[0]["attempts"] == 2, shards[0]
        assert shards[0]["worker"] == survivor_id
        assert shards[1]["attempts"] == 1, shards[1]
        assert shards[1]["worker"] == survivor_id
        # The history (the dashboard's timeline) shows the re-claim: the dead worker's attempt
        # wrote no outcome, so the survivor's claim ended it as lost.
        lost, redone = shards[0]["history"]
        assert (lost["worker"], lost["outcome"]) == (victim_id, "lost"), lost
        assert (redone["worker"], redone["outcome"]) == (survivor_id, "done"), redone
        assert lost["ended_at"] == redone["claimed_at"] and redone["ended_at"] is not None

        assert len(claim_lines(victim, job_id, 0)) == 1
        assert claim_lines(victim, job_id, 1) == []
        reclaims = claim_lines(survivor, job_id, 0)
        assert len(reclaims) == 1 and reclaims[0].rstrip().endswith("attempt 2"), reclaims
        assert len(claim_lines(survivor, job_id, 1)) == 1

        # Published exactly once, from this job.
        versions = client.get("/v1/models/survivor-forest/versions").json()
        assert [v["job_id"] for v in versions] == [job_id]

        # The dead worker's ephemeral nodes went with its session; nothing else lingers.
        workers_listed = [w["id"] for w in client.get("/v1/workers").json()]
        assert workers_listed == [survivor_id]
        assert children(kazoo, f"{zk_root}/queue") == []
        wait_until_empty(kazoo, f"{zk_root}/locks")
        assert survivor.alive()


# Many small trees: shards train in a couple of seconds, the merge (load, pool, save) takes longer.
MERGE_HEAVY = iris_spec(
    model_name="merge-survivor",
    params={"n_estimators": 700, "max_depth": 3},
    shards=2,
)


def test_worker_killed_while_merging_is_replaced_and_publishes_once(
    stack: Stack, kazoo: KazooClient, zk_root: str
) -> None:
    api_url = start_api(stack, kazoo)
    workers = {
        "alpha": stack.start_worker("worker", ZOOTRAIN_WORKER_ID="alpha"),
        "beta": stack.start_worker("worker", ZOOTRAIN_WORKER_ID="beta"),
    }
    with httpx.Client(headers=AUTH, base_url=api_url, timeout=30) as client:
        job_id = submit(client, MERGE_HEAVY)["id"]
        merging = f"claim {job_id}/merge"

        def merger() -> str | None:
            for name, process in workers.items():
                if merging in process.output():
                    return name
            return None

        wait_for(lambda: merger() is not None, 60, "a worker to claim the merge")
        victim_id = merger()
        assert victim_id is not None
        survivor_id = ({"alpha", "beta"} - {victim_id}).pop()
        wait_for(
            lambda: client.get(f"/v1/jobs/{job_id}").json()["state"] == "merging",
            30,
            "the job to be merging",
        )
        workers[victim_id].kill()  # mid-merge: pooling and saving the trees takes seconds
        assert f"from job {job_id}" not in workers[victim_id].output()

        view = wait_job(client, job_id, timeout=120)
        assert view["state"] == "succeeded", view
        assert all(s["attempts"] == 1 and s["state"] == "done" for s in view["shards"])
        merges = [(m["worker"], m["outcome"]) for m in view["merges"]]
        assert merges == [(victim_id, "lost"), (survivor_id, "merged")], view["merges"]
        assert workers[survivor_id].output().count(merging) == 1
        assert f"from job {job_id}" in workers[survivor_id].output()
        assert f"from job {job_id}" not in workers[victim_id].output()

        versions = client.get("/v1/models/merge-survivor/versions").json()
        assert [v["job_id"] for v in versions] == [job_id]
        assert view["model"] == {"name": "merge-survivor", "version": versions[0]["version"]}
        assert children(kazoo, f"{zk_root}/queue") == []
        wait_until_empty(kazoo, f"{zk_root}/locks")


def test_graceful_stop_hands_the_shard_back_without_using_an_attempt(
    stack: Stack, kazoo: KazooClient, zk_root: str
) -> None:
    api_url = start_api(stack, kazoo)
    quitter = stack.start_worker("quitter", ZOOTRAIN_WORKER_ID="quitter", ZOOTRAIN_WORKER_GRACE="0")
    spec = {**SPEC, "model_name": "handed-back", "shards": 1, "max_attempts": 1}
    with httpx.Client(headers=AUTH, base_url=api_url, timeout=30) as client:
        job_id = submit(client, spec)["id"]
        wait_for(
            lambda: shard_records(kazoo, zk_root, job_id)[0]["state"] == "running",
            60,
            "the shard to be running",
        )
        assert quitter.stop(30) == 0, quitter.output()  # SIGTERM: graceful
        assert f"stopped {job_id}/0 (handback)" in quitter.output()

        shard = shard_records(kazoo, zk_root, job_id)[0]
        assert shard["state"] == "pending", shard
        assert shard["attempts"] == 0, shard
        assert children(kazoo, f"{zk_root}/locks") == []
        assert [w["id"] for w in client.get("/v1/workers").json()] == []

        # max_attempts is 1: only a handed-back (not a consumed) attempt lets this succeed.
        successor = stack.start_worker("successor", ZOOTRAIN_WORKER_ID="successor")
        view = wait_job(client, job_id, timeout=120)
        assert view["state"] == "succeeded", view
        assert view["shards"][0]["attempts"] == 1
        assert view["shards"][0]["worker"] == "successor"
        history = [(a["worker"], a["outcome"]) for a in view["shards"][0]["history"]]
        assert history == [("quitter", "handed_back"), ("successor", "done")], history
        assert len(claim_lines(successor, job_id, 0)) == 1


def test_paused_worker_loses_its_shard_and_its_result_is_discarded(
    stack: Stack, kazoo: KazooClient, zk_root: str
) -> None:
    """A worker frozen past its session timeout (GC pause, partition) must not publish."""
    api_url = start_api(stack, kazoo)
    sleeper = stack.start_worker("worker", ZOOTRAIN_WORKER_ID="sleeper")
    idle = descendants(sleeper.popen.pid)
    spec = {**SPEC, "model_name": "fenced", "shards": 1}
    with httpx.Client(headers=AUTH, base_url=api_url, timeout=30) as client:
        job_id = submit(client, spec)["id"]
        wait_for(lambda: claim_lines(sleeper, job_id, 0), 60, "the claim")
        wait_for(lambda: descendants(sleeper.popen.pid) - idle, 30, "the training child")
        os.killpg(sleeper.popen.pid, signal.SIGSTOP)  # the worker and its training child
        try:
            wait_for(
                lambda: "sleeper" not in children(kazoo, f"{zk_root}/workers"),
                30,
                "the frozen worker's session to expire",
            )
            assert children(kazoo, f"{zk_root}/locks") == []
            awake = stack.start_worker("worker", ZOOTRAIN_WORKER_ID="awake")
            wait_for(
                lambda: shard_records(kazoo, zk_root, job_id)[0]["attempts"] == 2,
                60,
                "the shard to be re-claimed",
            )
        finally:
            os.killpg(sleeper.popen.pid, signal.SIGCONT)

        wait_for(
            lambda: f"stopped {job_id}/0 (lost)" in sleeper.output(),
            30,
            "the resumed worker to drop its shard",
        )
        view = wait_job(client, job_id, timeout=120)
        assert view["state"] == "succeeded", view
        assert view["shards"][0]["worker"] == "awake"
        assert view["shards"][0]["attempts"] == 2
        assert f"done {job_id}/0" not in sleeper.output()
        # Either worker may merge (the resumed one has a fresh session by then), once.
        published = f"from job {job_id}"
        assert sleeper.output().count(published) + awake.output().count(published) == 1
        versions = client.get("/v1/models/fenced/versions").json()
        assert [v["job_id"] for v in versions] == [job_id]
        # The resumed worker registers again with a new session and keeps serving.
        wait_for(
            lambda: sorted(children(kazoo, f"{zk_root}/workers")) == ["awake", "sleeper"],
            30,
            "the resumed worker to register again",
        )
        assert sleeper.alive()


def test_housekeeping_after_session_expiry_does_not_spin(
    stack: Stack, kazoo: KazooClient, zk_root: str
) -> None:
    worker = stack.start_worker("worker", ZOOTRAIN_WORKER_ID="lonely")
    wait_for(lambda: "leading housekeeping" in worker.output(), 30, "the worker to lead")
    os.killpg(worker.popen.pid, signal.SIGSTOP)
    try:
        wait_for(
            lambda: children(kazoo, f"{zk_root}/workers") == [],
            30,
            "the frozen worker's session to expire",
        )
    finally:
        os.killpg(worker.popen.pid, signal.SIGCONT)
    wait_for(
        lambda: children(kazoo, f"{zk_root}/workers") == ["lonely"],
        30,
        "the worker to register again",
    )
    # Alone, it leads again: once before the pause and once after its new session.
    wait_for(lambda: len(children(kazoo, f"{zk_root}/election")) == 1, 30, "a single candidate")
    wait_for(
        lambda: worker.output().count("leading housekeeping") >= 2, 30, "the worker to lead again"
    )
    assert worker.output().count("leading housekeeping") == 2, worker.output()[-3000:]
    assert worker.alive()
