"""POST /v1/jobs answers exactly as FastAPI's generic handler of the same operation would
(app.submit_route): the same status, content type and body for every bad request, the same
job for a good one, and the operation's schema still in openapi.json."""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from kazoo.client import KazooClient

from app import submit_route
from app.main import create_app
from app.submit_route import SubmitLane
from testkit.auth import ADMIN_TOKEN, READ_TOKEN, SUBMIT_TOKEN, TOKENS, bearer
from testkit.stack import ROOT, wait_for
from testkit.zkserver import ZooKeeperCluster
from tests.integration.conftest import wait_layout
from tests.integration.test_bad_input import BAD_BODIES
from tests.support.specs import iris_spec
from zootrain.settings import Settings

pytestmark = pytest.mark.integration

MAX_BYTES = 4096
JSON = {"content-type": "application/json"}
GOOD = json.dumps(iris_spec()).encode()


@contextlib.contextmanager
def _service(
    zookeeper: ZooKeeperCluster, kazoo: KazooClient, directory: Path, *, lane: bool
) -> Iterator[Any]:
    root = f"/test-route-{uuid.uuid4().hex[:12]}"
    settings = Settings(
        zk_hosts=zookeeper.hosts,
        zk_root=root,
        artifacts=str(directory / "artifacts"),
        zk_session_timeout=4.0,
        tokens=TOKENS,
        max_request_bytes=MAX_BYTES,
    )
    app = create_app(settings)
    if not lane:
        # Before the first request, which builds the middleware stack.
        app.user_middleware = [m for m in app.user_middleware if m.cls is not SubmitLane]
    with TestClient(app, raise_server_exceptions=False) as client:
        wait_for(lambda: client.get("/readyz").status_code == 200, 30, "/readyz")
        wait_layout(kazoo, root)
        yield client


@pytest.fixture(scope="module")
def services(
    zookeeper: ZooKeeperCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[TestClient, TestClient]]:
    """(this service, the same service without the submit lane: FastAPI answers every
    submit)."""
    kazoo = KazooClient(hosts=zookeeper.hosts)
    kazoo.start(30)
    try:
        with (
            _service(zookeeper, kazoo, tmp_path_factory.mktemp("lane"), lane=True) as fast,
            _service(zookeeper, kazoo, tmp_path_factory.mktemp("generic"), lane=False) as generic,
        ):
            yield fast, generic
    finally:
        kazoo.stop()
        kazoo.close()


def _request(name: str, body: bytes, **headers: str) -> tuple[str, bytes, dict[str, str]]:
    return name, body, headers


AUTH = bearer(SUBMIT_TOKEN)
REQUESTS = [
    *(_request(name, json.dumps(body).encode(), **JSON, **AUTH) for name, body, _, _ in BAD_BODIES),
    _request("malformed-json", b'{"model_name": "x", ', **JSON, **AUTH),
    _request("not-json", b"model_name=x", **JSON, **AUTH),
    _request("not-utf8", b'{"model_name": "\xff"}', **JSON, **AUTH),
    _request("nan", GOOD.replace(b'"shards": 2', b'"shards": NaN'), **JSON, **AUTH),
    _request("empty-body", b"", **JSON, **AUTH),
    _request("no-content-type", GOOD, **AUTH),
    _request("text-plain", GOOD, **{"content-type": "text/plain"}, **AUTH),
    _request("oversized", b'{"x": "' + b"x" * (MAX_BYTES + 10) + b'"}', **JSON, **AUTH),
    _request("no-token", GOOD, **JSON),
    _request("bad-token", GOOD, **JSON, **bearer("zt_not-a-token")),
    _request("basic-scheme", GOOD, **JSON, Authorization=f"Basic {SUBMIT_TOKEN}"),
    _request("empty-bearer", GOOD, **JSON, Authorization="Bearer "),
    _request("read-scope", GOOD, **JSON, **bearer(READ_TOKEN)),
    _request("no-token-malformed", b"{", **JSON),
    _request("read-scope-bad-spec", b"[1]", **JSON, **bearer(READ_TOKEN)),
    _request("key-empty", GOOD, **JSON, **AUTH, **{"Idempotency-Key": ""}),
    _request("key-too-long", GOOD, **JSON, **AUTH, **{"Idempotency-Key": "k" * 256}),
    _request("key-too-long-bad-spec", b"[1]", **JSON, **AUTH, **{"Idempotency-Key": "k" * 256}),
    _request(
        "over-ceilings",
        json.dumps(iris_spec(params={"n_estimators": 2000}, shards=60)).encode(),
        **JSON,
        **AUTH,
    ),
]


@pytest.mark.parametrize("name,body,headers", REQUESTS, ids=[r[0] for r in REQUESTS])
def test_a_refused_submit_is_answered_as_fastapi_answers_it(
    services: tuple[TestClient, TestClient], name: str, body: bytes, headers: dict[str, str]
) -> None:
    fast, generic = services
    ours = fast.post("/v1/jobs", content=body, headers=headers)
    theirs = generic.post("/v1/jobs", content=body, headers=headers)
    assert 400 <= ours.status_code < 500, (name, ours.status_code, ours.text)
    assert (ours.status_code, ours.headers["content-type"]) == (
        theirs.status_code,
        theirs.headers["content-type"],
    )
    assert ours.json() == theirs.json()
    assert _headers(ours) == _headers(theirs)


@pytest.mark.parametrize(
    "headers",
    [
        {**JSON, **AUTH},
        {"content-type": "application/json; charset=utf-8", **bearer(ADMIN_TOKEN)},
        {**JSON, **AUTH, "Idempotency-Key": f"same-{uuid.uuid4().hex}"},
        # JSON by its suffix: FastAPI's own handler takes it (its rules for content types).
        {"content-type": "application/problem+json", **AUTH},
    ],
    ids=["plain", "charset-admin", "keyed", "json-suffix"],
)
def test_an_accepted_submit_is_the_same_job(
    services: tuple[TestClient, TestClient], headers: dict[str, str]
) -> None:
    fast = services[0]
    answers = [client.post("/v1/jobs", content=GOOD, headers=headers) for client in services]
    for answer in answers:
        assert answer.status_code == 202, answer.text
        assert answer.headers["location"] == f"/v1/jobs/{answer.json()['id']}"
    ours, theirs = (_without_identity(a.json()) for a in answers)
    assert ours == theirs
    assert _headers(answers[0]) == _headers(answers[1])
    # What the answer says is what was recorded.
    job = answers[0].json()
    assert fast.get(f"/v1/jobs/{job['id']}", headers=AUTH).json() == job
    if "Idempotency-Key" in headers:
        replay = fast.post("/v1/jobs", content=GOOD, headers=headers)
        assert replay.status_code == 200 and replay.json()["id"] == job["id"]
        assert replay.headers["idempotent-replayed"] == "true"


def test_the_two_services_take_the_two_paths(
    services: tuple[TestClient, TestClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    """What makes the comparisons above mean something: the first service resolves a
    well-formed submit itself, the second leaves every submit to FastAPI."""
    resolved: list[bool] = []
    resolve = submit_route._arguments

    def counted(*args: Any) -> Any:
        arguments = resolve(*args)
        resolved.append(arguments is not None)
        return arguments

    monkeypatch.setattr(submit_route, "_arguments", counted)
    fast, generic = services
    assert fast.post("/v1/jobs", content=GOOD, headers={**JSON, **AUTH}).status_code == 202
    assert resolved == [True]
    assert fast.post("/v1/jobs", content=b"{", headers={**JSON, **AUTH}).status_code == 400
    assert resolved == [True, False]
    assert generic.post("/v1/jobs", content=GOOD, headers={**JSON, **AUTH}).status_code == 202
    assert resolved == [True, False]


def _headers(response: Any) -> dict[str, str]:
    """The response's headers but those that name the job or count its bytes (its timestamps
    may be shorter when their microseconds are 0)."""
    return {k: v for k, v in response.headers.items() if k not in ("location", "content-length")}


def _without_identity(job: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in job.items() if k not in ("id", "created_at", "updated_at")}


def test_the_operation_keeps_its_schema() -> None:
    document = json.loads((ROOT / "openapi.json").read_text())
    operation = document["paths"]["/v1/jobs"]["post"]
    assert operation["operationId"] == "submit_job_v1_jobs_post"
    body = operation["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/JobSpec"}
    assert [p["name"] for p in operation["parameters"]] == ["idempotency-key"]
    assert operation["security"] == [{"HTTPBearer": []}]
    assert {"202", "200", "400", "401", "403", "409", "413", "422", "429", "503"} <= set(
        operation["responses"]
    )
