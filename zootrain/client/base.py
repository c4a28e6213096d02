"""What the two clients share around their calls: settings, authentication, deadlines and
timeouts, downloads' checksums, and the answers that stand for an older server."""

from __future__ import annotations

import os
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

import httpx

from zootrain import __version__
from zootrain.client.calls import _Call
from zootrain.client.errors import ChecksumMismatch, ZootrainError
from zootrain.client.retry import RetryPolicy

DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=5.0)
# The service sends a keep-alive comment every 15 s: a stream silent for much longer is dead.
STREAM_READ_TIMEOUT = 60.0


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
