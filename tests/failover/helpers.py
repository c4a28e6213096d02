"""Helpers for the failover tests: reading what the code wrote straight from ZooKeeper, the
worker logs, and a retrying HTTP client for tests that kill the job service under it."""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import threading
import time
from typing import Any

import httpx
from kazoo.client import KazooClient
from kazoo.exceptions import NoNodeError

from testkit.auth import AUTH
from testkit.http import RetryingClient as RetryingClient
from testkit.stack import Process, wait_for
from tests.support.specs import iris_spec as iris_spec
from zootrain.paths import Paths

TERMINAL = ("succeeded", "failed", "cancelled")


def fresh_kazoo(hosts: str) -> KazooClient:
    """A new plain client, straight against ZooKeeper, for checking what the code left."""
    client = KazooClient(hosts=hosts)
    client.start(30)
    return client


BASES = ("queue", "jobs", "locks", "workers", "models", "idempotency", "election")


def wait_layout(kazoo: KazooClient, root: str, timeout: float = 30.0) -> None:
    """/readyz answers once the session is up; the base znodes are created just after."""
    wait_for(
        lambda: all(kazoo.exists(f"{root}/{name}") for name in BASES), timeout, "the base znodes"
    )


def children(kazoo: KazooClient, path: str) -> list[str]:
    return sorted(kazoo.get_children(path)) if kazoo.exists(path) else []


def read_json(kazoo: KazooClient, path: str) -> dict[str, Any]:
    data, _ = kazoo.get(path)
    value: dict[str, Any] = json.loads(data)
    return value


def job_record(kazoo: KazooClient, root: str, job_id: str) -> dict[str, Any] | None:
    # One read, not exists-then-get: retention may delete the job between the two.
    try:
        return read_json(kazoo, f"{root}/jobs/{job_id}")
    except NoNodeError:
        return None


def shard_records(kazoo: KazooClient, root: str, job_id: str) -> list[dict[str, Any]]:
    base = f"{root}/jobs/{job_id}/shards"
    return [read_json(kazoo, f"{base}/{name}") for name in children(kazoo, base)]


def versions_by_job(kazoo: KazooClient, root: str) -> dict[str, list[tuple[str, str]]]:
    """job id -> [(model, version node)] for every version record under /models."""
    found: dict[str, list[tuple[str, str]]] = {}
    for model in children(kazoo, f"{root}/models"):
        for node in children(kazoo, f"{root}/models/{model}"):
            record = read_json(kazoo, f"{root}/models/{model}/{node}")
            found.setdefault(record["job_id"], []).append((model, node))
    return found


def idempotency_path(root: str, key: str, owner: str = "test-admin") -> str:
    # Keys are scoped to the token that sent them (RetryingClient sends the admin token).
    return Paths(root).idempotency_key(hashlib.sha256(f"{owner}\0{key}".encode()).hexdigest())


def idempotency_records(kazoo: KazooClient, root: str) -> list[dict[str, Any]]:
    """Every Idempotency-Key record, wherever the layout nests them (buckets or flat)."""
    records: list[dict[str, Any]] = []
    stack = [f"{root}/idempotency"]
    while stack:
        path = stack.pop()
        names = children(kazoo, path)
        if not names and path != f"{root}/idempotency":
            data, _ = kazoo.get(path)
            if data:
                records.append(json.loads(data))
        stack.extend(f"{path}/{n}" for n in names)
    return records


def lines_matching(process: Process, pattern: str) -> list[str]:
    compiled = re.compile(pattern)
    return [line for line in process.output().splitlines() if compiled.search(line)]


def claim_lines(process: Process, job_id: str, index: int) -> list[str]:
    return lines_matching(process, rf"\bclaim {re.escape(job_id)}/{index} attempt \d+")


def wait_terminal(kazoo: KazooClient, root: str, job_ids: list[str], timeout: float) -> None:
    """Wait (reading ZooKeeper directly) until every job is terminal."""

    def pending() -> list[str]:
        out = []
        for job_id in job_ids:
            record = job_record(kazoo, root, job_id)
            if record is None or record["state"] not in TERMINAL:
                out.append(job_id)
        return out

    try:
        wait_for(lambda: not pending(), timeout, "every job to finish", interval=0.25)
    except TimeoutError as exc:
        left = pending()
        states = {j: (job_record(kazoo, root, j) or {}).get("state") for j in left[:5]}
        raise TimeoutError(f"{exc}; {len(left)} unfinished, e.g. {states}") from None


def slow_spec(model_name: str, n_samples: int = 40_000, **overrides: Any) -> dict[str, Any]:
    """One shard that trains for several seconds on this machine (about 5 s for 40 000 rows)."""
    return iris_spec(
        model_name,
        dataset={"kind": "synthetic", "task": "classification", "n_samples": n_samples},
        params={"n_estimators": 80, "max_depth": 12},
        shards=1,
        **overrides,
    )


class Submitter(threading.Thread):
    """Submits small jobs one after another, each under its own Idempotency-Key, retrying a key
    (connection errors, 502/503/504) until it is answered; a 500 ends it with an error."""

    def __init__(self, client: RetryingClient, prefix: str) -> None:
        super().__init__(daemon=True)
        self.client = client
        self.prefix = prefix
        self.answers: dict[str, tuple[int, str]] = {}
        self.errors: list[BaseException] = []
        self.stopping = threading.Event()

    def spec(self, index: int) -> dict[str, Any]:
        return iris_spec(f"{self.prefix}-model-{index % 3}", random_state=index)

    def run(self) -> None:
        index = 0
        try:
            while not self.stopping.is_set():
                key = f"{self.prefix}-{index}"
                response = self.client.submit(self.spec(index), key, deadline=90)
                assert response.status_code in (200, 202), response.text
                self.answers[key] = (response.status_code, response.json()["id"])
                index += 1
                time.sleep(0.15)
        except BaseException as exc:  # reported by the test
            self.errors.append(exc)

    def wait_more(self, count: int, what: str) -> None:
        target = len(self.answers) + count
        wait_for(
            lambda: len(self.answers) >= target or bool(self.errors), 90, f"{count} submits {what}"
        )
        assert not self.errors, self.errors


def describe_locks(kazoo: KazooClient, root: str) -> list[str]:
    """Every lock znode with its owner (data) and session, for failure messages."""
    found = []
    for name in children(kazoo, f"{root}/locks"):
        try:
            data, stat = kazoo.get(f"{root}/locks/{name}")
        except Exception:  # gone meanwhile
            continue
        found.append(f"{name} owner={data.decode()} session={stat.ephemeralOwner:#x}")
    return found


def wait_no_locks(kazoo: KazooClient, root: str, timeout: float = 20.0) -> None:
    try:
        wait_for(lambda: children(kazoo, f"{root}/locks") == [], timeout, "every lock to go")
    except TimeoutError as exc:
        raise AssertionError(f"{exc}; left: {describe_locks(kazoo, root)}") from None


class StreamReader(threading.Thread):
    """Reads one job's event stream, recording every line with the time it arrived."""

    def __init__(self, url: str, job_id: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(daemon=True)
        self.url = f"{url}/v1/jobs/{job_id}/events"
        self.headers = {**AUTH, **(headers or {})}
        self.lines: list[tuple[float, str]] = []
        self.status: int | None = None
        self.error: BaseException | None = None
        self.ended = threading.Event()

    def run(self) -> None:
        try:
            timeout = httpx.Timeout(10.0, read=120.0)
            with httpx.stream("GET", self.url, headers=self.headers, timeout=timeout) as response:
                self.status = response.status_code
                for line in response.iter_lines():
                    self.lines.append((time.monotonic(), line))
        except BaseException as exc:  # reported by the test
            self.error = exc
        finally:
            self.ended.set()

    def events(self) -> list[dict[str, Any]]:
        """The events received: {"id", "event", "data"} each (comments left out)."""
        found: list[dict[str, Any]] = []
        current: dict[str, Any] = {}
        for _, line in list(self.lines):
            if not line:
                if "data" in current:
                    found.append(current)
                current = {}
            elif line.startswith("id:"):
                current["id"] = line[3:].strip()
            elif line.startswith("event:"):
                current["event"] = line[6:].strip()
            elif line.startswith("data:"):
                current["data"] = json.loads(line[5:].strip())
        return found

    def comments_between(self, start: float, end: float) -> list[float]:
        return [at for at, line in list(self.lines) if line.startswith(":") and start <= at <= end]

    def longest_silence(self, start: float, end: float) -> float:
        """The longest time without a line between ``start`` and ``end``."""
        stamps = [start, *(at for at, _ in list(self.lines) if start <= at <= end), end]
        return max(b - a for a, b in itertools.pairwise(stamps))
