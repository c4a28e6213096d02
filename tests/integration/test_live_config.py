"""Live configuration (/v1/config) and worker drain, against a real ZooKeeper and real processes."""

from __future__ import annotations

import asyncio
import json
import re
import time
from datetime import datetime
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from kazoo.client import KazooClient

from testkit.auth import ADMIN_TOKEN, AUTH, READ_TOKEN, bearer
from testkit.stack import Stack, wait_for, wait_job
from testkit.zkserver import free_port
from tests.integration.conftest import assert_problem, shard_records, start_api, submit
from tests.integration.test_cli import parsed, zootrain
from tests.support.specs import iris_spec
from zootrain import liveconfig
from zootrain.client import AsyncClient, Client, ZootrainError

pytestmark = pytest.mark.integration

MERGE = {"Content-Type": "application/merge-patch+json"}

# Long enough to be still training while a setting changes (several seconds a shard here).
SLOW = {
    "dataset": {"kind": "synthetic", "task": "classification", "n_samples": 20_000},
    "params": {"n_estimators": 80, "max_depth": 12},
}


def patch(client: Any, settings: dict[str, Any] | None, **headers: str) -> Any:
    return client.patch(
        "/v1/config", content=json.dumps({"settings": settings}), headers={**MERGE, **headers}
    )


def metric(text: str, name: str) -> float | None:
    match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else None


def when(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


# -- the API, in-process against the real ZooKeeper ----------------------------------------------


def test_get_patch_and_history(api: TestClient, kazoo: KazooClient, zk_root: str) -> None:
    first = api.get("/v1/config")
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["version"] == 0 and body["overrides"] == {}
    assert first.headers["ETag"] == '"0"'
    assert body["settings"]["paused"] is False
    assert body["settings"]["worker_concurrency"] == 1  # the environment's

    changed = patch(api, {"paused": True, "worker_concurrency": "3"}, **{"If-Match": '"0"'})
    assert changed.status_code == 200, changed.text
    assert changed.headers["ETag"] == '"1"'
    view = changed.json()
    assert view["version"] == 1
    assert view["settings"]["paused"] is True
    assert view["settings"]["worker_concurrency"] == 3  # normalised as the variable's rules do
    assert view["overrides"] == {"paused": True, "worker_concurrency": 3}
    assert view["updated_by"] == "test-admin"

    # The document is readable in ZooKeeper, under the installation's ACL.
    data, stat = kazoo.get(f"{zk_root}/config")
    assert stat.version == 1
    assert json.loads(data)["settings"] == {"paused": True, "worker_concurrency": 3}

    # null returns a setting to the environment's value.
    again = patch(api, {"paused": None})
    assert again.status_code == 200, again.text
    assert again.json()["version"] == 2
    assert again.json()["overrides"] == {"worker_concurrency": 3}
    assert again.json()["settings"]["paused"] is False

    history = api.get("/v1/config/history")
    assert history.status_code == 200, history.text
    entries = history.json()
    assert [e["version"] for e in entries] == [2, 1]  # newest first
    assert entries[0]["patch"] == {"settings": {"paused": None}}
    assert entries[1]["updated_by"] == "test-admin"
    assert entries[1]["settings"] == {"paused": True, "worker_concurrency": 3}

    # The process's own settings follow (the watch), which the submit limits use.
    wait_for(lambda: api.get("/v1/config").json()["settings"]["worker_concurrency"] == 3, 10, "")


def test_stale_if_match_is_412_and_changes_nothing(api: TestClient, kazoo: KazooClient) -> None:
    assert patch(api, {"max_queue": 500}).status_code == 200
    etag = api.get("/v1/config").headers["ETag"]
    assert patch(api, {"max_queue": 600}, **{"If-Match": etag}).status_code == 200
    stale = patch(api, {"max_queue": 700}, **{"If-Match": etag})
    assert_problem(stale, 412, "version 2", "not 1")
    assert patch(api, {"max_queue": 700}, **{"If-Match": "garbage"}).status_code == 412
    assert api.get("/v1/config").json()["settings"]["max_queue"] == 600
    assert len(api.get("/v1/config/history").json()) == 2


@pytest.mark.parametrize(
    ("body", "status", "needles"),
    [
        ({"settings": {"worker_concurrency": 0}}, 422, ["'worker_concurrency'", "greater than"]),
        ({"settings": {"worker_concurrency": 65}}, 422, ["'worker_concurrency'"]),
        ({"settings": {"submit_rate": "fast"}}, 422, ["'submit_rate'"]),
        ({"settings": {"paused": "perhaps"}}, 422, ["'paused'"]),
        # Found by the contract fuzz (seed 937376136): lax pydantic stored true as 1.0.
        ({"settings": {"submit_rate": True, "paused": None}}, 422, ["'submit_rate'", "a number"]),
        ({"settings": {"max_queue": False}}, 422, ["'max_queue'", "a number"]),
        ({"settings": {"paused": 1}}, 422, ["'paused'", "a boolean"]),
        ({"settings": {"colour": "blue"}}, 422, ["unknown setting 'colour'"]),
        ({"settings": {"zk_hosts": "elsewhere:2181"}}, 422, ["'zk_hosts'", "ZooKeeper"]),
        ({"settings": {"zk_root": "/other"}}, 422, ["'zk_root'", "cannot change live"]),
        ({"settings": {"zk_auth": "a:b"}}, 422, ["'zk_auth'", "credential"]),
        ({"settings": {"tokens": "x"}}, 422, ["'tokens'", "zootrain token"]),
        ({"settings": {"max_shards": 3}}, 422, ["'max_shards'", "restart"]),
        ({"paused": True}, 422, ["'paused'", '"settings"']),
        ({"version": 9}, 422, ["read-only"]),
        ([1, 2], 422, ["JSON object"]),
    ],
)
def test_bad_patches_are_refused_naming_the_key(
    api: TestClient, body: Any, status: int, needles: list[str]
) -> None:
    response = api.patch("/v1/config", content=json.dumps(body), headers=MERGE)
    assert_problem(response, status, *needles)
    assert api.get("/v1/config").json()["version"] == 0  # nothing was written


def test_patch_needs_admin_and_a_merge_patch(api: TestClient) -> None:
    refused = api.patch(
        "/v1/config",
        content=json.dumps({"settings": {"paused": True}}),
        headers={**MERGE, **bearer(READ_TOKEN)},
    )
    assert refused.status_code == 403, refused.text
    assert api.get("/v1/config", headers=bearer(READ_TOKEN)).status_code == 200
    text = api.patch("/v1/config", content=b"paused=true", headers={"Content-Type": "text/plain"})
    assert_problem(text, 415, "merge-patch")
    broken = api.patch("/v1/config", content=b"{not json", headers=MERGE)
    assert_problem(broken, 422, "not valid JSON")


def test_history_is_bounded(api: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(liveconfig, "MAX_HISTORY", 3)
    for limit in range(10, 15):
        assert patch(api, {"max_queue": limit}).status_code == 200
    entries = api.get("/v1/config/history").json()
    assert [e["version"] for e in entries] == [5, 4, 3]
    assert entries[0]["settings"]["max_queue"] == 14
    assert len(api.get("/v1/config/history", params={"limit": 1}).json()) == 1


def test_a_bad_document_written_by_hand_is_ignored(
    api: TestClient, kazoo: KazooClient, zk_root: str
) -> None:
    assert patch(api, {"paused": True}).status_code == 200
    wait_for(lambda: metric(api.get("/metrics").text, "zootrain_config_version") == 1, 10, "v1")
    rejected_before = metric(api.get("/metrics").text, "zootrain_config_rejected_total") or 0
    for bad in (b"{not json", b'{"settings": {"worker_concurrency": -1}}'):
        kazoo.set(f"{zk_root}/config", bad)
        seen = kazoo.exists(f"{zk_root}/config")
        assert seen is not None

        def rejected(count: float = rejected_before + 1) -> bool:
            return (
                metric(api.get("/metrics").text, "zootrain_config_rejected_total") or 0
            ) >= count

        wait_for(rejected, 10, "the bad document to be counted")
        rejected_before += 1
        view = api.get("/v1/config").json()
        assert view["rejected"]["version"] == seen.version
        assert view["version"] == 1 and view["settings"]["paused"] is True  # the last good one
        assert api.get("/readyz").status_code == 200
    # A PATCH repairs it, starting from the last good document.
    fixed = patch(api, {"max_queue": 77})
    assert fixed.status_code == 200, fixed.text
    assert fixed.json()["overrides"] == {"paused": True, "max_queue": 77}
    assert (
        "rejected" not in api.get("/v1/config").json()
        or not api.get("/v1/config").json()["rejected"]
    )


def test_the_submit_limits_follow_the_configuration(api: TestClient) -> None:
    assert patch(api, {"max_queue": 1}).status_code == 200
    wait_for(lambda: api.get("/v1/config").json()["settings"]["max_queue"] == 1, 10, "max_queue")
    wait_for(
        lambda: metric(api.get("/metrics").text, "zootrain_config_version") == 1, 10, "applied"
    )
    assert submit(api, iris_spec("first"))  # nothing runs it: it stays queued
    assert_problem(api.post("/v1/jobs", json=iris_spec("second")), 429, "limit 1")
    assert patch(api, {"max_queue": None}).status_code == 200
    wait_for(
        lambda: metric(api.get("/metrics").text, "zootrain_config_version") == 2, 10, "applied"
    )
    assert api.post("/v1/jobs", json=iris_spec("second")).status_code == 202


# -- real processes ------------------------------------------------------------------------------


def scrape(url: str) -> str:
    return httpx.get(url, timeout=5, headers=AUTH).text


def test_a_change_reaches_every_process_within_a_second(stack: Stack, kazoo: KazooClient) -> None:
    """Two job services and two workers; a PATCH on one is applied by all four. The time each
    took is printed (the promise is a second; the test only waits for the event)."""
    urls = [start_api(stack, kazoo), start_api(stack, kazoo)]
    ports = [free_port(), free_port()]
    for index, port in enumerate(ports):
        stack.start_worker(ZOOTRAIN_WORKER_ID=f"live-{index}", ZOOTRAIN_METRICS_PORT=str(port))
    endpoints = [f"{u}/metrics" for u in urls] + [f"http://127.0.0.1:{p}/metrics" for p in ports]
    # Every process applied the empty document (version 0) at start-up.
    for endpoint in endpoints:
        wait_for(lambda e=endpoint: metric(scrape(e), "zootrain_config_version") == 0, 30, endpoint)

    latencies: list[float] = []
    with httpx.Client(headers=AUTH, base_url=urls[1], timeout=30) as client:
        for version, settings in enumerate(
            [
                {"paused": True, "worker_concurrency": 2},
                {"paused": False, "submit_rate": 3, "retry_backoff": 0.5},
                {"worker_concurrency": None, "max_versions": 10},
            ],
            start=1,
        ):
            sent = time.time()
            answer = patch(client, settings)
            assert answer.status_code == 200, answer.text
            assert answer.json()["version"] == version
            for endpoint in endpoints:

                def applied(e: str = endpoint, v: int = version) -> bool:
                    return metric(scrape(e), "zootrain_config_version") == v

                wait_for(applied, 30, f"{endpoint} to apply version {version}", interval=0.02)
                at = metric(scrape(endpoint), "zootrain_config_applied_timestamp_seconds")
                assert at is not None
                latencies.append(at - sent)
            # And through the API of every process: each job service's settings, each
            # worker's record.
            for url in urls:
                view = httpx.get(f"{url}/v1/config", headers=AUTH, timeout=10).json()
                assert view["version"] == version
            expected_state = "paused" if version == 1 else "active"
            expected_capacity = 2 if version <= 2 else 1

            def recorded(
                v: int = version, s: str = expected_state, c: int = expected_capacity
            ) -> bool:
                records = client.get("/v1/workers").json()
                return len(records) == 2 and all(
                    r["config_version"] == v and r["state"] == s and r["capacity"] == c
                    for r in records
                )

            wait_for(recorded, 30, f"both workers to record version {version}")
    # A bad document written by hand: every process counts it, keeps the last good one, lives.
    before = [metric(scrape(e), "zootrain_config_rejected_total") or 0 for e in endpoints]
    kazoo.set(f"{stack.settings['ZOOTRAIN_ZK_ROOT']}/config", b'{"settings": {"paused": "maybe"}}')
    for endpoint, count in zip(endpoints, before, strict=True):

        def counted(e: str = endpoint, c: float = count) -> bool:
            return (metric(scrape(e), "zootrain_config_rejected_total") or 0) > c

        wait_for(counted, 30, f"{endpoint} to reject the bad document")
        assert metric(scrape(endpoint), "zootrain_config_version") == 3
    assert all(p.alive() for p in stack.processes)
    assert {
        r["config_version"] for r in httpx.get(f"{urls[0]}/v1/workers", headers=AUTH).json()
    } == {3}
    median = sorted(latencies)[len(latencies) // 2]
    print(
        f"\nlive configuration: {len(latencies)} applications (2 job services + 2 workers x 3 "
        f"changes), from the PATCH sent to applied: median {median:.3f} s, "
        f"max {max(latencies):.3f} s"
    )


def test_shrink_and_pause_let_running_shards_finish_and_claim_nothing_until_resumed(
    stack: Stack, kazoo: KazooClient, zk_root: str
) -> None:
    """One worker with two slots trains a job's two shards at once; its concurrency shrinks to
    one and the cluster is paused while they run. Both finish on their first attempt; a job
    submitted meanwhile is accepted and waits; once resumed it runs, one shard at a time."""
    url = start_api(stack, kazoo)
    # Every shard claimed alone (no small job's group, which takes one slot for its shards and
    # writes them one claim): the records' times then show what the slots did.
    worker = stack.start_worker(
        ZOOTRAIN_WORKER_ID="shrinking",
        ZOOTRAIN_WORKER_CONCURRENCY="2",
        ZOOTRAIN_WORKER_GROUP_WORK="0",
    )
    with httpx.Client(headers=AUTH, base_url=url, timeout=30) as client:
        both = submit(client, iris_spec("two-at-once", shards=2, **SLOW))["id"]
        wait_for(
            lambda: [s["state"] for s in shard_records(kazoo, zk_root, both)] == ["running"] * 2,
            60,
            "both shards to train at once",
        )
        assert patch(client, {"worker_concurrency": 1, "paused": True}).status_code == 200

        def recorded() -> tuple[int, str]:
            (record,) = client.get("/v1/workers").json()
            return record["capacity"], record["state"]

        wait_for(lambda: recorded() == (1, "paused"), 30, "the worker to apply both")
        # Submits are still accepted while paused.
        waiting = submit(client, iris_spec("waits-for-resume", shards=2))["id"]
        # What ran finishes: both shards complete on their first attempt, nothing was stopped,
        # and the job is merged and published by the worker that finished its last shard.
        assert wait_job(client, both)["state"] == "succeeded"
        assert [s["attempts"] for s in shard_records(kazoo, zk_root, both)] == [1, 1]
        assert "stopped" not in worker.output() and "cancel" not in worker.output().lower()
        assert client.get(f"/v1/jobs/{waiting}").json()["state"] == "queued"
        resumed = patch(client, {"paused": False}).json()
        assert wait_job(client, waiting)["state"] == "succeeded"
        records = shard_records(kazoo, zk_root, waiting)
        # Nothing of it was claimed before the resume was written ...
        starts = [when(s["started_at"]) for s in records]
        assert min(starts) >= when(resumed["updated_at"]), (starts, resumed)
        # ... and with one slot its two shards did not overlap.
        spans = sorted((when(s["started_at"]), when(s["finished_at"])) for s in records)
        assert spans[0][1] <= spans[1][0], spans


def trained_by(kazoo: KazooClient, root: str, job_id: str) -> set[str]:
    return {s["worker"] for s in shard_records(kazoo, root, job_id)}


def test_drain_finishes_what_a_worker_holds_and_leaves_the_others(
    stack: Stack, kazoo: KazooClient, zk_root: str
) -> None:
    url = start_api(stack, kazoo)
    workers = {"w-a": stack.start_worker(ZOOTRAIN_WORKER_ID="w-a")}
    workers["w-b"] = stack.start_worker(ZOOTRAIN_WORKER_ID="w-b")
    with httpx.Client(headers=AUTH, base_url=url, timeout=30) as client:
        held = submit(client, iris_spec("held-while-draining", shards=1, **SLOW))["id"]
        wait_for(
            lambda: any(s["state"] == "running" for s in shard_records(kazoo, zk_root, held)),
            60,
            "a worker to hold the slow shard",
        )
        # The worker that holds it is the one drained.
        (name,) = trained_by(kazoo, zk_root, held)
        (other,) = set(workers) - {name}
        assert_problem(client.post("/v1/workers/nobody/drain"), 404, "nobody")
        read_only = client.post(f"/v1/workers/{name}/drain", headers=bearer(READ_TOKEN))
        assert read_only.status_code == 403
        asked = client.post(f"/v1/workers/{name}/drain")
        assert asked.status_code == 202, asked.text
        assert asked.json()["requested_by"] == "test-admin"
        assert client.post(f"/v1/workers/{name}/drain").json() == asked.json()  # harmless again

        def states() -> dict[str, str]:
            return {r["id"]: r["state"] for r in client.get("/v1/workers").json()}

        wait_for(lambda: states() == {name: "draining", other: "active"}, 30, "draining")
        # Work submitted now goes to the other worker only; the held shard finishes where it is.
        later = [submit(client, iris_spec(f"after-drain-{i}"))["id"] for i in range(3)]
        assert wait_job(client, held)["state"] == "succeeded"
        (shard,) = shard_records(kazoo, zk_root, held)
        assert (shard["worker"], shard["attempts"]) == (name, 1)
        # It was still training when the drain was asked for, and was let finish.
        assert when(shard["finished_at"]) > when(asked.json()["requested_at"]), shard
        for job_id in later:
            assert wait_job(client, job_id)["state"] == "succeeded"
            assert trained_by(kazoo, zk_root, job_id) == {other}
        assert workers[name].alive()

        def current() -> list[str]:
            records = {r["id"]: r for r in client.get("/v1/workers").json()}
            return list(records[name]["current"])

        # The worker's record follows its claims' ends a moment later (RECORD_DELAY: a busy
        # worker's ends fold into fewer writes): the job's succeeded before its merge task ends.
        wait_for(lambda: current() == [], 30, "the drained worker's record to hold nothing")
        # Undrained, it claims again.
        assert client.delete(f"/v1/workers/{name}/drain").status_code == 204
        assert_problem(client.delete(f"/v1/workers/{name}/drain"), 404, "not draining")
        wait_for(lambda: states()[name] == "active", 30, "undrained")


def test_cli_and_clients(stack: Stack, kazoo: KazooClient) -> None:
    url = start_api(stack, kazoo)
    stack.start_worker(ZOOTRAIN_WORKER_ID="cli-drained")
    shown = parsed(zootrain(url, "config", "--json", token=READ_TOKEN))
    assert shown["version"] == 0 and shown["settings"]["paused"] is False
    table = zootrain(url, "config", token=READ_TOKEN)
    assert table.returncode == 0 and "worker_concurrency" in table.stdout

    changed = parsed(
        zootrain(
            url, "config", "set", "paused=true", "worker_concurrency=2", "--json", token=ADMIN_TOKEN
        )
    )
    assert changed["version"] == 1
    assert changed["overrides"] == {"paused": True, "worker_concurrency": 2}
    paused = zootrain(url, "config", token=READ_TOKEN)
    assert "PAUSED" in paused.stdout
    stale = zootrain(url, "config", "set", "paused=false", "--if-match", "0", token=ADMIN_TOKEN)
    assert stale.returncode == 1 and "412" in stale.stderr
    bad = zootrain(url, "config", "set", "worker_concurrency=0", token=ADMIN_TOKEN)
    assert bad.returncode == 1 and "worker_concurrency" in bad.stderr and "422" in bad.stderr
    env_only = zootrain(url, "config", "set", "zk_hosts=elsewhere:2181", token=ADMIN_TOKEN)
    assert env_only.returncode == 1 and "cannot change live" in env_only.stderr
    refused = zootrain(url, "config", "set", "paused=false", token=READ_TOKEN)
    assert refused.returncode == 1 and "403" in refused.stderr
    history = parsed(zootrain(url, "config", "history", "--json", token=READ_TOKEN))
    assert [h["version"] for h in history] == [1]
    assert history[0]["updated_by"] == "test-admin"

    drained = parsed(zootrain(url, "workers", "drain", "cli-drained", "--json", token=ADMIN_TOKEN))
    assert drained["worker_id"] == "cli-drained"

    def state() -> str:
        records = parsed(zootrain(url, "workers", "--json", token=READ_TOKEN))
        return str(records[0]["state"])

    wait_for(lambda: state() == "draining", 30, "draining", interval=0.5)
    assert "draining" in zootrain(url, "workers", token=READ_TOKEN).stdout
    assert zootrain(url, "workers", "undrain", "cli-drained", token=ADMIN_TOKEN).returncode == 0
    wait_for(lambda: state() == "paused", 30, "undrained (and still paused)", interval=0.5)

    # The Python clients, sync and async.
    with Client(url, token=ADMIN_TOKEN) as client:
        view = client.config()
        assert view.version == 1 and view.settings.paused
        resumed = client.update_config({"paused": None}, if_match=view.version)
        assert resumed.version == 2 and not resumed.settings.paused
        with pytest.raises(ZootrainError) as caught:
            client.update_config({"paused": True}, if_match=1)
        assert caught.value.status == 412
        with pytest.raises(ZootrainError) as caught:
            client.update_config({"max_queue": -1})
        assert caught.value.status == 422 and "max_queue" in caught.value.detail
        assert [c.version for c in client.config_history()] == [2, 1]
        assert client.drain_worker("cli-drained").worker_id == "cli-drained"
        client.undrain_worker("cli-drained")

    async def use_async() -> None:
        async with AsyncClient(url, token=ADMIN_TOKEN) as client:
            assert (await client.config()).version == 2
            reset = await client.update_config(None)
            assert reset.overrides == {} and reset.version == 3
            assert len(await client.config_history(limit=2)) == 2
            assert (await client.drain_worker("cli-drained")).worker_id == "cli-drained"
            await client.undrain_worker("cli-drained")
            assert (await client.workers())[0].id == "cli-drained"

    asyncio.run(use_async())
