"""Fencing: a worker frozen past its session timeout loses its locks; another worker re-claims
its work; when the frozen one resumes, nothing it does may overwrite the new owner's records or
publish twice. Each way it can go is forced, not left to the order of events on resume:

- its training child has not answered (the child stays frozen): LOST stops the claim, and the
  worker writes nothing ("stopped … (lost)");
- its training child answered while the worker was frozen (only the worker's own process was
  stopped): the worker writes the outcome with the version its claim wrote, from its new
  session, and ZooKeeper refuses it because the re-claim moved the version on (a log line and
  ``zootrain_fenced_writes_total{write="shard"}`` show that this branch ran);
- a merger frozen in the middle of its merge: the other worker re-claims the merge and
  publishes; the frozen merger's late publishing multi is refused on the job's version, and the
  job has exactly one version.
- and the other side: its session expired but nobody re-claimed the shard, so the version
  still matches and its trained result is kept, written from its new session.

In the last two, the frozen worker talks to ZooKeeper through a proxy (zkproxy.py) that is
blocked while it resumes: it must take its child's answer before it can learn that its session
is gone, which is the case the version check exists for. The proxy also holds the outcome's
write, should the child answer before the worker is frozen.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal

import httpx
import pytest
from kazoo.client import KazooClient

from bench.process_stats import cpu_seconds
from testkit.auth import AUTH
from testkit.stack import Process, Stack, descendants, wait_for, wait_job
from testkit.zkproxy import MULTI, Rule, ZooKeeperProxy
from testkit.zkserver import free_port
from tests.failover.helpers import (
    children,
    claim_lines,
    iris_spec,
    job_record,
    lines_matching,
    shard_records,
    slow_spec,
    versions_by_job,
)

pytestmark = pytest.mark.integration


def metric(port: int, name: str, labels: str = "") -> float:
    """The sum of a metric's samples (those whose labels contain ``labels``) on /metrics."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    total = 0.0
    for line in text.splitlines():
        match = re.match(rf"^{re.escape(name)}(\{{[^}}]*\}})?\s+(\S+)$", line)
        if match and labels in (match.group(1) or ""):
            total += float(match.group(2))
    return total


def cont(*pids: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


def training_or_held(worker: Process, idle: set[int], held: Rule) -> None:
    """Wait for the worker's training child to be training, or (if it answered before this
    test looked) for the outcome's write that the proxy holds.

    A child that merely exists may not have its task yet: the worker sends it after the fork,
    and a child whose worker is frozen before it sends would wait for it forever. A child that
    has used CPU time past its start-up's few milliseconds has read its task."""

    def training() -> bool:
        return any(cpu_seconds(pid) >= 0.5 for pid in descendants(worker.popen.pid) - idle)

    wait_for(
        lambda: training() or held.matched.is_set(),
        60,
        "the training child, or the outcome it leads to",
        interval=0.02,
    )


def resume_behind_blocked_proxy(
    worker: Process, proxy: ZooKeeperProxy, answered: str, what: str
) -> None:
    """SIGCONT a worker whose ZooKeeper is out of reach until it logs ``answered`` (it took its
    child's answer); the proxy's held requests, if any, are dropped, never forwarded."""
    proxy.block()  # cuts the frozen worker's connection: a held request goes nowhere
    proxy.clear_rules()
    cont(worker.popen.pid)
    wait_for(lambda: lines_matching(worker, answered), 60, what)
    proxy.unblock()


def test_a_frozen_worker_whose_child_has_not_answered_stops_its_claim_on_resume(
    stack: Stack, kazoo: KazooClient, zk_root: str
) -> None:
    stack.start_api()
    workers = {
        name: stack.start_worker("worker", ZOOTRAIN_WORKER_ID=name) for name in ("left", "right")
    }
    idle = {name: descendants(w.popen.pid) for name, w in workers.items()}
    with httpx.Client(headers=AUTH, base_url=str(stack.api_url), timeout=30) as client:
        response = client.post("/v1/jobs", json=slow_spec("lost-forest", n_samples=25_000))
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
        training = descendants(sleeper.popen.pid) - idle[owner]
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
            before_data, before_stat = kazoo.get(shard_path)
            job_before = kazoo.get(f"{zk_root}/jobs/{job_id}")
            # The worker and its forkserver resume; the training child stays frozen, so its
            # answer cannot come before the worker learns that its session is gone.
            cont(sleeper.popen.pid, *idle[owner])
            wait_for(
                lambda: lines_matching(sleeper, rf"stopped {job_id}/0 \(lost\)"),
                30,
                "the resumed worker to stop its claim",
            )
        finally:
            cont(sleeper.popen.pid, *idle[owner], *training)

        # It registers again with a new session and stays in service.
        wait_for(
            lambda: owner in children(kazoo, f"{zk_root}/workers"),
            30,
            "the resumed worker to register again",
        )
        assert sleeper.alive()
        wait_for(lambda: not descendants(sleeper.popen.pid) & training, 30, "the child to die")

        after_data, after_stat = kazoo.get(shard_path)
        assert after_data == before_data, (before_data, after_data)
        assert after_stat.version == before_stat.version
        assert after_stat.mzxid == before_stat.mzxid
        assert kazoo.get(f"{zk_root}/jobs/{job_id}")[1].mzxid == job_before[1].mzxid

        output = sleeper.output()
        assert f"trained {job_id}/0" not in output, output[-3000:]
        assert "write refused on its version" not in output, output[-3000:]
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


def test_a_frozen_worker_whose_child_answered_has_its_result_refused_on_its_version(
    stack: Stack, proxy: ZooKeeperProxy, kazoo: KazooClient, zk_root: str
) -> None:
    stack.start_api()
    port = free_port()
    sleeper = stack.start_worker(
        "sleeper",
        ZOOTRAIN_WORKER_ID="sleeper",
        ZOOTRAIN_ZK_HOSTS=proxy.address,
        ZOOTRAIN_METRICS_PORT=str(port),
        # The child's exit is this test's sign that it answered: no warm child waits on.
        ZOOTRAIN_WORKER_WARM_CHILDREN="0",
    )
    idle = descendants(sleeper.popen.pid)
    held = proxy.hold_next(MULTI, f"{zk_root}/jobs/", b'"state":"done"')
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
        training_or_held(sleeper, idle, held)
        os.kill(sleeper.popen.pid, signal.SIGSTOP)  # the worker only: its child trains on
        try:
            # Its child answers into the pipe of a frozen worker (a zombie: no longer listed).
            wait_for(lambda: not descendants(sleeper.popen.pid) - idle, 120, "the child's end")
            awake = stack.start_worker("awake", ZOOTRAIN_WORKER_ID="awake")
            wait_for(
                lambda: shard_records(kazoo, zk_root, job_id)[0]["attempts"] == 2,
                60,
                "the other worker to re-claim the shard",
            )
            shard = shard_records(kazoo, zk_root, job_id)[0]
            assert (shard["worker"], shard["state"]) == ("awake", "running"), shard
            resume_behind_blocked_proxy(
                sleeper, proxy, rf"trained {job_id}/0 in", "the resumed worker to take its result"
            )
        finally:
            cont(sleeper.popen.pid)

        wait_for(
            lambda: lines_matching(
                sleeper, rf"shard write refused on its version: {shard_path} moved on"
            ),
            60,
            "the stale result to be refused on its version",
        )
        assert metric(port, "zootrain_fenced_writes_total", 'write="shard"') == 1
        assert lines_matching(sleeper, rf"shard {job_id}/0 was taken over; result discarded")
        wait_for(lambda: "sleeper" in children(kazoo, f"{zk_root}/workers"), 30, "re-registry")
        assert sleeper.alive()

        view = wait_job(client, job_id, timeout=120)
        assert view["state"] == "succeeded", view
        assert view["shards"][0]["worker"] == "awake" and view["shards"][0]["attempts"] == 2
        output = sleeper.output()
        assert f"stopped {job_id}/0 (lost)" not in output, output[-3000:]  # the other branch
        assert f"done {job_id}/0" not in output, output[-3000:]
        # Logged just after the publish that wait_job saw. Either worker may have merged: the
        # sleeper, back in service, may find the re-claimed shard done before its finisher
        # claims the merge (the lock's release, in the done multi, wakes it). The merge takes
        # the shard records as they are: the re-claim's.
        wait_for(
            lambda: f"from job {job_id}" in awake.output() + sleeper.output(),
            30,
            "the publish's log line",
        )
        published = versions_by_job(kazoo, zk_root)
        assert list(published) == [job_id] and len(published[job_id]) == 1, published
        wait_for(lambda: children(kazoo, f"{zk_root}/locks") == [], 15, "the locks to go")


def test_a_merger_frozen_mid_merge_cannot_publish_after_the_job_was_published(
    stack: Stack, proxy: ZooKeeperProxy, kazoo: KazooClient, zk_root: str
) -> None:
    stack.start_api()
    port = free_port()
    merger = stack.start_worker(
        "merger",
        ZOOTRAIN_WORKER_ID="merger",
        ZOOTRAIN_ZK_HOSTS=proxy.address,
        ZOOTRAIN_METRICS_PORT=str(port),
        # The child's exit is this test's sign that it answered: no warm child waits on.
        ZOOTRAIN_WORKER_WARM_CHILDREN="0",
    )
    idle = descendants(merger.popen.pid)
    held = proxy.hold_next(MULTI, f"{zk_root}/jobs/", b'"state":"succeeded"')
    with httpx.Client(headers=AUTH, base_url=str(stack.api_url), timeout=30) as client:
        response = client.post("/v1/jobs", json=iris_spec("frozen-merge", shards=2))
        assert response.status_code == 202, response.text
        job_id = response.json()["id"]
        job_path = f"{zk_root}/jobs/{job_id}"

        def merging() -> bool:
            record = job_record(kazoo, zk_root, job_id) or {}
            return record.get("state") == "merging"

        wait_for(merging, 60, "the merge claim")
        # Frozen with its publishing multi held in the proxy: its merge child has answered.
        # (Not while the child runs: the merging child starts with the merge claim's multi, and
        # a freeze between a fresh child's start and the sending of its task leaves a child
        # that waits for the frozen worker, which this test would take for a merge running.)
        wait_for(held.matched.is_set, 60, "the publish the merge leads to", interval=0.01)
        os.kill(merger.popen.pid, signal.SIGSTOP)
        try:
            wait_for(lambda: not descendants(merger.popen.pid) - idle, 60, "the child's end")
            other = stack.start_worker("other", ZOOTRAIN_WORKER_ID="other")
            view = wait_job(client, job_id, timeout=120)
            assert view["state"] == "succeeded", view
            assert view["merge_attempts"] == 2, view
            job_before = kazoo.get(job_path)
            versions_before = versions_by_job(kazoo, zk_root)
            resume_behind_blocked_proxy(
                merger, proxy, rf"merged {job_id}; publishing", "the merger to take its result"
            )
        finally:
            cont(merger.popen.pid)

        wait_for(
            lambda: lines_matching(merger, rf"publish write refused on its version: {job_path} "),
            60,
            "the late publish to be refused on the job's version",
        )
        assert metric(port, "zootrain_fenced_writes_total", 'write="publish"') == 1
        assert lines_matching(merger, rf"job {job_id} changed while merging; nothing published")
        wait_for(lambda: "merger" in children(kazoo, f"{zk_root}/workers"), 30, "re-registry")
        assert merger.alive()

        assert kazoo.get(job_path)[1].mzxid == job_before[1].mzxid
        published = versions_by_job(kazoo, zk_root)
        assert published == versions_before, (versions_before, published)
        assert list(published) == [job_id] and len(published[job_id]) == 1, published
        assert f"from job {job_id}" not in merger.output()
        assert f"from job {job_id}" in other.output()
        view = client.get(f"/v1/jobs/{job_id}").json()
        assert view["state"] == "succeeded" and view["model"]["version"] == 1, view
        assert children(kazoo, f"{zk_root}/queue") == []
        wait_for(lambda: children(kazoo, f"{zk_root}/locks") == [], 15, "the locks to go")


def test_a_frozen_worker_whose_work_nobody_reclaimed_keeps_its_result(
    stack: Stack, proxy: ZooKeeperProxy, kazoo: KazooClient, zk_root: str
) -> None:
    """The other side of fencing by version: the session (and the lock) expired, but no worker
    took the shard meanwhile, so the version still matches and the trained result is kept
    (written from the new session) rather than trained again."""
    stack.start_api()
    port = free_port()
    sleeper = stack.start_worker(
        "sleeper",
        ZOOTRAIN_WORKER_ID="sleeper",
        ZOOTRAIN_ZK_HOSTS=proxy.address,
        ZOOTRAIN_METRICS_PORT=str(port),
        # The child's exit is this test's sign that it answered: no warm child waits on.
        ZOOTRAIN_WORKER_WARM_CHILDREN="0",
    )
    idle = descendants(sleeper.popen.pid)
    held = proxy.hold_next(MULTI, f"{zk_root}/jobs/", b'"state":"done"')
    with httpx.Client(headers=AUTH, base_url=str(stack.api_url), timeout=30) as client:
        response = client.post("/v1/jobs", json=slow_spec("kept-forest", n_samples=25_000))
        assert response.status_code == 202, response.text
        job_id = response.json()["id"]
        wait_for(
            lambda: shard_records(kazoo, zk_root, job_id)[0]["state"] == "running",
            60,
            "the shard to be claimed",
        )
        training_or_held(sleeper, idle, held)
        os.kill(sleeper.popen.pid, signal.SIGSTOP)
        try:
            wait_for(lambda: not descendants(sleeper.popen.pid) - idle, 120, "the child's end")
            wait_for(
                lambda: kazoo.exists(f"{zk_root}/locks/{job_id}.0000") is None,
                60,
                "the session, and the lock with it, to expire",
            )
            resume_behind_blocked_proxy(
                sleeper, proxy, rf"trained {job_id}/0 in", "the resumed worker to take its result"
            )
        finally:
            cont(sleeper.popen.pid)

        view = wait_job(client, job_id, timeout=120)
        assert view["state"] == "succeeded", view
        assert view["shards"][0]["worker"] == "sleeper" and view["shards"][0]["attempts"] == 1
        wait_for(lambda: f"from job {job_id}" in sleeper.output(), 30, "the publish's log line")
        output = sleeper.output()
        assert "session LOST" in output  # the result was written from a new session
        assert f"done {job_id}/0" in output, output[-3000:]
        assert "write refused on its version" not in output, output[-3000:]
        assert metric(port, "zootrain_fenced_writes_total") == 0
        published = versions_by_job(kazoo, zk_root)
        assert list(published) == [job_id] and len(published[job_id]) == 1, published
        wait_for(lambda: children(kazoo, f"{zk_root}/locks") == [], 15, "the locks to go")
