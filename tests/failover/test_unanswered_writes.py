"""Writes the job service sends and ZooKeeper does not answer in time, made exact by a proxy
(zkproxy.py) between the job service and ZooKeeper that holds the submit's multi.

- The submit's answer must not wait for it past the request deadline: 503 "Outcome unknown",
  naming the job id the multi would create. The held multi is then let through and commits, as
  kazoo would send a queued request once the connection is back: the job appears, and a retry
  with the same Idempotency-Key returns it instead of making a second one.
- A dataset deleted between the submit's resolution of it and the submit's multi makes the
  submit fail with 409, and records nothing (the multi checks the dataset record's version).
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from kazoo.client import KazooClient

from testkit.auth import AUTH
from testkit.stack import Stack, wait_for
from testkit.zkproxy import MULTI, ZooKeeperProxy
from tests.failover.helpers import children, idempotency_records, iris_spec

pytestmark = pytest.mark.integration

DEADLINE = 2.0  # ZOOTRAIN_ZK_REQUEST_TIMEOUT for these tests
SLACK = 6.0
HOLD_AT_MOST = 12.0  # code that waits for the held multi (no deadline) answers after this


@pytest.fixture
def service(stack: Stack, proxy: ZooKeeperProxy) -> Iterator[httpx.Client]:
    # A long session: a held request holds the connection's pings behind it, and the test
    # must not turn into a session expiry.
    stack.settings.update(
        ZOOTRAIN_ZK_HOSTS=proxy.address,
        ZOOTRAIN_ZK_REQUEST_TIMEOUT=str(DEADLINE),
        ZOOTRAIN_ZK_SESSION_TIMEOUT="30",
    )
    stack.start_api()
    assert stack.api_url is not None
    with httpx.Client(headers=AUTH, base_url=stack.api_url, timeout=60) as client:
        yield client


def submit_while_held(
    client: httpx.Client, proxy: ZooKeeperProxy, root: str, needle: bytes, **kwargs: Any
) -> tuple[float, httpx.Response, bool]:
    """POST /v1/jobs with the multi held in the proxy: (seconds, answer, multi was held)."""
    rule = proxy.hold_next(MULTI, f"{root}/", needle)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        started = time.monotonic()
        future = pool.submit(client.post, "/v1/jobs", **kwargs)
        held = rule.matched.wait(30)
        try:
            response = future.result(timeout=HOLD_AT_MOST)
        except concurrent.futures.TimeoutError:
            rule.released.set()  # the code under test waits for the multi: let it finish
            response = future.result(timeout=60)
        seconds = time.monotonic() - started
    rule.released.set()
    return seconds, response, held


def test_a_submit_not_confirmed_in_time_is_outcome_unknown_and_its_retry_returns_the_job(
    service: httpx.Client, proxy: ZooKeeperProxy, kazoo: KazooClient, zk_root: str
) -> None:
    spec = iris_spec("unconfirmed")
    key = {"Idempotency-Key": "unconfirmed-1"}
    seconds, response, held = submit_while_held(
        service, proxy, zk_root, b"unconfirmed", json=spec, headers=key
    )
    assert held, "the submit's multi never reached the proxy"
    assert response.status_code == 503, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert int(response.headers["Retry-After"]) >= 1
    body = response.json()
    assert body["title"] == "Outcome unknown", body
    job_id = body["job_id"]
    assert job_id in body["detail"] and "Idempotency-Key" in body["detail"], body
    assert seconds <= DEADLINE + SLACK, f"answered after {seconds:.1f}s"

    # The multi, let through, commits after the answer: the job exists after all.
    wait_for(lambda: kazoo.exists(f"{zk_root}/jobs/{job_id}"), 30, "the held multi to commit")
    assert service.get(f"/v1/jobs/{job_id}").status_code == 200
    retry = service.post("/v1/jobs", json=spec, headers=key)
    assert retry.status_code == 200, retry.text
    assert retry.json()["id"] == job_id
    assert retry.headers.get("Idempotent-Replayed") == "true"
    assert children(kazoo, f"{zk_root}/jobs") == [job_id]
    assert [k["job_id"] for k in idempotency_records(kazoo, zk_root)] == [job_id]

    # Without a key the answer is the same, and names the job to look for.
    seconds, response, held = submit_while_held(
        service, proxy, zk_root, b"unkeyed", json=iris_spec("unkeyed")
    )
    assert held and response.status_code == 503, response.text
    unkeyed = response.json()["job_id"]
    wait_for(lambda: kazoo.exists(f"{zk_root}/jobs/{unkeyed}"), 30, "the unkeyed job")
    assert service.get(f"/v1/jobs/{unkeyed}").json()["spec"]["model_name"] == "unkeyed"


def test_a_dataset_deleted_between_resolution_and_multi_fails_the_submit(
    service: httpx.Client, proxy: ZooKeeperProxy, kazoo: KazooClient, zk_root: str
) -> None:
    rows = ["length,width,species"] + [
        f"{i % 7 + 1}.{i % 10},{i % 5 + 1}.{i % 3},{'ab'[i % 2]}" for i in range(60)
    ]
    upload = service.post("/v1/datasets", files={"file": ("flowers.csv", "\n".join(rows).encode())})
    assert upload.status_code == 201, upload.text
    dataset_id = upload.json()["id"]
    spec = iris_spec(
        "on-deleted-data",
        dataset={"kind": "uploaded", "id": dataset_id, "target": "species"},
    )
    rule = proxy.hold_next(MULTI, f"{zk_root}/", dataset_id.encode())
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        future = pool.submit(service.post, "/v1/jobs", json=spec)
        assert rule.matched.wait(30), "the submit's multi never reached the proxy"
        # Another job service (or an admin) deletes the dataset meanwhile.
        kazoo.delete(f"{zk_root}/datasets/{dataset_id}")
        rule.released.set()
        response = future.result(timeout=60)
    assert response.status_code in (409, 422), response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert dataset_id in response.json()["detail"], response.json()
    assert children(kazoo, f"{zk_root}/jobs") == []
    assert children(kazoo, f"{zk_root}/queue") == []
