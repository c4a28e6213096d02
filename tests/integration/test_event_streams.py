"""Event streams leave nothing behind in the job service (a real uvicorn process):

- 10,000 opens and closes of a finished job's stream set no watch at all: kazoo's tables (the
  service's zootrain_zookeeper_watches gauge) and ZooKeeper's own (the `wchp` four-letter word)
  hold none for the job, and the service's resident memory stays where it was;
- many opens and closes of an unfinished job's stream share one watch per record that can
  still change, never more;
- a job deleted while its stream is open ends the stream (and reconnecting answers 404).
"""

from __future__ import annotations

import concurrent.futures
import re
import threading
import time
from pathlib import Path

import httpx
import pytest
from kazoo.client import KazooClient

from testkit.auth import AUTH
from testkit.stack import Process, Stack, wait_for, wait_job
from testkit.zkserver import ZooKeeperCluster, four_letter
from tests.failover.helpers import StreamReader
from tests.integration.conftest import start_api
from tests.support.specs import iris_spec

pytestmark = pytest.mark.integration

OPENS = 10_000
CLIENTS = 4
RSS_SLACK_KB = 24 * 1024  # allocator noise; a leak of 10,000 feeds or callbacks is far more


def watches(url: str) -> int:
    """Watch callbacks in the job service's kazoo tables (its /metrics gauge)."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    found = re.findall(r'^zootrain_zookeeper_watches\{kind="(?:data|child)"\} (\S+)$', text, re.M)
    assert found, "the job service reports no zootrain_zookeeper_watches"
    return int(sum(float(v) for v in found))


def server_watches(cluster: ZooKeeperCluster, prefix: str) -> int:
    """Watches ZooKeeper itself holds on paths under ``prefix`` (any session)."""
    count, current = 0, None
    for line in four_letter(cluster.nodes[0].client_port, "wchp", timeout=5).splitlines():
        if line.startswith("/"):
            current = line.strip()
        elif line.strip() and current is not None and current.startswith(prefix):
            count += 1
    return count


def rss_kb(process: Process) -> int:
    for line in Path(f"/proc/{process.popen.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def open_and_close(url: str, job_id: str, count: int) -> None:
    """Open the job's stream ``count`` times from CLIENTS threads, each time reading its first
    event and hanging up (a finished job's stream ends by itself right after)."""
    local = threading.local()

    def once(_: int) -> None:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = httpx.Client(headers=AUTH, base_url=url, timeout=30)
        with client.stream("GET", f"/v1/jobs/{job_id}/events") as response:
            assert response.status_code == 200, response.read()
            for line in response.iter_lines():
                if line.startswith("data:"):
                    break

    with concurrent.futures.ThreadPoolExecutor(CLIENTS) as pool:
        for result in pool.map(once, range(count)):
            assert result is None


def test_many_stream_opens_and_closes_leave_no_watches_and_no_memory_behind(
    stack: Stack, kazoo: KazooClient, zk_root: str, zookeeper: ZooKeeperCluster
) -> None:
    url = start_api(stack, kazoo)
    api = next(p for p in stack.processes if p.name == "api")
    worker = stack.start_worker("worker")
    with httpx.Client(headers=AUTH, base_url=url, timeout=60) as client:
        finished = client.post("/v1/jobs", json=iris_spec("streamed")).json()["id"]
        assert wait_job(client, finished)["state"] == "succeeded"
        assert worker.stop() == 0
        # An unfinished job (no worker is left to take it): its records can still change.
        waiting = client.post("/v1/jobs", json=iris_spec("streamed-later")).json()["id"]

    # The service's own watches (its live token list): what the streams must leave as it is.
    base = watches(url)
    open_and_close(url, finished, 500)  # warm-up: code paths, pools, caches
    assert watches(url) == base
    rss_before = rss_kb(api)
    open_and_close(url, finished, OPENS)
    assert watches(url) == base, "a finished job's streams set watches"
    assert server_watches(zookeeper, f"{zk_root}/jobs/{finished}") == 0
    rss_after = rss_kb(api)
    print(f"event streams: {OPENS} opens of a finished job, RSS {rss_before} -> {rss_after} kB")
    assert rss_after - rss_before < RSS_SLACK_KB, (rss_before, rss_after)

    # An unfinished job: its record and its shards' can still change, and are watched once
    # each however many streams come and go.
    open_and_close(url, waiting, OPENS // 5)
    assert watches(url) == base + 3
    assert server_watches(zookeeper, f"{zk_root}/jobs/{waiting}") == 3


def test_a_job_deleted_while_streamed_ends_its_streams(
    stack: Stack, kazoo: KazooClient, zk_root: str
) -> None:
    url = start_api(stack, kazoo)
    with httpx.Client(headers=AUTH, base_url=url, timeout=60) as client:
        job_id = client.post("/v1/jobs", json=iris_spec("deleted")).json()["id"]
        reader = StreamReader(url, job_id)
        reader.start()
        wait_for(lambda: len(reader.events()) == 3, 60, "the stream's first events")
        # Deleted as retention deletes a job (here by an operator, before it ran).
        base = f"{zk_root}/jobs/{job_id}"
        tx = kazoo.transaction()
        tx.delete(f"{base}/shards/0000")
        tx.delete(f"{base}/shards/0001")
        tx.delete(f"{base}/shards")
        tx.delete(base)
        for name in kazoo.get_children(f"{zk_root}/queue"):
            if job_id in name:
                tx.delete(f"{zk_root}/queue/{name}")
        assert all(not isinstance(r, Exception) for r in tx.commit())
        deleted_at = time.monotonic()
        assert reader.ended.wait(30), "the stream of a deleted job stays open"
        print(f"event streams: ended {time.monotonic() - deleted_at:.3f}s after the deletion")
        assert reader.error is None, reader.error
        assert client.get(f"/v1/jobs/{job_id}/events").status_code == 404
