"""Submit: exactly which znodes a 202 writes, in one multi; priorities; Idempotency-Key."""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi.testclient import TestClient
from kazoo.client import KazooClient

from app.main import create_app
from testkit.auth import AUTH
from testkit.stack import wait_for
from tests.integration.conftest import (
    api_client,
    assert_problem,
    children,
    idempotency_keys,
    iris_spec,
    read_json,
    settings_from_env,
    submit,
)

pytestmark = pytest.mark.integration


def _parents(kazoo: KazooClient, root: str, key_path: str) -> dict[str, int]:
    """pzxid of the nodes a submit adds children to: it moves whenever a child comes or goes."""
    paths = [f"{root}/jobs", f"{root}/queue", posixpath.dirname(key_path)]
    return {p: kazoo.exists(p).pzxid for p in paths}


SEQ_ENTRY = re.compile(r"^(?P<rank>\d)-(?P<job>[0-9a-f]{20})-(?P<seq>\d{10})$")


def test_submit_creates_job_shards_and_queue_entry_in_one_multi(
    api: TestClient, kazoo: KazooClient, zk_root: str
) -> None:
    spec = iris_spec(shards=3, priority=5)
    response = api.post("/v1/jobs", json=spec)
    assert response.status_code == 202, response.text
    view = response.json()
    job_id = view["id"]
    assert re.fullmatch(r"[0-9a-f]{20}", job_id)
    assert response.headers["location"] == f"/v1/jobs/{job_id}"
    assert view["state"] == "queued"
    assert [s["state"] for s in view["shards"]] == ["pending"] * 3

    # /jobs/<id>: the job record, as JSON
    assert children(kazoo, f"{zk_root}/jobs") == [job_id]
    job_path = f"{zk_root}/jobs/{job_id}"
    record = read_json(kazoo, job_path)
    assert record["id"] == job_id
    assert record["state"] == "queued"
    assert record["spec"]["model_name"] == spec["model_name"]
    assert record["spec"]["algorithm"] == spec["algorithm"]
    assert record["spec"]["params"] == spec["params"]
    assert record["spec"]["dataset"] == spec["dataset"]
    assert record["spec"]["shards"] == 3
    assert record["error"] is None and record["model"] is None
    _, job_stat = kazoo.get(job_path)
    assert job_stat.ephemeralOwner == 0

    # /jobs/<id>/shards/0000..0002, pending
    shards_path = f"{job_path}/shards"
    assert children(kazoo, shards_path) == ["0000", "0001", "0002"]
    czxids = {job_stat.czxid, kazoo.exists(shards_path).czxid}
    for index, name in enumerate(["0000", "0001", "0002"]):
        shard = read_json(kazoo, f"{shards_path}/{name}")
        assert shard["index"] == index
        assert shard["state"] == "pending"
        assert shard["attempts"] == 0
        assert shard["worker"] is None
        stat = kazoo.exists(f"{shards_path}/{name}")
        assert stat.ephemeralOwner == 0
        czxids.add(stat.czxid)

    # exactly one queue entry <rank>-<id>-<10 digit sequence>, persistent sequential
    entries = children(kazoo, f"{zk_root}/queue")
    assert len(entries) == 1, entries
    match = SEQ_ENTRY.fullmatch(entries[0])
    assert match is not None, entries
    assert match["job"] == job_id
    assert match["rank"] == "4"  # 9 - priority 5
    data, queue_stat = kazoo.get(f"{zk_root}/queue/{entries[0]}")
    assert data.decode() == job_id
    assert queue_stat.ephemeralOwner == 0
    czxids.add(queue_stat.czxid)

    # One multi: every node the submit created carries the same creation zxid.
    assert len(czxids) == 1, czxids

    # No key, no idempotency record; nothing locked.
    assert idempotency_keys(kazoo, zk_root) == {}
    assert children(kazoo, f"{zk_root}/locks") == []

    # The API reads back what it wrote.
    got = api.get(f"/v1/jobs/{job_id}")
    assert got.status_code == 200
    assert got.json()["id"] == job_id and got.json()["state"] == "queued"


def test_idempotency_record_is_part_of_the_same_multi(
    api: TestClient, kazoo: KazooClient, zk_root: str
) -> None:
    job = submit(api, iris_spec(), **{"Idempotency-Key": "same-multi"})
    keys = idempotency_keys(kazoo, zk_root)
    # Keys are scoped to the token that sent them.
    assert list(keys) == [hashlib.sha256(b"test-admin\0same-multi").hexdigest()]
    (key_path,) = keys.values()
    key_stat = kazoo.exists(key_path)
    record = read_json(kazoo, key_path)
    assert record["job_id"] == job["id"]
    job_stat = kazoo.exists(f"{zk_root}/jobs/{job['id']}")
    (entry,) = children(kazoo, f"{zk_root}/queue")
    queue_stat = kazoo.exists(f"{zk_root}/queue/{entry}")
    assert key_stat.czxid == job_stat.czxid == queue_stat.czxid


def test_higher_priority_sorts_first_in_the_queue(
    api: TestClient, kazoo: KazooClient, zk_root: str
) -> None:
    low = submit(api, iris_spec(priority=5))
    high = submit(api, iris_spec(priority=9))
    lowest = submit(api, iris_spec(priority=0))
    entries = sorted(children(kazoo, f"{zk_root}/queue"))
    assert [SEQ_ENTRY.fullmatch(e)["job"] for e in entries] == [  # type: ignore[index]
        high["id"],
        low["id"],
        lowest["id"],
    ]
    ranks = {SEQ_ENTRY.fullmatch(e)["job"]: e[0] for e in entries}  # type: ignore[index]
    assert ranks == {high["id"]: "0", low["id"]: "4", lowest["id"]: "9"}
    # Sequence numbers follow submission order, whatever the priority.
    seqs = {SEQ_ENTRY.fullmatch(e)["job"]: int(e[-10:]) for e in entries}  # type: ignore[index]
    assert seqs[low["id"]] < seqs[high["id"]] < seqs[lowest["id"]]


def test_idempotency_key_replays_same_job(
    api: TestClient, kazoo: KazooClient, zk_root: str
) -> None:
    spec = iris_spec()
    headers = {"Idempotency-Key": "retry-me-123"}
    first = api.post("/v1/jobs", json=spec, headers=headers)
    assert first.status_code == 202, first.text
    job_id = first.json()["id"]
    (key_path,) = idempotency_keys(kazoo, zk_root).values()
    before = _parents(kazoo, zk_root, key_path)

    again = api.post("/v1/jobs", json=spec, headers=headers)
    assert again.status_code == 200, again.text
    assert again.json()["id"] == job_id
    assert again.headers["location"] == f"/v1/jobs/{job_id}"

    assert children(kazoo, f"{zk_root}/jobs") == [job_id]
    assert len(children(kazoo, f"{zk_root}/queue")) == 1
    assert list(idempotency_keys(kazoo, zk_root).values()) == [key_path]
    # pzxid: no child was created or deleted under these nodes
    assert _parents(kazoo, zk_root, key_path) == before

    # A body that means the same (same JSON, other key order) replays too.
    reordered = json.loads(json.dumps(dict(reversed(list(spec.items())))))
    replay = api.post("/v1/jobs", json=reordered, headers=headers)
    assert replay.status_code == 200
    assert replay.json()["id"] == job_id


def test_idempotency_key_with_other_body_is_refused_and_writes_nothing(
    api: TestClient, kazoo: KazooClient, zk_root: str
) -> None:
    headers = {"Idempotency-Key": "key-1"}
    job = submit(api, iris_spec(), **headers)
    (key_path,) = idempotency_keys(kazoo, zk_root).values()
    key_stat = kazoo.exists(key_path)
    before = _parents(kazoo, zk_root, key_path)

    other = api.post("/v1/jobs", json=iris_spec(shards=3), headers=headers)
    body = assert_problem(other, 422, "Idempotency-Key")
    assert "id" not in body

    assert children(kazoo, f"{zk_root}/jobs") == [job["id"]]
    assert len(children(kazoo, f"{zk_root}/queue")) == 1
    assert list(idempotency_keys(kazoo, zk_root).values()) == [key_path]
    assert kazoo.exists(key_path).mzxid == key_stat.mzxid
    assert _parents(kazoo, zk_root, key_path) == before

    # Another key is another job.
    fresh = submit(api, iris_spec(shards=3), **{"Idempotency-Key": "key-2"})
    assert fresh["id"] != job["id"]
    assert len(children(kazoo, f"{zk_root}/jobs")) == 2


def test_concurrent_submits_with_one_key_make_one_job(
    api: TestClient, kazoo: KazooClient, zk_root: str
) -> None:
    spec = iris_spec(model_name="racing")
    barrier = threading.Barrier(8)

    def post(_: int) -> tuple[int, str]:
        barrier.wait()
        response = api.post("/v1/jobs", json=spec, headers={"Idempotency-Key": "race"})
        return response.status_code, response.json().get("id", response.text)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(post, range(8)))
    statuses = sorted(status for status, _ in results)
    assert statuses == [200] * 7 + [202], results
    assert len({job_id for _, job_id in results}) == 1, results
    assert children(kazoo, f"{zk_root}/jobs") == [results[0][1]]
    assert len(children(kazoo, f"{zk_root}/queue")) == 1
    assert len(idempotency_keys(kazoo, zk_root)) == 1


def test_expired_idempotency_key_starts_a_new_job(
    settings_env: dict[str, str], kazoo: KazooClient, zk_root: str
) -> None:
    settings = settings_from_env(settings_env, idempotency_retention=0.5)
    with api_client(settings, kazoo) as api:
        headers = {"Idempotency-Key": "short-lived"}
        first = submit(api, iris_spec(), **headers)
        time.sleep(1.0)  # past the retention: the key no longer stands for the first job
        second = api.post("/v1/jobs", json=iris_spec(shards=3), headers=headers)
        assert second.status_code == 202, second.text
        assert second.json()["id"] != first["id"]
        (key_path,) = idempotency_keys(kazoo, zk_root).values()
        assert read_json(kazoo, key_path)["job_id"] == second.json()["id"]
        assert len(children(kazoo, f"{zk_root}/jobs")) == 2


def test_full_queue_is_429_and_writes_nothing(
    settings_env: dict[str, str], kazoo: KazooClient, zk_root: str
) -> None:
    with api_client(settings_from_env(settings_env, max_queue=2), kazoo) as api:
        submit(api, iris_spec())
        submit(api, iris_spec())
        before = {n: kazoo.exists(f"{zk_root}/{n}").pzxid for n in ("jobs", "queue")}
        full = api.post("/v1/jobs", json=iris_spec(), headers={"Idempotency-Key": "k"})
        assert_problem(full, 429, "2")
        assert int(full.headers["retry-after"]) >= 1
        assert {n: kazoo.exists(f"{zk_root}/{n}").pzxid for n in ("jobs", "queue")} == before
        assert idempotency_keys(kazoo, zk_root) == {}
        # Cancelling frees a place.
        victim = children(kazoo, f"{zk_root}/jobs")[0]
        assert api.delete(f"/v1/jobs/{victim}").status_code == 200
        submit(api, iris_spec())


def test_max_shards_setting_is_enforced(
    settings_env: dict[str, str], kazoo: KazooClient, zk_root: str
) -> None:
    with api_client(settings_from_env(settings_env, max_shards=4), kazoo) as api:
        response = api.post("/v1/jobs", json=iris_spec(shards=8))
        assert children(kazoo, f"{zk_root}/jobs") == []
        assert_problem(response, 422, "shards", "4")


def test_ready_service_accepts_a_keyed_submit_at_once(
    settings_env: dict[str, str], kazoo: KazooClient, zk_root: str
) -> None:
    # A key whose digest falls in the bucket the layout creates last.
    key = next(
        f"key-{n}"
        for n in range(100_000)
        if hashlib.sha256(f"test-admin\0key-{n}".encode()).hexdigest().startswith("ff")
    )
    app = create_app(settings_from_env(settings_env))
    with TestClient(app, raise_server_exceptions=False, headers=AUTH) as client:
        # What a load balancer does: send traffic once /readyz says so.
        wait_for(lambda: client.get("/readyz").status_code == 200, 30, "/readyz", interval=0.02)
        response = client.post("/v1/jobs", json=iris_spec(), headers={"Idempotency-Key": key})
        assert response.status_code == 202, response.text
