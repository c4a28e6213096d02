"""The job service is SIGKILLed (twice) while a client submits in a loop with Idempotency-Keys
and retries through the outage against the replacement service: no accepted job is lost, and
no key ever creates a second job."""

from __future__ import annotations

import json

import pytest
from kazoo.client import KazooClient

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
from tests.support.stack import Stack

pytestmark = pytest.mark.integration


def test_submits_through_job_service_restarts_create_each_job_once(
    stack: Stack, kazoo: KazooClient, zk_root: str
) -> None:
    api = stack.start_api()
    workers = [stack.start_worker("worker") for _ in range(2)]
    assert stack.api_url is not None
    client = RetryingClient(stack.api_url)
    submitter = Submitter(client, "restart")
    submitter.start()
    try:
        for _ in range(2):
            submitter.wait_more(4, "before the job service dies")
            api.kill()  # SIGKILL, most likely with a request in flight
            api = stack.start_api()  # a new port: the client has to follow
            assert stack.api_url is not None
            client.url = stack.api_url
        submitter.wait_more(4, "after the last restart")
    finally:
        submitter.stopping.set()
        submitter.join(120)
    assert not submitter.errors, submitter.errors
    answers = submitter.answers
    job_ids = [job_id for _, job_id in answers.values()]
    assert len(set(job_ids)) == len(job_ids), "one key answered with another key's job"

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
    print(
        f"api restart: {len(answers)} keys, {len(job_ids)} jobs, {client.retries} retries, "
        f"{sum(1 for s, _ in answers.values() if s == 200)} replays"
    )
