"""The housekeeper never deletes what it could not read, and stops the moment it stops leading;
its election never leaves an orphan candidate behind.

- a job record that does not parse keeps its queue entry (logged, counted in a metric);
- a quorum outage longer than the session timeout in the middle of sweeps (reads fail, and a
  delete queued in kazoo meanwhile would be sent on reconnect) costs no queue entry: the job
  runs once it may;
- a housekeeper whose session expired deletes nothing, even if its sweep runs on;
- a candidate create whose reply is lost, followed by a connection drop on the listing that
  looks for it, does not leave a second candidate of ours ahead of ourselves (housekeeping
  would stall cluster-wide): the worker leads, with one candidate.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from pathlib import Path

import httpx
import pytest
from kazoo.client import KazooClient

from testkit.stack import Process, Stack, wait_for
from testkit.zkproxy import CREATE, GET_CHILDREN, GET_DATA, ZooKeeperProxy
from testkit.zkserver import ZooKeeperCluster, free_port
from tests.failover.helpers import (
    children,
    fresh_kazoo,
    job_record,
    wait_layout,
)
from workers.housekeeping import Housekeeper, NotLeading
from zootrain.paths import Paths
from zootrain.queue import JobQueue
from zootrain.records import JobRecord, JobSpec, ShardRecord, utcnow
from zootrain.settings import Settings
from zootrain.zk import KazooState, ZooKeeper

pytestmark = pytest.mark.integration


def metric(port: int, name: str) -> float:
    """The sum of a metric's samples on a worker's /metrics (0 if absent)."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    total = 0.0
    for line in text.splitlines():
        if re.match(rf"^{re.escape(name)}(\{{|\s)", line):
            total += float(line.rsplit(" ", 1)[1])
    return total


def wait_sweeps(port: int, more: int, timeout: float = 60) -> None:
    start = metric(port, "zootrain_housekeeping_sweeps_total")
    wait_for(
        lambda: metric(port, "zootrain_housekeeping_sweeps_total") >= start + more,
        timeout,
        f"{more} more housekeeping sweeps",
    )


def housekeeper(stack: Stack, **extra: str) -> tuple[Process, int]:
    port = free_port()
    worker = stack.start_worker(
        "keeper",
        ZOOTRAIN_HOUSEKEEPING_INTERVAL="0.5",
        ZOOTRAIN_METRICS_PORT=str(port),
        **extra,
    )
    wait_for(lambda: "leading housekeeping" in worker.output(), 30, "the worker to lead")
    return worker, port


def queued_job(kazoo: KazooClient, root: str, *, not_before: float | None = None) -> str:
    """A valid queued job, written straight to ZooKeeper; its shard waits until not_before."""
    spec = JobSpec.model_validate(
        {
            "model_name": "kept",
            "algorithm": "random_forest_classifier",
            "params": {"n_estimators": 3, "max_depth": 3},
            "dataset": {"kind": "builtin", "name": "iris"},
            "shards": 1,
            # As submit writes it: 'auto' is chosen there (zootrain.shard_plan), never by workers.
            "partition": "random",
            "max_attempts": 1,
        }
    )
    now = utcnow()
    job = JobRecord(id=f"{int(time.time() * 1000):012x}{uuid.uuid4().hex[:8]}", spec=spec,
                    created_at=now, updated_at=now)  # fmt: skip
    paths = Paths(root)
    shard = ShardRecord(index=0, not_before=not_before)
    tx = kazoo.transaction()
    tx.create(paths.job(job.id), job.dump())
    tx.create(paths.shards(job.id))
    tx.create(paths.shard(job.id, 0), shard.dump())
    tx.create(paths.queue_prefix(job.id, spec.priority), job.id.encode(), sequence=True)
    assert all(not isinstance(r, Exception) for r in tx.commit())
    return job.id


def queue_jobs(kazoo: KazooClient, root: str) -> list[str]:
    return [name.split("-")[1] for name in children(kazoo, f"{root}/queue")]


def test_a_job_record_that_does_not_parse_keeps_its_queue_entry(
    stack: Stack, kazoo: KazooClient, zk_root: str
) -> None:
    worker, port = housekeeper(stack)
    wait_layout(kazoo, zk_root)
    broken = f"{int(time.time() * 1000):012x}0badc0de"
    kazoo.create(f"{zk_root}/jobs/{broken}", b'{"id": "' + broken.encode() + b'", "state": ')
    kazoo.create(f"{zk_root}/queue/4-{broken}-", broken.encode(), sequence=True)
    wait_sweeps(port, 4)
    assert queue_jobs(kazoo, zk_root) == [broken]
    assert metric(port, "zootrain_unreadable_records") == 1
    assert worker.output().count("does not parse") == 1  # logged once, not every sweep
    assert kazoo.exists(f"{zk_root}/jobs/{broken}")


def test_reads_failing_through_a_quorum_outage_delete_no_queue_entry(
    ensemble: ZooKeeperCluster, ensemble_stack: Stack, ensemble_env: dict[str, str]
) -> None:
    root = ensemble_env["ZOOTRAIN_ZK_ROOT"]
    # The worker reaches the ensemble through a proxy that can hold one request: the
    # housekeeper's read of the job, so that the outage starts while it is in flight.
    proxy = ZooKeeperProxy([n.client_port for n in ensemble.nodes]).start()
    try:
        worker, port = housekeeper(ensemble_stack, ZOOTRAIN_ZK_HOSTS=proxy.address)
        kazoo = fresh_kazoo(ensemble.hosts)
        try:
            # Claimable only after the outage: until then, only the housekeeper reads it.
            job_id = queued_job(kazoo, root, not_before=time.time() + 45)
            wait_sweeps(port, 3)
        finally:
            kazoo.stop()
            kazoo.close()
        held = proxy.hold_next(GET_DATA, f"{root}/jobs/{job_id}")
        assert held.matched.wait(30), "no read of the job to hold"
        stopped = [n for n in ensemble.nodes if n.mode() == "leader"]
        stopped += [n for n in ensemble.nodes if n not in stopped][:1]
        for node in stopped:
            ensemble.kill_node(node)
        held.released.set()  # into a server that is gone or has no quorum: ConnectionLoss
        time.sleep(16.0)  # 4 session timeouts: the read's retries give up meanwhile
        for node in stopped:
            ensemble.start_node(node, wait=False)  # together: one alone has no quorum
        ensemble.wait_ready(120)
        wait_sweeps(port, 3)
        kazoo = fresh_kazoo(ensemble.hosts)
        try:
            assert queue_jobs(kazoo, root) == [job_id]
            # And the job runs once its backoff is over: nothing stranded it.
            wait_for(
                lambda: (job_record(kazoo, root, job_id) or {}).get("state") == "succeeded",
                120,
                "the job to succeed",
            )
            assert queue_jobs(kazoo, root) == []
        finally:
            kazoo.stop()
            kazoo.close()
        assert worker.alive()
    finally:
        proxy.close()


def test_a_lost_candidate_reply_and_a_cut_listing_leave_no_orphan_candidate(
    stack: Stack, proxy: ZooKeeperProxy, kazoo: KazooClient, zk_root: str
) -> None:
    stack.start_api()
    wait_layout(kazoo, zk_root)
    election = f"{zk_root}/election"
    proxy.drop_next_reply(CREATE, f"{election}/")
    proxy.cut_next(GET_CHILDREN, election)
    worker = stack.start_worker("worker", ZOOTRAIN_ZK_HOSTS=proxy.address)
    wait_for(lambda: len(proxy.faults) == 2, 30, "both faults to hit the election")
    faulted_at = time.monotonic()
    wait_for(
        lambda: "leading housekeeping" in worker.output(),
        30,
        f"the worker to lead; candidates: {children(kazoo, election)}",
    )
    print(f"election: leading {time.monotonic() - faulted_at:.2f}s after the second fault")
    assert len(children(kazoo, election)) == 1, children(kazoo, election)
    assert [action for action, _, _ in proxy.faults] == ["drop_reply", "cut"]


def test_a_housekeeper_whose_session_expired_deletes_nothing(
    zookeeper: ZooKeeperCluster, kazoo: KazooClient, zk_root: str, tmp_path: Path
) -> None:
    settings = Settings(
        zk_hosts=zookeeper.hosts,
        zk_root=zk_root,
        artifacts=str(tmp_path / "artifacts"),
        zk_session_timeout=4,
    )

    async def scenario() -> None:
        zk = ZooKeeper(zookeeper.hosts, session_timeout=4)
        await zk.start()
        try:
            queue = JobQueue(zk, Paths(zk_root))
            await queue.ensure_layout()
            keeper = Housekeeper(queue, settings, "expired-keeper")
            await asyncio.wait_for(keeper.election.lead(), 30)
            # What its sweep would remove: a queue entry whose job does not exist.
            ghost = f"{int(time.time() * 1000):012x}0badf00d"
            entry = kazoo.create(f"{zk_root}/queue/4-{ghost}-", b"", sequence=True)

            # Its session expires (a long pause, a partition): another client takes the
            # session over and closes it; the housekeeper reconnects with a new session.
            old_session = zk.session_id
            lost = asyncio.Event()
            zk.add_state_listener(lambda state: state == KazooState.LOST and lost.set())
            session_id, password = zk.client.client_id
            thief = KazooClient(hosts=zookeeper.hosts, client_id=(session_id, password))
            thief.start(30)
            thief.stop()
            thief.close()
            await asyncio.wait_for(lost.wait(), 30)
            await zk.wait_connected(30)
            assert zk.session_id != old_session

            # Its sweep, running on, must stop before its first deletion.
            with pytest.raises(NotLeading):
                await keeper.sweep()
            assert kazoo.exists(entry), "an expired leader deleted a queue entry"
        finally:
            await zk.stop()

    asyncio.run(asyncio.wait_for(scenario(), 120))
