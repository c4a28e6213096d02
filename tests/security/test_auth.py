"""API tokens against the real job service (in-process, real ZooKeeper): every operation the
document secures refuses a request without a valid token, scopes are enforced, the per-token
submit limit answers 429, and no token ever reaches a log or a response."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from kazoo.client import KazooClient

from testkit.auth import (
    ADMIN_TOKEN,
    OTHER_SUBMIT_TOKEN,
    READ_TOKEN,
    SUBMIT_TOKEN,
    bearer,
)
from testkit.stack import ROOT, Stack, environment, wait_for
from tests.integration.conftest import api_client, iris_spec, settings_from_env
from zootrain.auth import config_entry, token_digest

pytestmark = pytest.mark.integration

PROBLEM = "application/problem+json"
DOCUMENT = json.loads((ROOT / "openapi.json").read_text())
SAMPLE_PATH_VALUES = {
    "job_id": "01J0000000000000000000000A",
    "dataset_id": "ds-0000000000000000",
    "name": "some-model",
    "version": "1",
    "alias": "champion",
    "worker_id": "some-worker",
}


def secured_operations() -> list[tuple[str, str]]:
    found = []
    for path, operations in DOCUMENT["paths"].items():
        for method, operation in operations.items():
            if operation.get("security"):
                concrete = re.sub(r"\{(\w+)\}", lambda m: SAMPLE_PATH_VALUES[m[1]], path)
                found.append((method.upper(), concrete))
    return found


SECURED = secured_operations()


@pytest.fixture
def service(settings_env: dict[str, str], kazoo: KazooClient) -> Iterator[TestClient]:
    with api_client(settings_from_env(settings_env), kazoo) as api:
        # api_client sends the admin token by default; these tests choose per request.
        api.headers.pop("Authorization")
        yield api


def assert_problem(response: httpx.Response, status: int, *words: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    for word in words:
        assert word in body["detail"], body
    return body


def test_the_document_secures_every_v1_operation() -> None:
    v1 = [(m, p) for p, ops in DOCUMENT["paths"].items() for m in ops if p.startswith("/v1/")]
    assert len(SECURED) == len(v1) >= 15
    assert DOCUMENT["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"


@pytest.mark.parametrize(("method", "path"), SECURED)
def test_no_token_is_401(service: TestClient, method: str, path: str) -> None:
    response = service.request(method, path, json={})
    assert_problem(response, 401, "Authorization: Bearer")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "header",
    [
        f"Bearer {ADMIN_TOKEN}x",
        f"Bearer {token_digest(ADMIN_TOKEN)}",  # the hash is not the token
        f"Basic {ADMIN_TOKEN}",
        "Bearer",
        ADMIN_TOKEN,
    ],
)
def test_a_bad_token_is_401_and_not_echoed(service: TestClient, header: str) -> None:
    response = service.get("/v1/jobs", headers={"Authorization": header})
    assert_problem(response, 401)
    assert ADMIN_TOKEN not in response.text


def test_open_paths_need_no_token(service: TestClient) -> None:
    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json", "/ui/"):
        assert service.get(path).status_code == 200, path


def test_read_scope_reads_but_cannot_change(service: TestClient) -> None:
    reader = bearer(READ_TOKEN)
    assert service.get("/v1/jobs", headers=reader).status_code == 200
    assert service.get("/v1/models", headers=reader).status_code == 200
    assert service.get("/v1/workers", headers=reader).status_code == 200
    body = assert_problem(
        service.post("/v1/jobs", json=iris_spec(), headers=reader), 403, "'submit'", "test-read"
    )
    assert body["title"] == "Forbidden"
    upload = service.post("/v1/datasets", files={"file": ("a.csv", b"x,y\n1,2\n")}, headers=reader)
    assert_problem(upload, 403, "'submit'")
    assert service.get("/v1/jobs", headers=bearer(ADMIN_TOKEN)).json()["items"] == []


def test_a_submitter_cancels_its_own_jobs_only_admin_cancels_any(service: TestClient) -> None:
    mine = service.post("/v1/jobs", json=iris_spec(), headers=bearer(SUBMIT_TOKEN))
    assert mine.status_code == 202, mine.text
    assert mine.json()["owner"] == "test-submit"
    theirs = service.post("/v1/jobs", json=iris_spec(), headers=bearer(OTHER_SUBMIT_TOKEN))
    assert theirs.status_code == 202, theirs.text

    refused = service.delete(f"/v1/jobs/{theirs.json()['id']}", headers=bearer(SUBMIT_TOKEN))
    assert_problem(refused, 403, "test-other", "'admin'")
    # Refused means unchanged.
    still = service.get(f"/v1/jobs/{theirs.json()['id']}", headers=bearer(READ_TOKEN)).json()
    assert still["state"] == "queued"

    own = service.delete(f"/v1/jobs/{mine.json()['id']}", headers=bearer(SUBMIT_TOKEN))
    assert own.status_code == 200 and own.json()["state"] == "cancelled", own.text
    by_admin = service.delete(f"/v1/jobs/{theirs.json()['id']}", headers=bearer(ADMIN_TOKEN))
    assert by_admin.status_code == 200 and by_admin.json()["state"] == "cancelled"


def test_deleting_a_dataset_needs_admin(service: TestClient) -> None:
    uploaded = service.post(
        "/v1/datasets",
        files={"file": ("tiny.csv", b"a,b,label\n1,2,x\n3,4,y\n5,6,x\n7,8,y\n")},
        headers=bearer(SUBMIT_TOKEN),
    )
    assert uploaded.status_code == 201, uploaded.text
    location = uploaded.headers["Location"]
    assert_problem(service.delete(location, headers=bearer(SUBMIT_TOKEN)), 403, "'admin'")
    assert service.get(location, headers=bearer(READ_TOKEN)).status_code == 200
    assert service.delete(location, headers=bearer(ADMIN_TOKEN)).status_code == 204
    assert service.get(location, headers=bearer(READ_TOKEN)).status_code == 404


def test_idempotency_keys_are_per_token(service: TestClient) -> None:
    key = {"Idempotency-Key": "shared-key"}
    first = service.post("/v1/jobs", json=iris_spec(), headers={**bearer(SUBMIT_TOKEN), **key})
    again = service.post("/v1/jobs", json=iris_spec(), headers={**bearer(SUBMIT_TOKEN), **key})
    other = service.post(
        "/v1/jobs", json=iris_spec(), headers={**bearer(OTHER_SUBMIT_TOKEN), **key}
    )
    assert (first.status_code, again.status_code, other.status_code) == (202, 200, 202)
    assert first.json()["id"] == again.json()["id"] != other.json()["id"]
    assert other.json()["owner"] == "test-other"


def test_submits_over_the_per_token_rate_get_429(
    settings_env: dict[str, str], kazoo: KazooClient
) -> None:
    settings = settings_from_env(settings_env, submit_rate=0.01, submit_burst=2)
    with api_client(settings, kazoo) as service:
        service.headers.pop("Authorization")
        for _ in range(2):
            ok = service.post("/v1/jobs", json=iris_spec(), headers=bearer(SUBMIT_TOKEN))
            assert ok.status_code == 202, ok.text
        limited = service.post("/v1/jobs", json=iris_spec(), headers=bearer(SUBMIT_TOKEN))
        assert_problem(limited, 429, "test-submit", "ZOOTRAIN_SUBMIT_RATE")
        assert int(limited.headers["Retry-After"]) >= 1
        # Another token has its own bucket; a refused submit recorded nothing.
        other = service.post("/v1/jobs", json=iris_spec(), headers=bearer(OTHER_SUBMIT_TOKEN))
        assert other.status_code == 202, other.text
        listed = service.get("/v1/jobs", headers=bearer(READ_TOKEN)).json()["items"]
        assert len(listed) == 3


def test_tokens_never_reach_the_log(service: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    for token in (ADMIN_TOKEN, READ_TOKEN, ADMIN_TOKEN + "x"):
        service.post("/v1/jobs", json={"bad": 1}, headers=bearer(token))
        service.get("/v1/jobs/nope", headers=bearer(token))
    text = caplog.text
    for token in (ADMIN_TOKEN, READ_TOKEN):
        assert token not in text


# -- start-up: the service refuses a configuration it cannot use -----------------------------


def start_refused(stack: Stack, **settings: str) -> str:
    """Start the job service with ``settings``; it must exit. Returns its output."""
    stack.settings.update(settings)
    process = subprocess.run(
        [sys.executable, "-m", "uvicorn", "app.main:app", "--port", "0"],
        cwd=stack.directory,
        env=environment(stack.settings),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert process.returncode != 0
    return process.stdout + process.stderr


def test_auth_on_without_tokens_refuses_to_start(stack: Stack) -> None:
    stack.settings.pop("ZOOTRAIN_TOKENS")
    output = start_refused(stack)
    assert "no API token is configured" in output
    assert "ZOOTRAIN_AUTH=off" in output


def test_a_pasted_token_instead_of_its_hash_refuses_to_start_and_is_not_echoed(
    stack: Stack,
) -> None:
    secret = "zt_pasted-by-mistake-000000000000000000000000000000000000000000"
    output = start_refused(stack, ZOOTRAIN_TOKENS=f"ci:{secret}:read")
    assert "SHA-256" in output
    assert secret not in output


def test_tokens_file_is_read(stack: Stack) -> None:
    token = "zt_from-the-file-000000000000000000000000000000000000"
    tokens_file = stack.directory / "tokens"
    tokens_file.write_text(f"# ci\n{config_entry('from-file', token, ['read'])}\n")
    stack.settings.pop("ZOOTRAIN_TOKENS")
    stack.settings["ZOOTRAIN_TOKENS_FILE"] = str(tokens_file)
    stack.start_api()
    assert stack.api_url is not None
    assert httpx.get(f"{stack.api_url}/v1/jobs", headers=bearer(token)).status_code == 200
    assert httpx.get(f"{stack.api_url}/v1/jobs").status_code == 401


def test_auth_off_is_open_and_says_so_loudly(stack: Stack) -> None:
    stack.settings.pop("ZOOTRAIN_TOKENS")
    stack.settings["ZOOTRAIN_AUTH"] = "off"
    api = stack.start_api()
    assert stack.api_url is not None
    response = httpx.post(f"{stack.api_url}/v1/jobs", json=iris_spec())
    assert response.status_code == 202, response.text
    wait_for(lambda: "AUTHENTICATION IS OFF" in api.output(), 10, "the warning")
