"""A quorum outage longer than a session: two of three ZooKeeper nodes stopped for several
session timeouts while a job trains and a client streams its events.

- every request made during the outage answers 503 problem+json with Retry-After within the
  request deadline (ZOOTRAIN_ZK_REQUEST_TIMEOUT, default 5 s), instead of hanging for as long
  as the outage lasts; /readyz is 503 throughout; opening an event stream is 503 too;
- the stream that was open sends a comment line at least every 15 s, and after the outage
  delivers the rest of the job's events up to the terminal one;
- the shard that finished training during the outage is recorded once the session is back
  (with max_attempts 1, any other outcome fails the job);
- a submit refused during the outage was not recorded behind the client's back: its retry
  with the same Idempotency-Key creates exactly one job.
"""

from __future__ import annotations

import concurrent.futures
import time
from typing import Any

import httpx
import pytest
from kazoo.client import KazooClient

from testkit.auth import AUTH
from testkit.stack import Stack, wait_for, wait_job
from testkit.zkserver import ZooKeeperCluster
from tests.failover.helpers import (
    StreamReader,
    fresh_kazoo,
    idempotency_records,
    iris_spec,
    shard_records,
    slow_spec,
    versions_by_job,
    wait_no_locks,
)

pytestmark = pytest.mark.integration

DEADLINE = 5.0  # ZOOTRAIN_ZK_REQUEST_TIMEOUT's default
SLACK = 6.0  # a loaded 2-core machine
OUTAGE = 36.0  # several session timeouts (4 s), and long enough for two keep-alive periods
PING = 15.0


def timed(client: httpx.Client, method: str, path: str, **kwargs: Any) -> tuple[float, Any]:
    started = time.monotonic()
    response = client.request(method, path, **kwargs)
    return time.monotonic() - started, response


def assert_unavailable(response: httpx.Response, seconds: float, what: str) -> None:
    assert response.status_code == 503, (what, response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/problem+json"), what
    assert int(response.headers["Retry-After"]) >= 1, what
    body = response.json()
    assert body["status"] == 503 and body["detail"], (what, body)
    assert seconds <= DEADLINE + SLACK, f"{what} took {seconds:.1f}s during the outage"


def test_a_quorum_outage_answers_503_in_time_and_the_job_and_its_stream_carry_on(
    ensemble: ZooKeeperCluster, ensemble_stack: Stack, ensemble_env: dict[str, str]
) -> None:
    root = ensemble_env["ZOOTRAIN_ZK_ROOT"]
    stack = ensemble_stack
    stack.start_api()
    assert stack.api_url is not None
    stack.start_worker("worker")
    kazoo: KazooClient = fresh_kazoo(ensemble.hosts)
    client = httpx.Client(headers=AUTH, base_url=stack.api_url, timeout=60)
    try:
        # About 8 s of training: the shard finishes while the quorum is gone.
        spec = slow_spec("outage-forest", n_samples=60_000, max_attempts=1)
        response = client.post("/v1/jobs", json=spec, headers={"Idempotency-Key": "before"})
        assert response.status_code == 202, response.text
        job_id = response.json()["id"]
        reader = StreamReader(stack.api_url, job_id)
        reader.start()
        wait_for(
            lambda: shard_records(kazoo, root, job_id)[0]["state"] == "running",
            60,
            "the shard to be claimed",
        )
        wait_for(lambda: len(reader.events()) >= 1, 30, "the stream's first events")
        # The test's own session could expire in the outage: read with a new one afterwards.
        kazoo.stop()
        kazoo.close()

        # Two of three nodes gone: no quorum, no leader, no session can expire meanwhile.
        stopped = [n for n in ensemble.nodes if n.mode() == "leader"]
        stopped += [n for n in ensemble.nodes if n not in stopped][:1]
        for node in stopped:
            ensemble.kill_node(node)
        outage_started = time.monotonic()
        wait_for(lambda: client.get("/readyz").status_code == 503, 30, "/readyz to see the outage")

        spec_during = iris_spec("outage-submit", max_attempts=1)
        calls: dict[str, tuple[str, str, dict[str, Any]]] = {
            "get job": ("GET", f"/v1/jobs/{job_id}", {}),
            "list jobs": ("GET", "/v1/jobs", {}),
            "list models": ("GET", "/v1/models", {}),
            "list workers": ("GET", "/v1/workers", {}),
            "open events": ("GET", f"/v1/jobs/{job_id}/events", {}),
            "submit": (
                "POST",
                "/v1/jobs",
                {"json": spec_during, "headers": {"Idempotency-Key": "during"}},
            ),
            "cancel": ("DELETE", f"/v1/jobs/{'0' * 20}", {}),
        }
        with concurrent.futures.ThreadPoolExecutor(len(calls)) as pool:
            futures = {
                name: pool.submit(timed, client, method, path, **kwargs)
                for name, (method, path, kwargs) in calls.items()
            }
            answers = {name: future.result() for name, future in futures.items()}
        for name, (seconds, answer) in answers.items():
            assert_unavailable(answer, seconds, name)
        readyz_seconds, readyz = timed(client, "GET", "/readyz")
        assert readyz.status_code == 503 and readyz_seconds < SLACK
        waited = {name: round(seconds, 2) for name, (seconds, _) in answers.items()}
        print(f"outage: each request answered 503 after {waited} s")

        time.sleep(max(0.0, OUTAGE - (time.monotonic() - outage_started)))
        # Still nothing, and the open stream kept talking.
        assert client.get("/readyz").status_code == 503
        assert not reader.ended.is_set(), reader.error
        outage_ended = time.monotonic()
        silence = reader.longest_silence(outage_started, outage_ended)
        assert silence <= PING + SLACK, f"the open stream was silent {silence:.1f}s"
        assert len(reader.comments_between(outage_started, outage_ended)) >= 2

        for node in stopped:
            ensemble.start_node(node, wait=False)  # together: one alone has no quorum
        ensemble.wait_ready(120)
        back = time.monotonic()
        wait_for(lambda: client.get("/readyz").status_code == 200, 60, "/readyz again")
        print(f"outage: /readyz 200 {time.monotonic() - back:.1f}s after the quorum was back")
        kazoo = fresh_kazoo(ensemble.hosts)

        # The job carries on: the shard trained during the outage is recorded, once.
        view = wait_job(client, job_id, timeout=120)
        assert view["state"] == "succeeded", view
        assert view["shards"][0]["attempts"] == 1, view["shards"][0]
        reader.join(30)
        assert reader.ended.is_set() and reader.error is None, reader.error
        assert reader.status == 200
        events = reader.events()
        assert events[-1]["event"] == "job" and events[-1]["data"]["state"] == "succeeded"
        ids = [e["id"] for e in events]
        assert len(ids) == len(set(ids)), ids

        # The submit refused during the outage is created by its retry, once.
        retried = client.post("/v1/jobs", json=spec_during, headers={"Idempotency-Key": "during"})
        assert retried.status_code in (200, 202), retried.text
        again = client.post("/v1/jobs", json=spec_during, headers={"Idempotency-Key": "during"})
        assert again.status_code == 200 and again.json()["id"] == retried.json()["id"]
        assert wait_job(client, retried.json()["id"], timeout=120)["state"] == "succeeded"
        keys = idempotency_records(kazoo, root)
        assert sorted(k["job_id"] for k in keys) == sorted([job_id, retried.json()["id"]])
        published = versions_by_job(kazoo, root)
        assert sorted(published) == sorted([job_id, retried.json()["id"]])
        assert all(len(v) == 1 for v in published.values()), published
        wait_no_locks(kazoo, root)
    finally:
        client.close()
        kazoo.stop()
        kazoo.close()
