"""Fixtures for the integration tests: the job service in-process, a shared real stack, helpers."""

from __future__ import annotations

import contextlib
import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from kazoo.client import KazooClient

import zootrain.paths
from app.main import create_app
from testkit.auth import AUTH, TOKENS
from testkit.stack import Process, Stack, wait_for
from testkit.zkserver import ZooKeeperCluster
from tests.conftest import artifact_settings
from tests.support.specs import iris_spec as iris_spec
from tests.support.stores import BACKENDS
from zootrain.paths import Paths
from zootrain.settings import Settings

PROBLEM = "application/problem+json"


def settings_from_env(env: dict[str, str], **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "zk_hosts": env["ZOOTRAIN_ZK_HOSTS"],
        "zk_root": env["ZOOTRAIN_ZK_ROOT"],
        "artifacts": env["ZOOTRAIN_ARTIFACTS"],
        "zk_session_timeout": float(env["ZOOTRAIN_ZK_SESSION_TIMEOUT"]),
        "tokens": env.get("ZOOTRAIN_TOKENS", TOKENS),
    }
    values.update(overrides)
    return Settings(**values)


def layout_ready(kazoo: KazooClient, root: str) -> bool:
    """Whether the service finished creating its base znodes (app.main._prepare)."""
    paths = Paths(root)
    if not all(kazoo.exists(p) for p in paths.bases):
        return False
    buckets = getattr(zootrain.paths, "IDEMPOTENCY_BUCKETS", ())
    return len(kazoo.get_children(paths.idempotency)) >= len(buckets)


def wait_layout(kazoo: KazooClient, root: str) -> None:
    # /readyz only says "connected": the base znodes are created after it turns 200.
    wait_for(lambda: layout_ready(kazoo, root), 30, "the base znodes")


@contextlib.contextmanager
def api_client(settings: Settings, kazoo: KazooClient) -> Iterator[TestClient]:
    """The real job service, in-process, against the real ZooKeeper."""
    with TestClient(create_app(settings), raise_server_exceptions=False, headers=AUTH) as client:
        wait_for(lambda: client.get("/readyz").status_code == 200, 30, "/readyz")
        wait_layout(kazoo, settings.zk_root)
        yield client


def start_api(stack: Stack, kazoo: KazooClient) -> str:
    """Stack.start_api, then wait for the layout; returns the base URL."""
    stack.start_api()
    wait_layout(kazoo, stack.settings["ZOOTRAIN_ZK_ROOT"])
    assert stack.api_url is not None
    return stack.api_url


@pytest.fixture
def api_settings(settings_env: dict[str, str]) -> Settings:
    return settings_from_env(settings_env)


@pytest.fixture
def api(api_settings: Settings, kazoo: KazooClient) -> Iterator[TestClient]:
    with api_client(api_settings, kazoo) as client:
        yield client


@pytest.fixture(scope="session", params=BACKENDS)
def shared_stack(
    zookeeper: ZooKeeperCluster,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> Iterator[Stack]:
    """A real uvicorn job service and two real workers, shared by tests that only run jobs to
    success (and check things by job id, never by "the only job in the root"); once with a
    directory as the artifact store, once with S3 (moto_server)."""
    directory = tmp_path_factory.mktemp("shared-stack")
    env = {
        "ZOOTRAIN_ZK_HOSTS": zookeeper.hosts,
        "ZOOTRAIN_ZK_ROOT": f"/test-shared-{uuid.uuid4().hex[:12]}",
        **artifact_settings(request.param, directory, request),
        "ZOOTRAIN_ZK_SESSION_TIMEOUT": "4",
        "ZOOTRAIN_RETRY_BACKOFF": "0.2",
        "ZOOTRAIN_TOKENS": TOKENS,
    }
    stack = Stack(directory, env)
    try:
        stack.start_api()
        stack.start_worker("worker", ZOOTRAIN_WORKER_ID="shared-a")
        stack.start_worker("worker", ZOOTRAIN_WORKER_ID="shared-b")
        yield stack
    finally:
        stack.stop()


@pytest.fixture
def shared_http(shared_stack: Stack) -> Iterator[httpx.Client]:
    assert shared_stack.api_url is not None
    with httpx.Client(headers=AUTH, base_url=shared_stack.api_url, timeout=60) as client:
        yield client


# -- helpers -------------------------------------------------------------------------------------


def submit(client: Any, spec: dict[str, Any], **headers: str) -> dict[str, Any]:
    response = client.post("/v1/jobs", json=spec, headers=headers)
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    return body


def assert_problem(response: Any, status: int | tuple[int, ...], *needles: str) -> dict[str, Any]:
    """A problem+json answer with the given status whose detail mentions every needle."""
    statuses = (status,) if isinstance(status, int) else status
    assert response.status_code in statuses, (response.status_code, response.text)
    assert response.headers["content-type"].startswith(PROBLEM), response.headers
    body: dict[str, Any] = response.json()
    assert body["status"] == response.status_code
    assert body["title"]
    for needle in needles:
        assert needle in body["detail"], (needle, body)
    return body


def children(kazoo: KazooClient, path: str) -> list[str]:
    return sorted(kazoo.get_children(path)) if kazoo.exists(path) else []


_DIGEST = re.compile(r"^[0-9a-f]{64}$")


def idempotency_keys(kazoo: KazooClient, root: str) -> dict[str, str]:
    """Every Idempotency-Key node under /idempotency (flat or in buckets): digest -> path."""
    found: dict[str, str] = {}
    base = f"{root}/idempotency"
    for name in children(kazoo, base):
        if _DIGEST.match(name):
            found[name] = f"{base}/{name}"
            continue
        for key in children(kazoo, f"{base}/{name}"):
            found[key] = f"{base}/{name}/{key}"
    return found


def read_json(kazoo: KazooClient, path: str) -> dict[str, Any]:
    data, _ = kazoo.get(path)
    value: dict[str, Any] = json.loads(data)
    return value


def shard_records(kazoo: KazooClient, root: str, job_id: str) -> list[dict[str, Any]]:
    base = f"{root}/jobs/{job_id}/shards"
    return [read_json(kazoo, f"{base}/{name}") for name in children(kazoo, base)]


def claim_lines(process: Process, job_id: str, index: int) -> list[str]:
    pattern = re.compile(rf"\bclaim {re.escape(job_id)}/{index} attempt \d+")
    return [line for line in process.output().splitlines() if pattern.search(line)]


def pid_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_until_empty(kazoo: KazooClient, path: str, timeout: float = 15.0) -> None:
    """Wait for ``path`` to have no children; the error names the ones that stayed."""
    try:
        wait_for(lambda: children(kazoo, path) == [], timeout, f"{path} to be empty")
    except TimeoutError as exc:
        raise TimeoutError(f"{exc}; still there: {children(kazoo, path)}") from None
