"""A Python client for the zootrain job service: ``Client`` (sync) and ``AsyncClient``.

Both speak the REST API of docs/api.md and return the pydantic models the service itself uses
(``zootrain.records``, ``zootrain.views``). What the two share is plain code: each endpoint is
described once as a ``_Call`` (method, path, body, how to parse the answer), retry decisions are
made once by ``RetryPolicy``, problem+json is parsed once, and Server-Sent Events are decoded
once by ``_SSEDecoder``; only the sending, sleeping and streaming loops exist twice.

Retries: idempotent calls (GET, DELETE, and ``POST /v1/jobs``, which always carries an
``Idempotency-Key``) are retried on connection errors and on 502/503/504 with exponential
backoff; any call is retried when the connection could not be made at all or when the service
answered 429. ``Retry-After`` is honoured on 429 and 503. A 401 or 403 is never retried.

Authentication: a ``token`` (default: ``$ZOOTRAIN_TOKEN``) is sent as ``Authorization: Bearer``
on every request, event streams and downloads included. It is kept out of every repr, str and
error message.
"""

from __future__ import annotations

import contextlib
import email.utils
import functools
import hashlib
import io
import json
import os
import random
import time
import uuid
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Callable,
    Generator,
    Iterator,
    Mapping,
    Sequence,
)
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Generic, TypeVar

import anyio
import httpx
from pydantic import TypeAdapter

from zootrain import __version__
from zootrain.errors import ZootrainError as _DomainError
from zootrain.records import (
    TRUSTED,
    JobRecord,
    JobSpec,
    JobState,
    ShardRecord,
    VersionRecord,
    WorkerRecord,
)
from zootrain.views import JobList, JobView, ModelSummary, PredictResponse, Status

__all__ = [
    "DEFAULT_URL",
    "AsyncClient",
    "ChecksumMismatch",
    "Client",
    "Event",
    "JobEvent",
    "RetryPolicy",
    "ShardEvent",
    "ZootrainError",
]

DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=5.0)
# The service sends a keep-alive comment every 15 s: a stream silent for much longer is dead.
STREAM_READ_TIMEOUT = 60.0
RETRY_STATUSES = frozenset({502, 503, 504})

T = TypeVar("T")


# -- errors ------------------------------------------------------------------------------------


class ZootrainError(_DomainError):
    """The service answered with an error: an RFC 9457 problem (or something it stands for)."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        *,
        type: str = "about:blank",
        instance: str | None = None,
        errors: list[dict[str, Any]] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.type = type
        self.instance = instance
        self.errors = errors
        self.retry_after = retry_after

    def __str__(self) -> str:
        return f"{self.status} {self.title}: {self.detail}"

    def __repr__(self) -> str:
        return f"ZootrainError({self.status!r}, {self.title!r}, {self.detail!r})"

    @classmethod
    def from_response(cls, response: httpx.Response) -> ZootrainError:
        """Parse a problem+json body; anything else (a proxy's HTML page) becomes a problem too."""
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        status = response.status_code
        body: Any = None
        with contextlib.suppress(ValueError, UnicodeDecodeError):
            body = response.json()
        if isinstance(body, dict) and ("detail" in body or "title" in body):
            errors = body.get("errors")
            return cls(
                int(body.get("status") or status),
                str(body.get("title") or response.reason_phrase or "Error"),
                str(body.get("detail") or body.get("title") or ""),
                type=str(body.get("type") or "about:blank"),
                instance=body.get("instance") if isinstance(body.get("instance"), str) else None,
                errors=errors if isinstance(errors, list) else None,
                retry_after=retry_after,
            )
        text = " ".join(response.text.split())[:200] if response.content else ""
        title = response.reason_phrase or "Error"
        return cls(status, title, text or title, retry_after=retry_after)


class ChecksumMismatch(ZootrainError):
    """A downloaded artifact does not match the sha256 the service announced for it."""


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds from now: delay-seconds or an HTTP-date; None if absent/bad."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


# -- retries -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    """When to retry a call and how long to wait first.

    ``delay`` answers for one failed attempt (0 = the first): seconds to sleep, or None to give
    up. Backoff is ``backoff * 2**attempt`` capped at ``max_backoff``, with "equal jitter" (a
    random half of it) unless ``jitter`` is off. A ``Retry-After`` longer than
    ``max_retry_after`` is not waited for: the error is raised instead.
    """

    retries: int = 3
    backoff: float = 0.5
    max_backoff: float = 8.0
    max_retry_after: float = 60.0
    jitter: bool = True

    def backoff_delay(self, attempt: int) -> float:
        delay = min(self.max_backoff, self.backoff * 2.0**attempt)
        return delay / 2 + random.uniform(0, delay / 2) if self.jitter else delay

    def delay(
        self,
        attempt: int,
        *,
        idempotent: bool,
        response: httpx.Response | None = None,
        error: BaseException | None = None,
    ) -> float | None:
        if attempt >= self.retries:
            return None
        if error is not None:
            # A connection that was never made carried no request: safe for any call.
            unsent = isinstance(
                error, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout
            )
            if isinstance(error, httpx.TransportError) and (idempotent or unsent):
                return self.backoff_delay(attempt)
            return None
        if response is None:
            return None
        status = response.status_code
        if status == 429 or (idempotent and status in RETRY_STATUSES):
            retry_after = (
                parse_retry_after(response.headers.get("Retry-After"))
                if status in (429, 503)
                else None
            )
            if retry_after is None:
                return self.backoff_delay(attempt)
            return retry_after if retry_after <= self.max_retry_after else None
        return None


# -- events ------------------------------------------------------------------------------------


class JobEvent(JobRecord):
    """``event: job``: the job record after a change; ``event_id`` is ``<zxid>-<node>``."""

    event_id: str


class ShardEvent(ShardRecord):
    """``event: shard``: one shard record (with its job's id) after a change."""

    job_id: str
    event_id: str


def event_position(event_id: str) -> tuple[int, int] | None:
    """The order of an event id ``<zxid>-<node>`` (a bare ``<zxid>`` is node 0)."""
    zxid, _, node = event_id.partition("-")
    try:
        return int(zxid), int(node or 0)
    except ValueError:
        return None


Event = JobEvent | ShardEvent


@dataclass
class _RawEvent:
    event: str = "message"
    data: str = ""
    id: str | None = None


class _SSEDecoder:
    """Incremental ``text/event-stream`` parser (WHATWG rules), fed one line at a time."""

    def __init__(self) -> None:
        self._event = ""
        self._data: list[str] = []
        self._id: str | None = None
        self.last_id: str | None = None

    def feed(self, line: str) -> _RawEvent | None:
        if line == "":
            if not self._data and not self._event:
                self._id = None
                return None
            event = _RawEvent(self._event or "message", "\n".join(self._data), self._id)
            self._event, self._data, self._id = "", [], None
            return event
        if line.startswith(":"):
            return None  # a comment: keep-alive
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id" and "\0" not in value:
            self._id = self.last_id = value
        return None


@dataclass
class _EventCursor:
    """Where a (possibly reconnected) event stream is: its last event id and whether it ended."""

    last_id: str | None = None
    done: bool = False

    def accept(self, raw: _RawEvent) -> Event | None:
        """The typed event, or None for an unknown kind or one already seen (by id)."""
        position = event_position(raw.id) if raw.id is not None else None
        if raw.id is None or position is None:
            return None
        event_id = raw.id
        last = event_position(self.last_id) if self.last_id is not None else None
        if last is not None and position <= last:
            return None  # a repeat: the stream is resumable by id, so never yield one twice
        event: Event
        if raw.event == "job":
            event = JobEvent.model_validate(
                {**json.loads(raw.data), "event_id": event_id}, context=TRUSTED
            )
            self.done = event.state.terminal
        elif raw.event == "shard":
            event = ShardEvent.model_validate(
                {**json.loads(raw.data), "event_id": event_id}, context=TRUSTED
            )
        else:
            self.last_id = event_id
            return None
        self.last_id = event_id
        return event

    def headers(self) -> dict[str, str]:
        return {"Last-Event-ID": str(self.last_id)} if self.last_id is not None else {}


# -- calls: what each endpoint sends and how its answer is read ---------------------------------


@functools.cache
def _model(kind: type[T]) -> Callable[[httpx.Response], T]:
    """The parser of a JSON answer into ``kind`` (built once per type)."""
    adapter = TypeAdapter(kind)

    def parse(response: httpx.Response) -> T:
        # The service validated every job it answers with at submit: its answers are not
        # checked against scikit-learn again here (which would also import it in the client).
        return adapter.validate_json(response.content, context=TRUSTED)

    return parse


def _json(response: httpx.Response) -> Any:
    return response.json()


@dataclass(frozen=True)
class _Call(Generic[T]):
    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    params: Mapping[str, Any] | None = None
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    files: Mapping[str, tuple[str, BinaryIO, str]] | None = None
    data: Mapping[str, str] | None = None  # form fields sent with ``files``
    idempotent: bool = False
    retry: bool = True


def _get(path: str, parse: Callable[[httpx.Response], T], **params: Any) -> _Call[T]:
    query = {k: v for k, v in params.items() if v is not None}
    return _Call("GET", path, parse, params=query or None, idempotent=True)


def _spec_body(spec: JobSpec | Mapping[str, Any]) -> Any:
    # A JobSpec was validated here already; a mapping is sent as is, and the service, which
    # has the final word, answers a problem naming what is wrong.
    return spec.model_dump(mode="json") if isinstance(spec, JobSpec) else dict(spec)


def _instances(rows: Sequence[Sequence[float]] | Any) -> list[list[float]]:
    return [[float(value) for value in row] for row in rows]


class _Calls:
    """Every endpoint of API version 1, as data."""

    @staticmethod
    def submit(spec: JobSpec | Mapping[str, Any], idempotency_key: str | None) -> _Call[JobView]:
        key = idempotency_key or str(uuid.uuid4())
        return _Call(
            "POST",
            "/v1/jobs",
            _model(JobView),
            body=_spec_body(spec),
            headers={"Idempotency-Key": key},
            idempotent=True,  # the key makes a repeat return the same job
        )

    @staticmethod
    def get_job(job_id: str) -> _Call[JobView]:
        return _get(f"/v1/jobs/{_segment(job_id)}", _model(JobView))

    @staticmethod
    def list_jobs(
        state: JobState | str | None, limit: int | None, cursor: str | None
    ) -> _Call[JobList]:
        return _get("/v1/jobs", _model(JobList), state=state, limit=limit, cursor=cursor)

    @staticmethod
    def cancel(job_id: str) -> _Call[JobView]:
        return _Call("DELETE", f"/v1/jobs/{_segment(job_id)}", _model(JobView), idempotent=True)

    @staticmethod
    def events(job_id: str, cursor: _EventCursor) -> _Call[None]:
        return _Call(
            "GET",
            f"/v1/jobs/{_segment(job_id)}/events",
            lambda _: None,
            headers={"Accept": "text/event-stream", **cursor.headers()},
            idempotent=True,
        )

    @staticmethod
    def models() -> _Call[list[ModelSummary]]:
        return _get("/v1/models", _model(list[ModelSummary]))

    @staticmethod
    def versions(name: str) -> _Call[list[VersionRecord]]:
        return _get(f"/v1/models/{_segment(name)}/versions", _model(list[VersionRecord]))

    @staticmethod
    def version(name: str, version: int) -> _Call[VersionRecord]:
        return _get(f"/v1/models/{_segment(name)}/versions/{int(version)}", _model(VersionRecord))

    @staticmethod
    def artifact(name: str, version: int) -> _Call[None]:
        path = f"/v1/models/{_segment(name)}/versions/{int(version)}/artifact"
        return _get(path, lambda _: None)

    @staticmethod
    def delete_model(name: str, version: int | None) -> _Call[None]:
        path = f"/v1/models/{_segment(name)}"
        if version is not None:
            path += f"/versions/{int(version)}"
        return _Call("DELETE", path, lambda _: None, idempotent=True)

    @staticmethod
    def predict(
        name: str, instances: Sequence[Sequence[float]] | Any, version: int | None
    ) -> _Call[PredictResponse]:
        body: dict[str, Any] = {"instances": _instances(instances)}
        if version is not None:
            body["version"] = version
        return _Call(
            "POST", f"/v1/models/{_segment(name)}/predict", _model(PredictResponse), body=body
        )

    @staticmethod
    def workers() -> _Call[list[WorkerRecord]]:
        return _get("/v1/workers", _model(list[WorkerRecord]))

    @staticmethod
    def health() -> _Call[Status]:
        return _Call("GET", "/healthz", _model(Status), idempotent=True, retry=False)

    @staticmethod
    def ready() -> _Call[Status]:
        return _Call("GET", "/readyz", _model(Status), idempotent=True, retry=False)

    @staticmethod
    def openapi() -> _Call[Any]:
        return _get("/openapi.json", _json)

    @staticmethod
    def upload_dataset(path: Path, file: BinaryIO, name: str | None) -> _Call[Any]:
        # Streamed from the open file (httpx rewinds it for every attempt).
        files = {"file": (path.name, file, _media_type(path))}
        return _Call(
            "POST", "/v1/datasets", _json, files=files, data={"name": name} if name else None
        )

    @staticmethod
    def list_datasets(limit: int | None, cursor: str | None) -> _Call[Any]:
        return _get("/v1/datasets", _json, limit=limit, cursor=cursor)

    @staticmethod
    def get_dataset(dataset_id: str) -> _Call[Any]:
        return _get(f"/v1/datasets/{_segment(dataset_id)}", _json)


def _media_type(path: Path) -> str:
    return {".csv": "text/csv", ".parquet": "application/vnd.apache.parquet"}.get(
        path.suffix.lower(), "application/octet-stream"
    )


def _segment(value: str) -> str:
    """A path segment: ids and names must not smuggle in another path."""
    if not value or "/" in value or value in (".", ".."):
        raise ValueError(f"invalid path segment {value!r}")
    return value


def _unavailable(what: str, error: ZootrainError, openapi: Any) -> ZootrainError:
    paths = openapi.get("paths", {}) if isinstance(openapi, dict) else {}
    if "/v1/datasets" in paths:
        return error
    return ZootrainError(
        error.status,
        "Not available",
        f"{what} is not available on this server (its API has no /v1/datasets)",
    )


def _download_target(path: str | os.PathLike[str], name: str, version: int) -> Path:
    """``path`` itself, or a file named after the version in it if it is a directory (or ends
    with a separator: then it is created)."""
    target = Path(path)
    if str(os.fspath(path)).endswith(("/", os.sep)):
        target.mkdir(parents=True, exist_ok=True)
    return target / f"{name}-v{version}.skops" if target.is_dir() else target


def _expected_sha256(response: httpx.Response) -> str:
    expected: str | None = response.headers.get("X-Content-SHA256")
    if not expected:
        raise ChecksumMismatch(
            response.status_code,
            "Checksum missing",
            f"{response.url.path} came without an X-Content-SHA256 header; refusing to trust it",
        )
    return expected.strip().lower()


def _check_sha256(response: httpx.Response, expected: str, actual: str) -> None:
    if actual != expected:
        raise ChecksumMismatch(
            response.status_code,
            "Checksum mismatch",
            f"{response.url.path}: downloaded sha256 {actual} but the service announced {expected}",
        )


def _timeout(base: httpx.Timeout, deadline: float | None, *, stream: bool = False) -> httpx.Timeout:
    read = STREAM_READ_TIMEOUT if stream else base.read
    if deadline is None:
        return httpx.Timeout(connect=base.connect, read=read, write=base.write, pool=base.pool)
    left = max(0.001, deadline - time.monotonic())

    def cap(value: float | None) -> float:
        return left if value is None else min(value, left)

    return httpx.Timeout(
        connect=cap(base.connect), read=cap(read), write=cap(base.write), pool=cap(base.pool)
    )


def _stream_ended(job_id: str, times: int) -> ZootrainError:
    # Not an HTTP error: each answer was a 200 whose stream stopped before the job did.
    return ZootrainError(
        0,
        "Event stream ended early",
        f"the event stream of job {job_id} ended {times} times in a row without a new event "
        "before the job finished (the service's log may say why)",
    )


def _deadline(timeout: float | None) -> float | None:
    return None if timeout is None else time.monotonic() + timeout


def _check_deadline(deadline: float | None, delay: float, what: str) -> None:
    if deadline is not None and time.monotonic() + delay >= deadline:
        raise TimeoutError(f"timed out waiting for {what}")


class _BearerAuth(httpx.Auth):
    """``Authorization: Bearer <token>`` on every request; its repr never shows the token."""

    def __init__(self, token: str) -> None:
        self._header = f"Bearer {token}"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = self._header
        yield request

    def __repr__(self) -> str:
        return "_BearerAuth(<hidden>)"


def _resolve_token(token: str | None) -> str | None:
    """The token to send: ``token`` if given (``""``: none), else ``$ZOOTRAIN_TOKEN``."""
    value = (token if token is not None else os.environ.get("ZOOTRAIN_TOKEN", "")).strip()
    if not value:
        return None
    # Checked here, so that no HTTP library error quotes the header (and the token in it).
    if not all(33 <= ord(char) < 127 for char in value):
        raise ValueError(
            "the API token contains spaces, control or non-ASCII characters, which a token "
            "never has (check ZOOTRAIN_TOKEN or the token you passed)"
        )
    return value


class _Base:
    def __init__(
        self,
        base_url: str | None,
        timeout: float | httpx.Timeout,
        retry: RetryPolicy | None,
        token: str | None,
    ) -> None:
        self.base_url = (base_url or os.environ.get("ZOOTRAIN_URL") or DEFAULT_URL).rstrip("/")
        self.timeout = timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)
        self.retry = retry or RetryPolicy()
        self.headers = {"User-Agent": f"zootrain-client/{__version__}"}
        resolved = _resolve_token(token)
        self._auth = _BearerAuth(resolved) if resolved is not None else None

    @property
    def has_token(self) -> bool:
        """Whether requests carry an API token (the token itself is not readable back)."""
        return self._auth is not None

    def __repr__(self) -> str:
        token = ", token=<hidden>" if self._auth is not None else ""
        return f"{type(self).__name__}({self.base_url!r}{token})"

    def _request_kwargs(
        self, call: _Call[Any], deadline: float | None, stream: bool = False
    ) -> dict[str, Any]:
        return {
            "method": call.method,
            "url": call.path,
            "params": call.params,
            "json": call.body,
            "files": call.files,
            "data": call.data,
            "headers": dict(call.headers),
            "timeout": _timeout(self.timeout, deadline, stream=stream),
        }

    def _delay(
        self,
        call: _Call[Any],
        attempt: int,
        *,
        response: httpx.Response | None = None,
        error: BaseException | None = None,
    ) -> float | None:
        if not call.retry:
            return None
        return self.retry.delay(attempt, idempotent=call.idempotent, response=response, error=error)


# -- the sync client ---------------------------------------------------------------------------


class Client(_Base):
    """``Client("http://host:8000")``, or ``$ZOOTRAIN_URL``, or http://127.0.0.1:8000.

    ``token`` is the API token sent as ``Authorization: Bearer`` (default: ``$ZOOTRAIN_TOKEN``;
    ``""`` sends none).
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        token: str | None = None,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(base_url, timeout, retry, token)
        self._http = httpx.Client(
            base_url=self.base_url,
            headers=self.headers,
            auth=self._auth,
            transport=transport,
            timeout=self.timeout,
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- plumbing

    def _send(
        self, call: _Call[Any], *, stream: bool = False, deadline: float | None = None
    ) -> httpx.Response:
        attempt = 0
        while True:
            request = self._http.build_request(**self._request_kwargs(call, deadline, stream))
            try:
                response = self._http.send(request, stream=stream)
            except httpx.TransportError as exc:
                delay = self._delay(call, attempt, error=exc)
                if delay is None:
                    raise
            else:
                if response.is_success:
                    return response
                if stream:
                    response.read()
                response.close()
                delay = self._delay(call, attempt, response=response)
                if delay is None:
                    raise ZootrainError.from_response(response)
            _check_deadline(deadline, delay, f"{call.method} {call.path}")
            time.sleep(delay)
            attempt += 1

    def _run(self, call: _Call[T]) -> T:
        return call.parse(self._send(call))

    # -- jobs

    def submit(
        self, spec: JobSpec | Mapping[str, Any], idempotency_key: str | None = None
    ) -> JobView:
        """Submit a job; retried safely under one Idempotency-Key (a fresh uuid4 by default)."""
        return self._run(_Calls.submit(spec, idempotency_key))

    def get_job(self, job_id: str) -> JobView:
        return self._run(_Calls.get_job(job_id))

    def list_jobs(
        self,
        state: JobState | str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> JobList:
        """One page of jobs, newest first; pass ``next_cursor`` as ``cursor`` for the next."""
        return self._run(_Calls.list_jobs(state, limit, cursor))

    def iter_jobs(
        self, state: JobState | str | None = None, page_size: int | None = None
    ) -> Iterator[JobRecord]:
        """Every job, newest first, fetching pages as needed."""
        cursor: str | None = None
        while True:
            page = self.list_jobs(state, page_size, cursor)
            yield from page.items
            if page.next_cursor is None or not page.items:
                return
            cursor = page.next_cursor

    def cancel(self, job_id: str) -> JobView:
        return self._run(_Calls.cancel(job_id))

    def delete_model(self, name: str, version: int | None = None) -> None:
        """Delete one version of a model, or all of them (needs a token with ``admin``)."""
        self._run(_Calls.delete_model(name, version))

    def events(
        self, job_id: str, *, last_event_id: str | None = None, timeout: float | None = None
    ) -> Iterator[Event]:
        """The job's changes as they happen, ending after its terminal job event.

        A dropped connection is resumed with ``Last-Event-ID``: no event is missed or repeated.
        Pass an event's ``event_id`` as ``last_event_id`` to resume a stream you stopped.
        Raises TimeoutError when ``timeout`` seconds pass before the end.
        """
        return self._events(job_id, _EventCursor(last_event_id), _deadline(timeout))

    def _events(self, job_id: str, cursor: _EventCursor, deadline: float | None) -> Iterator[Event]:
        failures = 0
        while not cursor.done:
            call = _Calls.events(job_id, cursor)
            received = False
            error: BaseException | None = None
            response = self._send(call, stream=True, deadline=deadline)
            try:
                decoder = _SSEDecoder()
                for line in response.iter_lines():
                    raw = decoder.feed(line)
                    event = cursor.accept(raw) if raw is not None else None
                    if event is not None:
                        received, failures = True, 0
                        yield event
                        if cursor.done:
                            return
            except httpx.TransportError as exc:  # the connection dropped mid-stream
                _check_deadline(deadline, 0, f"events of job {job_id}")
                error = exc
            finally:
                response.close()
            if not received and error is None and self.get_job(job_id).state.terminal:
                return  # the stream ended at once: its end was seen before (Last-Event-ID)
            delay = self.retry.delay(failures, idempotent=True, error=error or httpx.ReadError(""))
            if delay is None:
                raise error or _stream_ended(job_id, failures + 1)
            _check_deadline(deadline, delay, f"events of job {job_id}")
            time.sleep(delay)
            failures += 1

    def wait(self, job_id: str, timeout: float | None = None) -> JobView:
        """Follow the job's events until it is terminal; then the job with its shards.

        Raises TimeoutError when ``timeout`` seconds pass first.
        """
        for _ in self._events(job_id, _EventCursor(), _deadline(timeout)):
            pass
        return self.get_job(job_id)

    # -- models

    def models(self) -> list[ModelSummary]:
        return self._run(_Calls.models())

    def versions(self, name: str) -> list[VersionRecord]:
        return self._run(_Calls.versions(name))

    def version(self, name: str, version: int) -> VersionRecord:
        return self._run(_Calls.version(name, version))

    def download_artifact(self, name: str, version: int, path: str | os.PathLike[str]) -> Path:
        """Save the version's model file at ``path`` (a file, or a directory to put it in).

        The bytes are checked against the ``X-Content-SHA256`` header before the file appears;
        a mismatch raises ChecksumMismatch and leaves nothing behind.
        """
        target = _download_target(path, name, version)
        partial = target.with_name(target.name + ".part")
        response = self._send(_Calls.artifact(name, version), stream=True)
        try:
            expected = _expected_sha256(response)
            digest = hashlib.sha256()
            try:
                with partial.open("wb") as out:
                    for chunk in response.iter_bytes():
                        digest.update(chunk)
                        out.write(chunk)
                _check_sha256(response, expected, digest.hexdigest())
            except BaseException:
                partial.unlink(missing_ok=True)
                raise
        finally:
            response.close()
        partial.replace(target)
        return target

    def predict(
        self,
        name: str,
        instances: Sequence[Sequence[float]] | Any,
        version: int | None = None,
    ) -> PredictResponse:
        return self._run(_Calls.predict(name, instances, version))

    # -- service

    def workers(self) -> list[WorkerRecord]:
        return self._run(_Calls.workers())

    def health(self) -> Status:
        return self._run(_Calls.health())

    def ready(self) -> Status:
        """Status "ready"; ZootrainError(503) while the service has no ZooKeeper session."""
        return self._run(_Calls.ready())

    def openapi(self) -> dict[str, Any]:
        """The service's OpenAPI document (what this server offers)."""
        document: dict[str, Any] = self._run(_Calls.openapi())
        return document

    # -- datasets (only on servers that have /v1/datasets)

    def upload_dataset(self, path: str | os.PathLike[str], name: str | None = None) -> Any:
        """Upload a CSV or Parquet file; the dataset record (JSON) the service made of it."""
        with Path(path).open("rb") as file:
            call = _Calls.upload_dataset(Path(path), file, name)
            return self._datasets("uploading datasets", call)

    def list_datasets(self, limit: int | None = None, cursor: str | None = None) -> Any:
        return self._datasets("listing datasets", _Calls.list_datasets(limit, cursor))

    def get_dataset(self, dataset_id: str) -> Any:
        return self._datasets("datasets", _Calls.get_dataset(dataset_id))

    def _datasets(self, what: str, call: _Call[Any]) -> Any:
        try:
            return self._run(call)
        except ZootrainError as error:
            if error.status not in (404, 405):
                raise
            raise _unavailable(what, error, self.openapi()) from None


# -- the async client --------------------------------------------------------------------------


class AsyncClient(_Base):
    """The same API as ``Client``, with ``await`` (and ``async for`` over ``events``)."""

    def __init__(
        self,
        base_url: str | None = None,
        *,
        token: str | None = None,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(base_url, timeout, retry, token)
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            headers=self.headers,
            auth=self._auth,
            transport=transport,
            timeout=self.timeout,
        )

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- plumbing

    async def _send(
        self, call: _Call[Any], *, stream: bool = False, deadline: float | None = None
    ) -> httpx.Response:
        attempt = 0
        while True:
            request = self._http.build_request(**self._request_kwargs(call, deadline, stream))
            try:
                response = await self._http.send(request, stream=stream)
            except httpx.TransportError as exc:
                delay = self._delay(call, attempt, error=exc)
                if delay is None:
                    raise
            else:
                if response.is_success:
                    return response
                if stream:
                    await response.aread()
                await response.aclose()
                delay = self._delay(call, attempt, response=response)
                if delay is None:
                    raise ZootrainError.from_response(response)
            _check_deadline(deadline, delay, f"{call.method} {call.path}")
            await anyio.sleep(delay)
            attempt += 1

    async def _run(self, call: _Call[T]) -> T:
        return call.parse(await self._send(call))

    # -- jobs

    async def submit(
        self, spec: JobSpec | Mapping[str, Any], idempotency_key: str | None = None
    ) -> JobView:
        """Submit a job; retried safely under one Idempotency-Key (a fresh uuid4 by default)."""
        return await self._run(_Calls.submit(spec, idempotency_key))

    async def get_job(self, job_id: str) -> JobView:
        return await self._run(_Calls.get_job(job_id))

    async def list_jobs(
        self,
        state: JobState | str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> JobList:
        return await self._run(_Calls.list_jobs(state, limit, cursor))

    async def iter_jobs(
        self, state: JobState | str | None = None, page_size: int | None = None
    ) -> AsyncIterator[JobRecord]:
        cursor: str | None = None
        while True:
            page = await self.list_jobs(state, page_size, cursor)
            for item in page.items:
                yield item
            if page.next_cursor is None or not page.items:
                return
            cursor = page.next_cursor

    async def cancel(self, job_id: str) -> JobView:
        return await self._run(_Calls.cancel(job_id))

    async def delete_model(self, name: str, version: int | None = None) -> None:
        """See ``Client.delete_model``."""
        await self._run(_Calls.delete_model(name, version))

    def events(
        self, job_id: str, *, last_event_id: str | None = None, timeout: float | None = None
    ) -> AsyncIterator[Event]:
        """See ``Client.events``."""
        return self._events(job_id, _EventCursor(last_event_id), _deadline(timeout))

    async def _events(
        self, job_id: str, cursor: _EventCursor, deadline: float | None
    ) -> AsyncGenerator[Event, None]:
        failures = 0
        while not cursor.done:
            call = _Calls.events(job_id, cursor)
            received = False
            error: BaseException | None = None
            response = await self._send(call, stream=True, deadline=deadline)
            try:
                decoder = _SSEDecoder()
                async for line in response.aiter_lines():
                    raw = decoder.feed(line)
                    event = cursor.accept(raw) if raw is not None else None
                    if event is not None:
                        received, failures = True, 0
                        yield event
                        if cursor.done:
                            return
            except httpx.TransportError as exc:  # the connection dropped mid-stream
                _check_deadline(deadline, 0, f"events of job {job_id}")
                error = exc
            finally:
                await response.aclose()
            if not received and error is None and (await self.get_job(job_id)).state.terminal:
                return
            delay = self.retry.delay(failures, idempotent=True, error=error or httpx.ReadError(""))
            if delay is None:
                raise error or _stream_ended(job_id, failures + 1)
            _check_deadline(deadline, delay, f"events of job {job_id}")
            await anyio.sleep(delay)
            failures += 1

    async def wait(self, job_id: str, timeout: float | None = None) -> JobView:
        """See ``Client.wait``."""
        events = self._events(job_id, _EventCursor(), _deadline(timeout))
        try:
            async for _ in events:
                pass
        finally:
            await events.aclose()
        return await self.get_job(job_id)

    # -- models

    async def models(self) -> list[ModelSummary]:
        return await self._run(_Calls.models())

    async def versions(self, name: str) -> list[VersionRecord]:
        return await self._run(_Calls.versions(name))

    async def version(self, name: str, version: int) -> VersionRecord:
        return await self._run(_Calls.version(name, version))

    async def download_artifact(
        self, name: str, version: int, path: str | os.PathLike[str]
    ) -> Path:
        """See ``Client.download_artifact``."""
        target = _download_target(path, name, version)
        partial = target.with_name(target.name + ".part")
        response = await self._send(_Calls.artifact(name, version), stream=True)
        try:
            expected = _expected_sha256(response)
            digest = hashlib.sha256()
            try:
                with partial.open("wb") as out:
                    async for chunk in response.aiter_bytes():
                        digest.update(chunk)
                        out.write(chunk)
                _check_sha256(response, expected, digest.hexdigest())
            except BaseException:
                partial.unlink(missing_ok=True)
                raise
        finally:
            await response.aclose()
        partial.replace(target)
        return target

    async def predict(
        self,
        name: str,
        instances: Sequence[Sequence[float]] | Any,
        version: int | None = None,
    ) -> PredictResponse:
        return await self._run(_Calls.predict(name, instances, version))

    # -- service

    async def workers(self) -> list[WorkerRecord]:
        return await self._run(_Calls.workers())

    async def health(self) -> Status:
        return await self._run(_Calls.health())

    async def ready(self) -> Status:
        return await self._run(_Calls.ready())

    async def openapi(self) -> dict[str, Any]:
        document: dict[str, Any] = await self._run(_Calls.openapi())
        return document

    # -- datasets

    async def upload_dataset(self, path: str | os.PathLike[str], name: str | None = None) -> Any:
        # Read off the event loop; httpx would read a file object with blocking calls.
        data = await anyio.Path(path).read_bytes()
        call = _Calls.upload_dataset(Path(path), io.BytesIO(data), name)
        return await self._datasets("uploading datasets", call)

    async def list_datasets(self, limit: int | None = None, cursor: str | None = None) -> Any:
        return await self._datasets("listing datasets", _Calls.list_datasets(limit, cursor))

    async def get_dataset(self, dataset_id: str) -> Any:
        return await self._datasets("datasets", _Calls.get_dataset(dataset_id))

    async def _datasets(self, what: str, call: _Call[Any]) -> Any:
        try:
            return await self._run(call)
        except ZootrainError as error:
            if error.status not in (404, 405):
                raise
            raise _unavailable(what, error, await self.openapi()) from None
