"""The Python client without a server: problem parsing, retry decisions, SSE resume, checksums.

httpx.MockTransport stands in for HTTP here (never for ZooKeeper); the live service is exercised
by tests/integration/test_cli.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer
from typer.testing import CliRunner

from zootrain import cli
from zootrain.cli import models as cli_models
from zootrain.cli import submit as cli_submit
from zootrain.client import (
    AsyncClient,
    ChecksumMismatch,
    Client,
    JobEvent,
    RetryPolicy,
    ShardEvent,
    ZootrainError,
    parse_retry_after,
)
from zootrain.client.events import _SSEDecoder
from zootrain.errors import DomainError
from zootrain.records import JobState

JOB_ID = "0190a1b2c3d4e5f60718"
URL = "http://zootrain.test"
FAST = RetryPolicy(retries=3, backoff=0.001, max_backoff=0.004, jitter=False)

Handler = Callable[[httpx.Request], httpx.Response]


def job(state: str = "queued", **extra: Any) -> dict[str, Any]:
    return {
        "id": JOB_ID,
        "state": state,
        "spec": {
            "model_name": "iris-forest",
            "algorithm": "random_forest_classifier",
            "params": {"n_estimators": 3},
            "dataset": {"kind": "builtin", "name": "iris"},
            "shards": 2,
        },
        "created_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-01T00:00:00Z",
        "shards": [],
        **extra,
    }


def shard(index: int, state: str) -> dict[str, Any]:
    return {"job_id": JOB_ID, "index": index, "state": state, "attempts": 1, "worker": "w-1"}


def problem(status: int, detail: str, **headers: str) -> httpx.Response:
    body = {"type": "about:blank", "title": "Some title", "status": status, "detail": detail}
    return httpx.Response(
        status, json=body, headers={"content-type": "application/problem+json", **headers}
    )


def sse(*events: tuple[str, int, dict[str, Any]], comment: bool = True) -> bytes:
    chunks = [": keep-alive\n\n"] if comment else []
    for kind, zxid, data in events:
        chunks.append(f"event: {kind}\ndata: {json.dumps(data)}\nid: {zxid}\n\n")
    return "".join(chunks).encode()


class Recorder:
    """A MockTransport handler answering from a script, keeping every request."""

    def __init__(self, *answers: httpx.Response | Exception | Handler) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        if callable(answer) and not isinstance(answer, httpx.Response):
            return answer(request)
        return answer


def client(handler: Handler, retry: RetryPolicy = FAST) -> Client:
    return Client(URL, retry=retry, transport=httpx.MockTransport(handler))


class Dropping(httpx.SyncByteStream):
    """A response body that breaks off after its bytes, like a dropped connection."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __iter__(self) -> Iterator[bytes]:
        yield self.data
        raise httpx.RemoteProtocolError("peer closed connection without sending complete body")


class AsyncDropping(httpx.AsyncByteStream):
    def __init__(self, data: bytes) -> None:
        self.data = data

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.data
        raise httpx.RemoteProtocolError("peer closed connection without sending complete body")


SSE_HEADERS = {"content-type": "text/event-stream"}


# -- problems ----------------------------------------------------------------------------------


def test_problem_json_becomes_zootrain_error() -> None:
    response = httpx.Response(
        422,
        headers={"content-type": "application/problem+json", "Retry-After": "3"},
        json={
            "type": "about:blank",
            "title": "Unprocessable Entity",
            "status": 422,
            "detail": "shards: Input should be greater than or equal to 1",
            "errors": [{"field": "shards", "message": "too small", "type": "greater_than_equal"}],
        },
    )
    error = ZootrainError.from_response(response)
    assert (error.status, error.title) == (422, "Unprocessable Entity")
    assert error.detail == "shards: Input should be greater than or equal to 1"
    assert error.errors and error.errors[0]["field"] == "shards"
    assert error.retry_after == 3.0
    assert str(error) == "422 Unprocessable Entity: " + error.detail
    assert isinstance(error, DomainError)  # one family with the service's own errors


def test_non_problem_error_body_still_gives_status_title_detail() -> None:
    html = "<html><body><h1>502 Bad Gateway</h1>\n nginx </body></html>"
    error = ZootrainError.from_response(httpx.Response(502, text=html))
    assert (error.status, error.title) == (502, "Bad Gateway")
    assert "nginx" in error.detail and "\n" not in error.detail
    empty = ZootrainError.from_response(httpx.Response(500))
    assert (empty.status, empty.title, empty.detail) == (500, "Internal Server Error", empty.title)


def test_a_404_from_the_service_raises_with_its_detail() -> None:
    recorder = Recorder(problem(404, f"job '{JOB_ID}' does not exist"))
    with client(recorder) as c, pytest.raises(ZootrainError) as caught:
        c.get_job(JOB_ID)
    assert caught.value.status == 404
    assert caught.value.detail == f"job '{JOB_ID}' does not exist"
    assert len(recorder.requests) == 1  # a 404 is an answer, not a reason to retry


def test_retry_after_parsing() -> None:
    assert parse_retry_after("5") == 5.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 25 <= (parse_retry_after(later) or 0) <= 30
    earlier = format_datetime(datetime.now(UTC) - timedelta(seconds=30), usegmt=True)
    assert parse_retry_after(earlier) == 0.0


# -- the retry policy --------------------------------------------------------------------------

POLICY = RetryPolicy(retries=3, backoff=1.0, max_backoff=8.0, max_retry_after=60, jitter=False)


@pytest.mark.parametrize(
    ("status", "idempotent", "headers", "expected"),
    [
        (503, True, {}, 1.0),
        (502, True, {}, 1.0),
        (504, True, {}, 1.0),
        (503, True, {"Retry-After": "7"}, 7.0),  # honoured
        (502, True, {"Retry-After": "7"}, 1.0),  # only on 429 and 503
        (503, False, {}, None),  # predict: not idempotent
        (429, False, {"Retry-After": "2"}, 2.0),  # rejected unprocessed: safe for anything
        (429, True, {}, 1.0),
        (429, True, {"Retry-After": "600"}, None),  # longer than max_retry_after: give up
        (500, True, {}, None),
        (404, True, {}, None),
        (422, True, {}, None),
        (409, True, {}, None),
    ],
)
def test_retry_decisions_on_responses(
    status: int, idempotent: bool, headers: dict[str, str], expected: float | None
) -> None:
    response = httpx.Response(status, headers=headers)
    assert POLICY.delay(0, idempotent=idempotent, response=response) == expected


@pytest.mark.parametrize(
    ("error", "idempotent", "retried"),
    [
        (httpx.ConnectError("refused"), False, True),  # nothing was sent
        (httpx.ConnectTimeout("slow"), False, True),
        (httpx.ReadError("reset"), False, False),  # it may have been processed
        (httpx.ReadError("reset"), True, True),
        (httpx.RemoteProtocolError("closed"), True, True),
        (httpx.ReadTimeout("slow"), True, True),
        (ValueError("not a transport problem"), True, False),
    ],
)
def test_retry_decisions_on_errors(error: Exception, idempotent: bool, retried: bool) -> None:
    delay = POLICY.delay(0, idempotent=idempotent, error=error)
    assert (delay is not None) == retried


def test_backoff_doubles_up_to_the_cap_and_stops_after_the_retries() -> None:
    policy = RetryPolicy(retries=6, backoff=1.0, max_backoff=8.0, jitter=False)
    response = httpx.Response(503)
    delays = [policy.delay(a, idempotent=True, response=response) for a in range(7)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0, None]


def test_jitter_stays_within_half_to_full_backoff() -> None:
    policy = RetryPolicy(backoff=1.0, max_backoff=8.0)
    for attempt in range(3):
        for _ in range(50):
            full = 2.0**attempt
            assert full / 2 <= policy.backoff_delay(attempt) <= full


# -- retries through the client ----------------------------------------------------------------


def test_get_is_retried_on_503_then_succeeds() -> None:
    recorder = Recorder(
        problem(503, "zookeeper away"), httpx.Response(502), httpx.Response(200, json=job())
    )
    with client(recorder) as c:
        view = c.get_job(JOB_ID)
    assert view.id == JOB_ID and view.state == JobState.queued
    assert len(recorder.requests) == 3


def test_retries_give_up_with_the_last_problem() -> None:
    recorder = Recorder(problem(503, "the coordination service did not answer"))
    with client(recorder) as c, pytest.raises(ZootrainError) as caught:
        c.models()
    assert caught.value.status == 503
    assert len(recorder.requests) == FAST.retries + 1


def test_submit_retries_under_one_fresh_idempotency_key() -> None:
    recorder = Recorder(
        httpx.ConnectError("refused"),
        httpx.Response(504),
        httpx.Response(202, json=job()),
    )
    with client(recorder) as c:
        view = c.submit(job()["spec"])
    assert view.id == JOB_ID
    keys = {r.headers["Idempotency-Key"] for r in recorder.requests}
    assert len(recorder.requests) == 3 and len(keys) == 1
    assert uuid.UUID(keys.pop()).version == 4
    assert json.loads(recorder.requests[-1].content) == job()["spec"]


def test_submit_uses_a_given_key_and_each_submit_gets_its_own_default() -> None:
    recorder = Recorder(httpx.Response(202, json=job()))
    with client(recorder) as c:
        c.submit(job()["spec"], idempotency_key="nightly-2026-01-01")
        c.submit(job()["spec"])
        c.submit(job()["spec"])
    keys = [r.headers["Idempotency-Key"] for r in recorder.requests]
    assert keys[0] == "nightly-2026-01-01"
    assert keys[1] != keys[2]


def test_predict_is_not_retried_on_503_but_is_on_429_after_retry_after(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    slept: list[float] = []
    monkeypatch.setattr("zootrain.client.sync_client.time.sleep", slept.append)
    answer = {"model": "iris-forest", "version": 2, "predictions": [0]}

    recorder = Recorder(problem(503, "busy"))
    with client(recorder) as c, pytest.raises(ZootrainError):
        c.predict("iris-forest", [[5.1, 3.5, 1.4, 0.2]])
    assert len(recorder.requests) == 1

    recorder = Recorder(
        problem(429, "slow down", **{"Retry-After": "2"}), httpx.Response(200, json=answer)
    )
    with client(recorder) as c:
        result = c.predict("iris-forest", [[5.1, 3.5, 1.4, 0.2]], version=2)
    assert result.predictions == [0] and result.version == 2
    assert slept == [2.0]
    assert json.loads(recorder.requests[0].content) == {
        "instances": [[5.1, 3.5, 1.4, 0.2]],
        "version": 2,
    }


def test_a_read_error_on_a_post_that_is_not_idempotent_is_raised() -> None:
    recorder = Recorder(httpx.ReadError("connection reset"))
    with client(recorder) as c, pytest.raises(httpx.ReadError):
        c.predict("iris-forest", [[1.0]])
    assert len(recorder.requests) == 1


def test_connection_errors_are_raised_after_the_retries() -> None:
    recorder = Recorder(httpx.ConnectError("refused"))
    with client(recorder) as c, pytest.raises(httpx.ConnectError):
        c.workers()
    assert len(recorder.requests) == FAST.retries + 1


def test_health_and_ready_are_not_retried() -> None:
    recorder = Recorder(problem(503, "not connected to ZooKeeper", **{"Retry-After": "1"}))
    with client(recorder) as c, pytest.raises(ZootrainError) as caught:
        c.ready()
    assert caught.value.status == 503 and len(recorder.requests) == 1


def test_base_url_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZOOTRAIN_URL", "http://elsewhere:9000/")
    assert Client().base_url == "http://elsewhere:9000"
    assert Client("http://given:1").base_url == "http://given:1"
    monkeypatch.delenv("ZOOTRAIN_URL")
    assert Client().base_url == "http://127.0.0.1:8000"


def test_path_segments_cannot_escape() -> None:
    with client(Recorder(httpx.Response(200, json=job()))) as c, pytest.raises(ValueError):
        c.get_job("../models")


def test_iter_jobs_follows_the_cursor() -> None:
    first = {"items": [job(), job()], "next_cursor": JOB_ID}
    last = {"items": [job()], "next_cursor": None}
    recorder = Recorder(httpx.Response(200, json=first), httpx.Response(200, json=last))
    with client(recorder) as c:
        jobs = list(c.iter_jobs(state="succeeded", page_size=2))
    assert len(jobs) == 3
    assert recorder.requests[0].url.params["state"] == "succeeded"
    assert "cursor" not in recorder.requests[0].url.params
    assert recorder.requests[1].url.params["cursor"] == JOB_ID


# -- events ------------------------------------------------------------------------------------


def test_sse_decoder_follows_the_whatwg_rules() -> None:
    decoder = _SSEDecoder()
    lines = [": ping", "", "event: job", 'data: {"a":', "data: 1}", "id: 7", "", "data:x", ""]
    events = [e for e in (decoder.feed(line) for line in lines) if e is not None]
    assert [(e.event, e.data, e.id) for e in events] == [
        ("job", '{"a":\n1}', "7"),
        ("message", "x", None),
    ]


def test_events_are_typed_and_end_after_the_terminal_job_event() -> None:
    body = sse(
        ("job", 10, job("running")),
        ("shard", 11, shard(0, "running")),
        ("shard", 12, shard(0, "done")),
        ("job", 13, job("succeeded", model={"name": "iris-forest", "version": 1})),
        ("shard", 14, shard(1, "done")),  # after the end: never read
    )
    recorder = Recorder(httpx.Response(200, content=body, headers=SSE_HEADERS))
    with client(recorder) as c:
        events = list(c.events(JOB_ID))
    assert [type(e) for e in events] == [JobEvent, ShardEvent, ShardEvent, JobEvent]
    assert [e.event_id for e in events] == ["10", "11", "12", "13"]
    assert isinstance(events[1], ShardEvent) and events[1].job_id == JOB_ID
    assert events[-1].state == JobState.succeeded
    assert "Last-Event-ID" not in recorder.requests[0].headers


def test_a_dropped_stream_is_resumed_with_last_event_id_and_nothing_repeats(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("zootrain.client.sync_client.time.sleep", lambda s: None)
    first = sse(("job", 10, job("running")), ("shard", 11, shard(0, "running")))
    second = sse(
        ("shard", 11, shard(0, "running")),  # a repeat the client must drop
        ("shard", 15, shard(0, "done")),
        ("job", 20, job("failed", error="shard 1 failed 3 times")),
    )
    recorder = Recorder(
        httpx.Response(200, stream=Dropping(first), headers=SSE_HEADERS),
        httpx.Response(200, content=second, headers=SSE_HEADERS),
    )
    with client(recorder) as c:
        events = list(c.events(JOB_ID))
    assert [e.event_id for e in events] == ["10", "11", "15", "20"]
    assert recorder.requests[1].headers["Last-Event-ID"] == "11"
    assert events[-1].state == JobState.failed


def test_events_resume_from_a_given_id() -> None:
    recorder = Recorder(
        httpx.Response(200, content=sse(("job", 20, job("cancelled"))), headers=SSE_HEADERS)
    )
    with client(recorder) as c:
        events = list(c.events(JOB_ID, last_event_id="12"))
    assert [e.event_id for e in events] == ["20"]
    assert recorder.requests[0].headers["Last-Event-ID"] == "12"


def test_an_empty_stream_of_a_finished_job_ends_the_iteration() -> None:
    # Resuming after the terminal event: the service ends the stream at once.
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/events"):
            return httpx.Response(200, content=b"", headers=SSE_HEADERS)
        return httpx.Response(200, json=job("succeeded"))

    recorder = Recorder(handler)
    with client(recorder) as c:
        assert list(c.events(JOB_ID, last_event_id="99")) == []
    assert [r.url.path for r in recorder.requests] == [
        f"/v1/jobs/{JOB_ID}/events",
        f"/v1/jobs/{JOB_ID}",
    ]


def test_a_stream_that_keeps_dropping_without_progress_gives_up() -> None:
    recorder = Recorder(
        lambda request: httpx.Response(200, stream=Dropping(b": ping\n\n"), headers=SSE_HEADERS)
    )
    with client(recorder) as c, pytest.raises(httpx.RemoteProtocolError):
        list(c.events(JOB_ID))
    assert len(recorder.requests) == FAST.retries + 1


def test_a_stream_that_keeps_ending_cleanly_before_the_job_does_gives_up() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/events"):
            return httpx.Response(200, content=b"", headers=SSE_HEADERS)
        return httpx.Response(200, json=job("running"))

    recorder = Recorder(handler)
    with client(recorder) as c, pytest.raises(ZootrainError, match="ended 4 times in a row"):
        list(c.events(JOB_ID))
    streams = [r for r in recorder.requests if r.url.path.endswith("/events")]
    assert len(streams) == FAST.retries + 1


def test_events_of_an_unknown_job_raise_the_problem() -> None:
    recorder = Recorder(problem(404, f"job '{JOB_ID}' does not exist"))
    with client(recorder) as c, pytest.raises(ZootrainError) as caught:
        list(c.events(JOB_ID))
    assert caught.value.status == 404


def test_wait_returns_the_final_view() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/events"):
            return httpx.Response(
                200, content=sse(("job", 5, job("succeeded"))), headers=SSE_HEADERS
            )
        return httpx.Response(200, json=job("succeeded", shards=[shard(0, "done")]))

    with client(handler) as c:
        view = c.wait(JOB_ID, timeout=5)
    assert view.state == JobState.succeeded and view.shards[0].state == "done"


# -- artifacts ---------------------------------------------------------------------------------


def artifact(data: bytes, sha256: str | None) -> Handler:
    headers = {"X-Content-SHA256": sha256} if sha256 else {}
    return lambda request: httpx.Response(200, content=data, headers=headers)


def test_download_checks_the_sha256(tmp_path: Path) -> None:
    data = b"skops model bytes" * 1000
    digest = hashlib.sha256(data).hexdigest()
    with client(artifact(data, digest)) as c:
        path = c.download_artifact("iris-forest", 3, tmp_path)
        assert path == tmp_path / "iris-forest-v3.skops"
        assert path.read_bytes() == data
        named = c.download_artifact("iris-forest", 3, tmp_path / "model.skops")
        assert named.read_bytes() == data


@pytest.mark.parametrize("announced", ["0" * 64, None])
def test_a_bad_or_missing_checksum_leaves_no_file(tmp_path: Path, announced: str | None) -> None:
    with client(artifact(b"tampered", announced)) as c, pytest.raises(ChecksumMismatch):
        c.download_artifact("iris-forest", 3, tmp_path / "model.skops")
    assert list(tmp_path.iterdir()) == []


# -- datasets ----------------------------------------------------------------------------------


def test_datasets_on_a_server_without_them_say_so(tmp_path: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/openapi.json":
            return httpx.Response(200, json={"paths": {"/v1/jobs": {}}})
        return problem(404, f"no resource at {request.url.path}")

    csv_file = tmp_path / "data.csv"
    csv_file.write_text("1,2\n")
    with client(handler) as c:
        for call in (
            c.list_datasets,
            lambda: c.get_dataset("d1"),
            lambda: c.upload_dataset(csv_file),
        ):
            with pytest.raises(ZootrainError) as caught:
                call()
            assert "not available on this server" in caught.value.detail


def test_datasets_on_a_server_with_them_pass_errors_through(tmp_path: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/openapi.json":
            return httpx.Response(200, json={"paths": {"/v1/datasets": {}}})
        if request.method == "POST":
            body = request.read()
            assert b'name="file"; filename="data.csv"' in body and b"1,2\n" in body
            assert b'name="name"\r\n\r\nmy data' in body
            return httpx.Response(201, json={"id": "d1", "rows": 1})
        return problem(404, "dataset 'd9' does not exist")

    csv_file = tmp_path / "data.csv"
    csv_file.write_text("1,2\n")
    with client(handler) as c:
        assert c.upload_dataset(csv_file, name="my data") == {"id": "d1", "rows": 1}
        with pytest.raises(ZootrainError) as caught:
            c.get_dataset("d9")
    assert caught.value.detail == "dataset 'd9' does not exist"


# -- API tokens --------------------------------------------------------------------------------

TOKEN = "zt_unit-test-token-0123456789abcdefghijklmnopqrstuv"


def token_handler(request: httpx.Request) -> httpx.Response:
    """A service that answers every kind of call, so one client can make them all."""
    path = request.url.path
    if path.endswith("/events"):
        return httpx.Response(200, content=sse(("job", 5, job("succeeded"))), headers=SSE_HEADERS)
    if path.endswith("/artifact"):
        data = b"model"
        return httpx.Response(
            200, content=data, headers={"X-Content-SHA256": hashlib.sha256(data).hexdigest()}
        )
    if path == "/v1/datasets" and request.method == "POST":
        return httpx.Response(201, json={"id": "d1"})
    if path == "/v1/jobs" and request.method == "POST":
        return httpx.Response(202, json=job())
    return httpx.Response(200, json=job("succeeded"))


def test_the_token_goes_with_every_request(tmp_path: Path) -> None:
    recorder = Recorder(token_handler)
    csv_file = tmp_path / "data.csv"
    csv_file.write_text("a,b\n1,2\n")
    with Client(URL, token=TOKEN, retry=FAST, transport=httpx.MockTransport(recorder)) as c:
        c.submit(job()["spec"])
        c.get_job(JOB_ID)
        assert [e.event_id for e in c.events(JOB_ID)] == ["5"]
        c.download_artifact("iris-forest", 1, tmp_path)
        c.upload_dataset(csv_file)
        c.cancel(JOB_ID)
    assert [r.url.path.rsplit("/", 1)[-1] for r in recorder.requests] == [
        "jobs",
        JOB_ID,
        "events",
        "artifact",
        "datasets",
        JOB_ID,
    ]
    assert {r.headers.get("Authorization") for r in recorder.requests} == {f"Bearer {TOKEN}"}


def test_the_async_client_sends_the_token_too(tmp_path: Path) -> None:
    seen: list[httpx.Request] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return token_handler(request)

    async def main() -> None:
        transport = httpx.MockTransport(handler)
        async with AsyncClient(URL, token=TOKEN, retry=FAST, transport=transport) as c:
            await c.submit(job()["spec"])
            assert [e.event_id async for e in c.events(JOB_ID)] == ["5"]
            await c.download_artifact("iris-forest", 1, tmp_path)

    asyncio.run(main())
    assert len(seen) == 3
    assert {r.headers.get("Authorization") for r in seen} == {f"Bearer {TOKEN}"}


def test_the_token_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    recorder = Recorder(httpx.Response(200, json=[]))
    monkeypatch.setenv("ZOOTRAIN_TOKEN", f"  {TOKEN}\n")  # as `$(cat var/token)` might give it
    with client(recorder) as c:
        assert c.has_token
        c.workers()
    with Client(URL, token="zt_given", transport=httpx.MockTransport(recorder)) as c:
        c.workers()  # an explicit token wins
    with Client(URL, token="", transport=httpx.MockTransport(recorder)) as c:
        assert not c.has_token
        c.workers()  # "" sends none, whatever the environment says
    monkeypatch.delenv("ZOOTRAIN_TOKEN")
    with client(recorder) as c:
        assert not c.has_token
        c.workers()
    assert [r.headers.get("Authorization") for r in recorder.requests] == [
        f"Bearer {TOKEN}",
        "Bearer zt_given",
        None,
        None,
    ]


@pytest.mark.parametrize("status", [401, 403])
def test_401_and_403_are_not_retried_and_carry_the_problem(status: int) -> None:
    detail = {401: "the bearer token is not valid", 403: "token 'ci' lacks the 'submit' scope"}
    recorder = Recorder(problem(status, detail[status], **{"WWW-Authenticate": "Bearer"}))
    with Client(URL, token=TOKEN, retry=FAST, transport=httpx.MockTransport(recorder)) as c:
        with pytest.raises(ZootrainError) as caught:
            c.submit(job()["spec"])  # idempotent, so retried on a 503: not on these
        with pytest.raises(ZootrainError):
            list(c.events(JOB_ID))
    assert caught.value.status == status and caught.value.detail == detail[status]
    assert len(recorder.requests) == 2  # one each


def test_the_token_stays_out_of_reprs_and_errors() -> None:
    recorder = Recorder(problem(401, "the bearer token is not valid"))
    with Client(URL, token=TOKEN, retry=FAST, transport=httpx.MockTransport(recorder)) as c:
        with pytest.raises(ZootrainError) as caught:
            c.models()
        shown = [repr(c), str(c), repr(vars(c)), repr(c._http.headers), repr(c._http.auth)]
    assert repr(c) == f"Client('{URL}', token=<hidden>)"
    shown += [str(caught.value), repr(caught.value), repr(caught.value.__dict__)]
    assert not [text for text in shown if TOKEN in text]


@pytest.mark.parametrize("bad", ["zt_two words", "zt_line\nbreak", "zt_ünïcode"])
def test_an_unusable_token_is_refused_without_quoting_it(bad: str) -> None:
    with pytest.raises(ValueError) as caught:
        Client(URL, token=bad)
    assert bad.strip() not in str(caught.value) and "token" in str(caught.value)


# -- the async client shares the behaviour -----------------------------------------------------


def test_async_client_retries_and_resumes_events() -> None:
    streams = [
        httpx.Response(
            200, stream=AsyncDropping(sse(("job", 10, job("running")))), headers=SSE_HEADERS
        ),
        httpx.Response(200, content=sse(("job", 12, job("succeeded"))), headers=SSE_HEADERS),
    ]
    requests: list[httpx.Request] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        if request.url.path.endswith("/events"):
            return streams.pop(0)
        if len([r for r in requests if not r.url.path.endswith("/events")]) == 1:
            return problem(503, "busy", **{"Retry-After": "0"})
        return httpx.Response(200, json=job("succeeded"))

    async def main() -> tuple[list[str], JobState]:
        async with AsyncClient(URL, retry=FAST, transport=httpx.MockTransport(handler)) as c:
            ids = [e.event_id async for e in c.events(JOB_ID)]
            view = await c.get_job(JOB_ID)
            return ids, view.state

    ids, state = asyncio.run(main())
    assert ids == ["10", "12"]
    assert state == JobState.succeeded
    event_requests = [r for r in requests if r.url.path.endswith("/events")]
    assert event_requests[1].headers["Last-Event-ID"] == "10"
    assert len(requests) == 4  # two streams, then a 503 and its retry


def test_async_wait_follows_events_then_reads_the_job() -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/events"):
            body = sse(("shard", 4, shard(0, "done")), ("job", 5, job("cancelled")))
            return httpx.Response(200, content=body, headers=SSE_HEADERS)
        return httpx.Response(200, json=job("cancelled"))

    async def main() -> JobState:
        async with AsyncClient(URL, retry=FAST, transport=httpx.MockTransport(handler)) as c:
            return (await c.wait(JOB_ID, timeout=5)).state

    assert asyncio.run(main()) == JobState.cancelled


def test_async_client_raises_problems() -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        return problem(409, "job already finished (succeeded)")

    async def main() -> None:
        async with AsyncClient(URL, retry=FAST, transport=httpx.MockTransport(handler)) as c:
            await c.cancel(JOB_ID)

    with pytest.raises(ZootrainError) as caught:
        asyncio.run(main())
    assert caught.value.status == 409


# -- the CLI's input parsing -------------------------------------------------------------------


def test_param_values_are_json_or_plain_strings() -> None:
    assert cli_submit.parse_params(
        ["n_estimators=50", "max_features=sqrt", "max_depth=null", "b=0.5"]
    ) == {
        "n_estimators": 50,
        "max_features": "sqrt",
        "max_depth": None,
        "b": 0.5,
    }
    with pytest.raises(typer.BadParameter):
        cli_submit.parse_params(["n_estimators"])


def test_spec_file_and_flags_merge(tmp_path: Path) -> None:
    spec_file = tmp_path / "job.yaml"
    spec_file.write_text(
        "model_name: a\nalgorithm: random_forest_classifier\n"
        "dataset: {kind: builtin, name: iris}\nparams: {n_estimators: 5, max_depth: 3}\n"
    )
    spec = cli_submit.build_spec(spec_file, "b", None, "wine", 3, ["max_depth=4"])
    assert spec == {
        "model_name": "b",
        "algorithm": "random_forest_classifier",
        "dataset": {"kind": "builtin", "name": "wine"},
        "params": {"n_estimators": 5, "max_depth": 4},
        "shards": 3,
    }
    with pytest.raises(typer.BadParameter, match="--algorithm"):
        cli_submit.build_spec(None, "b", None, "iris", None, [])


def test_csv_header_row_is_detected(tmp_path: Path) -> None:
    with_header = tmp_path / "h.csv"
    with_header.write_text("sepal length,sepal width\n5.1,3.5\n\n6.7,3.0\n")
    assert cli_models.read_rows(with_header) == [[5.1, 3.5], [6.7, 3.0]]
    plain = tmp_path / "p.csv"
    plain.write_text("5.1,3.5\n-1e3,0\n")
    assert cli_models.read_rows(plain) == [[5.1, 3.5], [-1000.0, 0.0]]
    bad = tmp_path / "b.csv"
    bad.write_text("5.1,3.5\n6.7,oops\n")
    with pytest.raises(typer.BadParameter, match="oops"):
        cli_models.read_rows(bad)


@pytest.mark.parametrize(
    "argv",
    [
        ["submit"],  # neither a spec file nor flags
        ["submit", "--model-name", "m", "--algorithm", "a", "--dataset", "iris", "-p", "oops"],
        ["submit", "missing.yaml"],
        ["list", "--state", "sleeping"],
        ["list", "--limit", "0"],
        ["models", "--version", "1"],  # a version of which model?
        ["predict", "m"],  # no --csv
        ["status"],
    ],
)
def test_usage_errors_exit_2_before_any_request(argv: list[str], tmp_path: Path) -> None:
    result = CliRunner().invoke(cli.app, [*argv, "--url", "http://127.0.0.1:9"])
    assert result.exit_code == 2, result.output


def test_a_bad_csv_is_a_usage_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("1,2\n3,x\n")
    result = CliRunner().invoke(cli.app, ["predict", "m", "--csv", str(bad)])
    assert result.exit_code == 2 and "'x'" in result.output
