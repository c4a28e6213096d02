"""The job service is SIGKILLed (twice) while a client submits in a loop with Idempotency-Keys
and retries through the outage: no accepted job is lost, no key ever creates a second job, and
no request is answered with a 500.

The client talks to the service through a proxy (where a load balancer would stand), which holds
one submit at each kill, so that the cut is certain rather than likely: once the submit was
committed and its 202 kept from the client, once before it reached the service at all. The
client only sees its connection drop, retries with the same key against the replacement, and
gets the job the first request made (a replay), or a new one (the first never arrived)."""

from __future__ import annotations

import json

import pytest
from kazoo.client import KazooClient

from testkit.httpproxy import Held, HoldingProxy
from testkit.stack import Stack, wait_for
from tests.failover.helpers import (
    RetryingClient,
    Submitter,
    children,
    idempotency_path,
    idempotency_records,
    job_record,
    versions_by_job,
    wait_terminal,
)

pytestmark = pytest.mark.integration


def test_submits_through_job_service_restarts_create_each_job_once(
    stack: Stack, kazoo: KazooClient, zk_root: str
) -> None:
    api = stack.start_api()
    workers = [stack.start_worker("worker") for _ in range(2)]
    assert stack.api_url is not None
    with HoldingProxy(stack.api_url) as proxy:
        # A held request outlives the client's read timeout only if the restart is slow; the
        # cut must come from the proxy, not from the client giving up.
        client = RetryingClient(proxy.url, timeout=120.0)
        submitter = Submitter(client, "restart")
        submitter.start()
        cuts: list[Held] = []
        try:
            for mode in ("response", "request"):
                submitter.wait_more(4, "before the job service dies")
                held = proxy.hold_next("POST /v1/jobs", mode)
                wait_for(held.ready.is_set, 60, f"a submit held ({mode})")
                api.kill()  # SIGKILL, with that submit in flight
                api = stack.start_api()
                assert stack.api_url is not None
                proxy.upstream = stack.api_url
                proxy.release(held)  # the client's connection drops without an answer
                cuts.append(held)
            submitter.wait_more(4, "after the last restart")
        finally:
            submitter.stopping.set()
            submitter.join(120)
    assert not submitter.errors, submitter.errors
    client.url = stack.api_url  # the proxy is gone: straight to the service from here
    answers = submitter.answers
    job_ids = [job_id for _, job_id in answers.values()]
    assert len(set(job_ids)) == len(job_ids), "one key answered with another key's job"

    # The first cut: the service committed the job and answered 202; the client never got it,
    # retried with the key against the new service and was given that very job.
    committed, unsent = cuts
    key = committed.header("Idempotency-Key")
    assert key is not None and committed.status == 202, committed.response[:500]
    first_id = json.loads(committed.body)["id"]
    assert answers[key] == (200, first_id), (key, answers[key], first_id)
    # The second cut: the request never reached the service; its retry made the job, once.
    key = unsent.header("Idempotency-Key")
    assert key is not None and unsent.response == b""
    assert answers[key][0] == 202, answers[key]

    # A key's retry against the new service replays the job it created.
    for key in list(answers)[:3]:
        _, job_id = answers[key]
        index = int(key.rsplit("-", 1)[1])
        response = client.submit(submitter.spec(index), key)
        assert response.status_code == 200, response.text
        assert response.json()["id"] == job_id

    wait_terminal(kazoo, zk_root, job_ids, timeout=120)
    # Exactly one job per key, and nothing else: a killed request left no stray job behind.
    assert sorted(children(kazoo, f"{zk_root}/jobs")) == sorted(job_ids)
    keys = idempotency_records(kazoo, zk_root)
    assert len(keys) == len(answers)
    for key, (_, job_id) in answers.items():
        data, _ = kazoo.get(idempotency_path(zk_root, key))
        assert json.loads(data)["job_id"] == job_id, key
    states = {j: (job_record(kazoo, zk_root, j) or {}).get("state") for j in job_ids}
    assert all(s == "succeeded" for s in states.values()), states
    published = versions_by_job(kazoo, zk_root)
    assert sorted(published) == sorted(job_ids)
    assert all(len(v) == 1 for v in published.values()), published
    assert children(kazoo, f"{zk_root}/queue") == []
    assert all(w.alive() for w in workers)
    # Nothing was answered 500 (the client raises on one); 503s, if any, were retried.
    assert 500 not in client.statuses, client.statuses
    print(
        f"api restart: {len(answers)} keys, {len(job_ids)} jobs, {client.retries} retries, "
        f"statuses {dict(client.statuses)}, connection errors {dict(client.errors)}, "
        f"{sum(1 for s, _ in answers.values() if s == 200)} replays"
    )
