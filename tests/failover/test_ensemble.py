"""A 3-node ZooKeeper ensemble loses its leader, and later a follower, while jobs stream in:
every process keeps its session (or recovers), and every accepted job succeeds, once."""

from __future__ import annotations

import pytest

from testkit.stack import Stack, wait_for
from testkit.zkserver import Node, ZooKeeperCluster
from tests.failover.helpers import (
    RetryingClient,
    Submitter,
    children,
    fresh_kazoo,
    idempotency_records,
    job_record,
    versions_by_job,
    wait_no_locks,
    wait_terminal,
)

pytestmark = pytest.mark.integration


def other_leader(cluster: ZooKeeperCluster, dead: Node) -> bool:
    return any(n.mode() == "leader" for n in cluster.nodes if n is not dead)


def test_jobs_survive_the_loss_of_the_leader_and_of_a_follower(
    ensemble: ZooKeeperCluster, ensemble_stack: Stack, ensemble_env: dict[str, str]
) -> None:
    root = ensemble_env["ZOOTRAIN_ZK_ROOT"]
    stack = ensemble_stack
    stack.start_api()
    workers = [stack.start_worker("worker") for _ in range(2)]
    assert stack.api_url is not None
    submitter = Submitter(RetryingClient(stack.api_url), "ens")
    submitter.start()
    try:
        submitter.wait_more(3, "before any failure")

        leader = ensemble.leader()
        ensemble.kill_node(leader)
        wait_for(lambda: other_leader(ensemble, leader), 60, "the ensemble to elect a new leader")
        submitter.wait_more(5, "without the old leader")
        ensemble.start_node(leader)  # it rejoins as a follower
        submitter.wait_more(2, "with the old leader back")

        follower = next(n for n in ensemble.nodes if n is not leader and n.mode() == "follower")
        ensemble.kill_node(follower)
        submitter.wait_more(5, "without a follower")
        ensemble.start_node(follower)
        submitter.wait_more(2, "with the whole ensemble back")
    finally:
        submitter.stopping.set()
        submitter.join(120)
    assert not submitter.errors, submitter.errors
    answers = submitter.answers
    job_ids = [job_id for _, job_id in answers.values()]
    assert len(set(job_ids)) == len(job_ids), "one key answered with another key's job"

    kazoo = fresh_kazoo(ensemble.hosts)
    try:
        wait_terminal(kazoo, root, job_ids, timeout=120)
        states = {j: job_record(kazoo, root, j)["state"] for j in job_ids}  # type: ignore[index]
        assert all(s == "succeeded" for s in states.values()), states
        assert sorted(children(kazoo, f"{root}/jobs")) == sorted(job_ids)  # no duplicates
        keys = idempotency_records(kazoo, root)
        assert sorted(k["job_id"] for k in keys) == sorted(job_ids)

        published = versions_by_job(kazoo, root)
        assert sorted(published) == sorted(job_ids)
        assert all(len(v) == 1 for v in published.values()), published
        for job_id in job_ids:
            record = job_record(kazoo, root, job_id)
            assert record is not None
            model, node = published[job_id][0]
            assert record["model"]["name"] == model
            assert node == f"v-{record['model']['version'] - 1:010d}"

        assert children(kazoo, f"{root}/queue") == []
        # With the workers alive: every claim let go of its lock, even one whose release a
        # connection drop (leader or follower loss) cut off.
        wait_no_locks(kazoo, root)
        assert all(w.alive() for w in workers)
        for worker in workers:
            assert worker.stop(30) == 0
        assert children(kazoo, f"{root}/locks") == []
        assert children(kazoo, f"{root}/workers") == []
        # Nothing was answered 500 (the client raises on one); a 503 while the ensemble had no
        # quorum was retried after its Retry-After.
        client = submitter.client
        assert 500 not in client.statuses, client.statuses
        print(
            f"ensemble: {len(job_ids)} jobs succeeded, {client.retries} client retries, "
            f"statuses {dict(client.statuses)}, connection errors {dict(client.errors)}, "
            f"leader node {leader.myid} and follower node {follower.myid} killed"
        )
    finally:
        kazoo.stop()
        kazoo.close()
