"""The ``zootrain`` command and the Python client against a real stack (uvicorn, workers, ZK).

The command runs as a real process (``python -m zootrain.cli``); the clients talk HTTP to the
real job service, whose events come from real ZooKeeper watches. The service asks for API
tokens (testkit/auth.TOKENS): the command and the clients use the read+submit one.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from testkit.auth import READ_TOKEN, SUBMIT_TOKEN, TOKENS
from testkit.stack import ROOT, Stack, environment
from testkit.zkserver import ZooKeeperCluster
from tests.support.specs import POISON_ERROR, iris_spec, poison_spec
from zootrain.client import (
    AsyncClient,
    Client,
    JobEvent,
    RetryPolicy,
    ShardEvent,
    ZootrainError,
    event_position,
)
from zootrain.records import JobState

pytestmark = pytest.mark.integration

IRIS_ROWS = "sepal length,sepal width,petal length,petal width\n5.1,3.5,1.4,0.2\n6.7,3.0,5.2,2.3\n"


# Accepted, and fails on every attempt (past its time limit).
POISON = poison_spec("poison", max_attempts=1)


def start(stack: Stack, workers: int = 2) -> str:
    """The job service and ``workers`` workers (cli-a, cli-b, ...) of this test's own stack."""
    stack.start_api()
    for n in range(workers):
        stack.start_worker("worker", ZOOTRAIN_WORKER_ID=f"cli-{'abc'[n]}")
    assert stack.api_url is not None
    return stack.api_url


@pytest.fixture(scope="module")
def api_url(zookeeper: ZooKeeperCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One stack (it takes a while to start) for the command's and the clients' tests, each of
    which checks what it made by id or name, so that they pass alone and in any order."""
    directory = tmp_path_factory.mktemp("cli-stack")
    stack = Stack(
        directory,
        {
            "ZOOTRAIN_ZK_HOSTS": zookeeper.hosts,
            "ZOOTRAIN_ZK_ROOT": f"/test-cli-{uuid.uuid4().hex[:12]}",
            "ZOOTRAIN_ARTIFACTS": str(directory / "artifacts"),
            "ZOOTRAIN_ZK_SESSION_TIMEOUT": "4",
            "ZOOTRAIN_RETRY_BACKOFF": "0.2",
            "ZOOTRAIN_TOKENS": TOKENS,
        },
    )
    try:
        yield start(stack)
    finally:
        stack.stop()


def zootrain(
    url: str | None,
    *args: str,
    env: dict[str, str] | None = None,
    stdin: str | None = None,
    token: str | None = SUBMIT_TOKEN,
) -> subprocess.CompletedProcess[str]:
    """The real entry point, in its own process, with ``token`` in $ZOOTRAIN_TOKEN."""
    argv = [sys.executable, "-m", "zootrain.cli", *args]
    if url is not None:
        argv += ["--url", url]
    settings = {"ZOOTRAIN_TOKEN": token} if token is not None else {}
    return subprocess.run(
        argv,
        cwd=ROOT,
        env=environment({**settings, **(env or {})}),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=180,
    )


def parsed(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    return json.loads(result.stdout)  # the whole of stdout: nothing but JSON


# -- the command -------------------------------------------------------------------------------


def test_cli_submit_wait_and_inspect(api_url: str, tmp_path: Path) -> None:
    spec_file = tmp_path / "job.yaml"
    spec_file.write_text(
        "model_name: iris-cli\n"
        "algorithm: random_forest_classifier\n"
        "dataset: {kind: builtin, name: iris}\n"
        "params: {n_estimators: 3}\n"
        "shards: 2\n"
    )
    waited = zootrain(api_url, "submit", str(spec_file), "--param", "max_depth=4", "--wait")
    assert waited.returncode == 0, (waited.stdout, waited.stderr)
    out = waited.stdout
    assert "shard 0" in out and "shard 1" in out, out  # one bar per shard
    assert "━" in out and out.count("done") >= 2, out
    assert "succeeded: published iris-cli v1" in out, out
    job_id = out.split("job ", 1)[1].split()[0]

    view = parsed(zootrain(api_url, "status", job_id, "--json"))
    assert view["id"] == job_id and view["state"] == "succeeded"
    assert view["spec"]["params"] == {"n_estimators": 3, "max_depth": 4}
    assert [s["state"] for s in view["shards"]] == ["done", "done"]
    assert view["model"] == {"name": "iris-cli", "version": 1}
    human = zootrain(api_url, "status", job_id)
    assert human.returncode == 0 and job_id in human.stdout and "iris-cli v1" in human.stdout

    page = parsed(zootrain(api_url, "list", "--json", "--state", "succeeded", "--limit", "500"))
    assert job_id in [j["id"] for j in page["items"]] and page["next_cursor"] is None
    assert {j["state"] for j in page["items"]} == {"succeeded"}

    models = parsed(zootrain(api_url, "models", "--json"))
    assert {"name": "iris-cli", "latest_version": 1, "versions": 1, "serving_version": 1} in [
        {k: m[k] for k in ("name", "latest_version", "versions", "serving_version")} for m in models
    ]
    (version,) = parsed(zootrain(api_url, "models", "iris-cli", "--json"))
    assert version["job_id"] == job_id and version["shards"] == 2
    detail = zootrain(api_url, "models", "iris-cli", "--version", "1")  # a table, for people
    assert detail.returncode == 0 and version["sha256"] in detail.stdout

    csv_file = tmp_path / "rows.csv"
    csv_file.write_text(IRIS_ROWS)  # with a header row
    prediction = parsed(zootrain(api_url, "predict", "iris-cli", "--csv", str(csv_file), "--json"))
    assert prediction["model"] == "iris-cli" and prediction["version"] == 1
    assert len(prediction["predictions"]) == 2
    assert set(prediction["predictions"]) <= {0, 1, 2}
    piped = zootrain(
        api_url, "predict", "iris-cli", "--csv", "-", "--version", "1", stdin="5.1,3.5,1.4,0.2\n"
    )
    assert piped.returncode == 0 and "iris-cli v1" in piped.stdout, piped.stderr

    workers = parsed(zootrain(api_url, "workers", "--json"))
    assert sorted(w["id"] for w in workers) == ["cli-a", "cli-b"]

    # Flags instead of a file, no --wait, the URL from the environment; then watch it.
    submitted = parsed(
        zootrain(
            None,
            "submit",
            "--model-name",
            "iris-flags",
            "--algorithm",
            "extra_trees_classifier",
            "--dataset",
            "iris",
            "--shards",
            "3",
            "-p",
            "n_estimators=2",
            "--json",
            env={"ZOOTRAIN_URL": api_url},
        )
    )
    assert submitted["spec"]["shards"] == 3 and submitted["spec"]["params"] == {"n_estimators": 2}
    watched = zootrain(api_url, "watch", submitted["id"], "--json")
    assert watched.returncode == 0, watched.stderr
    events = [json.loads(line) for line in watched.stdout.splitlines()]
    assert events[-1]["event"] == "job" and events[-1]["state"] == "succeeded"
    assert {e["index"] for e in events if e["event"] == "shard"} <= {0, 1, 2}
    ids = [e["event_id"] for e in events]
    assert ids == sorted(set(ids), key=event_position)  # in order, no repeats
    table = zootrain(api_url, "watch", submitted["id"])  # a finished job: its final table
    assert table.returncode == 0 and "succeeded" in table.stdout

    # Cancelling a finished job is a conflict: the service's detail, exit 1.
    conflict = zootrain(api_url, "cancel", job_id)
    assert conflict.returncode == 1
    assert "already finished" in conflict.stderr and conflict.stdout == ""


def test_cli_errors(api_url: str) -> None:
    unknown = zootrain(api_url, "status", "0000000000000000000a", "--json")
    assert unknown.returncode == 1
    assert unknown.stdout == ""
    assert (
        unknown.stderr.strip() == "error: job '0000000000000000000a' does not exist (404 Not found)"
    )

    invalid = zootrain(
        api_url,
        "submit",
        "--model-name",
        "Bad Name",
        "--algorithm",
        "random_forest_classifier",
        "--dataset",
        "iris",
    )
    assert invalid.returncode == 1
    assert "model_name" in invalid.stderr and "422" in invalid.stderr
    assert len(invalid.stderr.strip().splitlines()) == 1

    unreachable = zootrain("http://127.0.0.1:9", "workers")
    assert unreachable.returncode == 1 and "cannot reach http://127.0.0.1:9" in unreachable.stderr

    usage = zootrain(api_url, "submit")  # neither a spec file nor flags (more: the unit tests)
    assert usage.returncode == 2 and "--model-name" in usage.stderr


def test_cli_tokens(api_url: str) -> None:
    # No token: the service's 401, and what to do about it.
    missing = zootrain(api_url, "workers", token=None)
    assert missing.returncode == 1 and missing.stdout == ""
    assert "401" in missing.stderr and "export ZOOTRAIN_TOKEN" in missing.stderr, missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1

    refused = zootrain(api_url, "workers", token="zt_not-a-token")
    assert refused.returncode == 1 and "refused the API token" in refused.stderr
    assert "zt_not-a-token" not in refused.stderr  # never echoed

    # A read-only token may look but not submit: the 403 names the scope.
    with Client(api_url, token=SUBMIT_TOKEN) as client:
        mine = client.submit(iris_spec("cli-token-look")).id
    looked = parsed(zootrain(api_url, "list", "--json", token=READ_TOKEN))
    assert mine in [j["id"] for j in looked["items"]]
    forbidden = zootrain(
        api_url,
        "submit",
        "--model-name",
        "never",
        "--algorithm",
        "random_forest_classifier",
        "--dataset",
        "iris",
        token=READ_TOKEN,
    )
    assert forbidden.returncode == 1 and "403" in forbidden.stderr
    assert "submit" in forbidden.stderr and "scope" in forbidden.stderr, forbidden.stderr

    # --token before the command, or after it (which wins), instead of the environment.
    before = zootrain(None, "--token", SUBMIT_TOKEN, "workers", "--url", api_url, token=None)
    assert before.returncode == 0, before.stderr
    after = zootrain(api_url, "--token", "zt_not-a-token", "workers", "--token", SUBMIT_TOKEN)
    assert after.returncode == 0, after.stderr
    flagged = zootrain(api_url, "workers", "--token", "zt_not-a-token")  # over the environment
    assert flagged.returncode == 1 and "refused" in flagged.stderr


def test_cli_datasets(api_url: str, tmp_path: Path) -> None:
    with Client(api_url, token=SUBMIT_TOKEN) as client:
        available = "/v1/datasets" in client.openapi()["paths"]
    if not available:
        result = zootrain(api_url, "datasets", "list")
        assert result.returncode == 1
        assert "not available on this server" in result.stderr
        return
    csv_file = tmp_path / "tiny.csv"
    csv_file.write_text("a,b,label\n" + "".join(f"{i},{i % 3},{i % 2}\n" for i in range(40)))
    record = parsed(
        zootrain(api_url, "datasets", "upload", str(csv_file), "--name", "tiny", "--json")
    )
    assert record["name"] == "tiny" and record["rows"] == 40
    page = parsed(zootrain(api_url, "datasets", "list", "--json"))
    assert record["id"] in [d["id"] for d in page["items"]]
    shown = parsed(zootrain(api_url, "datasets", "show", record["id"], "--json"))
    assert [c["name"] for c in shown["columns"]] == ["a", "b", "label"]
    human = zootrain(api_url, "datasets", "show", record["id"])
    assert human.returncode == 0 and "label" in human.stdout
    unknown = zootrain(api_url, "datasets", "show", "0" * 20)
    assert unknown.returncode == 1 and "not available" not in unknown.stderr


def test_cli_failing_job_exits_non_zero(api_url: str, tmp_path: Path) -> None:
    spec_file = tmp_path / "poison.json"
    spec_file.write_text(json.dumps(POISON))
    failed = zootrain(api_url, "submit", str(spec_file), "--wait")
    assert failed.returncode == 1, (failed.stdout, failed.stderr)
    assert "failed" in failed.stdout and POISON_ERROR in failed.stdout

    as_json = zootrain(api_url, "submit", str(spec_file), "--wait", "--json")
    assert as_json.returncode == 1
    final = json.loads(as_json.stdout)
    assert final["state"] == "failed" and POISON_ERROR in final["error"]


# -- the Python client -------------------------------------------------------------------------


# Patient about event streams that end early: see test_events_of_a_job_with_pending_shards.
PATIENT = RetryPolicy(retries=8, max_backoff=2.0)


def test_client_submit_events_predict_download(api_url: str, tmp_path: Path) -> None:
    with Client(api_url, token=SUBMIT_TOKEN, retry=PATIENT) as client:
        assert client.health().status == "ok" and client.ready().status == "ready"
        job = client.submit(iris_spec("iris-py"), idempotency_key="iris-py-1")
        again = client.submit(iris_spec("iris-py"), idempotency_key="iris-py-1")
        assert again.id == job.id  # the same key: the same job

        events = list(client.events(job.id))
        assert isinstance(events[-1], JobEvent) and events[-1].state == JobState.succeeded
        assert all(e.job_id == job.id for e in events if isinstance(e, ShardEvent))
        done = {e.index for e in events if isinstance(e, ShardEvent) and e.state == "done"}
        assert done == {0, 1}
        ids = [e.event_id for e in events]
        assert ids == sorted(set(ids), key=event_position)

        view = client.wait(job.id, timeout=60)  # already finished: returns at once
        assert view.state == JobState.succeeded and view.model is not None
        version = client.version("iris-py", view.model.version)
        assert [v.version for v in client.versions("iris-py")] == [version.version]
        assert any(m.name == "iris-py" for m in client.models())

        result = client.predict("iris-py", [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]])
        assert result.version == version.version and len(result.predictions) == 2

        path = client.download_artifact("iris-py", version.version, tmp_path)
        data = path.read_bytes()
        assert hashlib.sha256(data).hexdigest() == version.sha256 and len(data) == version.size

        assert {w.id for w in client.workers()} == {"cli-a", "cli-b"}
        assert job.id in {j.id for j in client.iter_jobs(page_size=1)}

        with pytest.raises(ZootrainError) as caught:
            client.cancel(job.id)
        assert caught.value.status == 409


def test_client_events_resume_without_repeats(api_url: str) -> None:
    spec = iris_spec("digits-py", dataset={"kind": "builtin", "name": "digits"}, shards=3)
    spec["params"] = {"n_estimators": 10}
    with Client(api_url, token=SUBMIT_TOKEN, retry=PATIENT) as client:
        job = client.submit(spec)
        stream = client.events(job.id)
        first = [next(stream), next(stream)]
        stream.close()  # (a generator) drops the connection
        rest = list(client.events(job.id, last_event_id=first[-1].event_id))
    ids = [e.event_id for e in first + rest]
    assert ids == sorted(set(ids), key=event_position), ids  # no repeats, in order
    assert isinstance(rest[-1], JobEvent) and rest[-1].state.terminal


def test_client_reconnects_a_dropped_stream(api_url: str) -> None:
    with (
        DroppingProxy(api_url) as proxy,
        Client(proxy.url, token=SUBMIT_TOKEN, retry=PATIENT) as client,
    ):
        job = client.submit(iris_spec("iris-drop", shards=3))
        events = list(client.events(job.id))
    assert proxy.dropped, "the proxy never cut a stream"
    resumed = [h for h in proxy.heads if b"/events" in h and b"last-event-id" in h.lower()]
    assert resumed, proxy.heads
    ids = [e.event_id for e in events]
    assert ids == sorted(set(ids), key=event_position), ids
    assert isinstance(events[-1], JobEvent) and events[-1].state == JobState.succeeded


def test_client_tokens(api_url: str) -> None:
    # Neither a token nor $ZOOTRAIN_TOKEN: a 401 problem, raised at once (not retried).
    with Client(api_url, token="", retry=PATIENT) as client:
        with pytest.raises(ZootrainError) as caught:
            client.list_jobs()
        assert caught.value.status == 401 and "token" in caught.value.detail
        assert client.health().status == "ok"  # the open paths stay open
    with Client(api_url, token=SUBMIT_TOKEN) as client:
        mine = client.submit(iris_spec("client-token-look")).id
    with Client(api_url, token=READ_TOKEN) as client:
        assert mine in {j.id for j in client.iter_jobs(page_size=50)}
        with pytest.raises(ZootrainError) as caught:
            client.submit(iris_spec("read-only"))
        assert caught.value.status == 403 and "submit" in caught.value.detail
        assert READ_TOKEN not in str(caught.value) + repr(caught.value) + repr(client)


def test_async_client(api_url: str, tmp_path: Path) -> None:

    async def main() -> None:
        async with AsyncClient(api_url, token=SUBMIT_TOKEN, retry=PATIENT) as client:
            job = await client.submit(iris_spec("iris-async"))
            seen = []
            async for event in client.events(job.id):
                seen.append(event.event_id)
                if len(seen) == 2:
                    break
            rest = [e async for e in client.events(job.id, last_event_id=seen[-1])]
            ids = seen + [e.event_id for e in rest]
            assert ids == sorted(set(ids), key=event_position), ids
            view = await client.wait(job.id, timeout=60)
            assert view.state == JobState.succeeded and view.model is not None
            result = await client.predict("iris-async", [[5.1, 3.5, 1.4, 0.2]])
            assert result.version == view.model.version
            version = await client.version("iris-async", view.model.version)
            path = await client.download_artifact("iris-async", version.version, tmp_path)
            assert hashlib.sha256(path.read_bytes()).hexdigest() == version.sha256
            assert sorted(w.id for w in await client.workers()) == ["cli-a", "cli-b"]
            with pytest.raises(ZootrainError) as caught:
                await client.get_job("0000000000000000000a")
            assert caught.value.status == 404

    asyncio.run(main())


def test_events_of_a_job_with_pending_shards(stack: Stack) -> None:
    api_url = start(stack, workers=0)  # nobody claims: the shards stay as submit made them
    with Client(api_url, token=SUBMIT_TOKEN, retry=RetryPolicy(retries=1, backoff=0.1)) as client:
        job = client.submit(iris_spec("pending", shards=3))
        events = []
        with contextlib.suppress(TimeoutError):
            for event in client.events(job.id, timeout=5):
                events.append(event)
    # The job and its three shards, then silence (keep-alives) until the timeout.
    assert sorted(type(e).__name__ for e in events) == ["JobEvent", *["ShardEvent"] * 3]


# -- a TCP proxy that cuts the first event stream after its first event --------------------------

EVENT_END = re.compile(rb"\nid: \d+-\d+\r?\n\r?\n")


class DroppingProxy:
    """Forwards to the job service; the first events request's connection is closed as soon
    as one whole event has gone through, like a network drop."""

    def __init__(self, upstream: str) -> None:
        host, port = upstream.removeprefix("http://").split(":")
        self.upstream = (host, int(port))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.heads: list[bytes] = []
        self.dropped = False
        self._lock = threading.Lock()

    def __enter__(self) -> DroppingProxy:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.upstream)
            armed: dict[str, Any] = {"cut": False, "seen": b""}
            threading.Thread(target=self._up, args=(client, upstream, armed), daemon=True).start()
            threading.Thread(target=self._down, args=(upstream, client, armed), daemon=True).start()

    def _up(self, client: socket.socket, upstream: socket.socket, armed: dict[str, Any]) -> None:
        for chunk in _chunks(client):
            with self._lock:
                self.heads.append(chunk)
                if b"/events" in chunk and not self.dropped:
                    armed.update(cut=True, seen=b"")
            try:
                upstream.sendall(chunk)
            except OSError:
                break
        _close(client, upstream)

    def _down(self, upstream: socket.socket, client: socket.socket, armed: dict[str, Any]) -> None:
        for chunk in _chunks(upstream):
            try:
                client.sendall(chunk)
            except OSError:
                break
            with self._lock:
                if armed["cut"]:
                    armed["seen"] += chunk
                    if EVENT_END.search(armed["seen"]):
                        self.dropped = True
                        break
        _close(client, upstream)


def _chunks(sock: socket.socket) -> Iterator[bytes]:
    while True:
        try:
            data = sock.recv(65536)
        except OSError:
            return
        if not data:
            return
        yield data


def _close(*socks: socket.socket) -> None:
    for sock in socks:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()
