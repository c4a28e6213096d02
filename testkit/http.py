"""A retrying HTTP client for tests and benchmarks that kill the job service under it."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Mapping
from typing import Any

import httpx

from testkit.auth import AUTH
from zootrain.client import parse_retry_after

# What a real client retries (zootrain.client does the same): a connection that failed or broke,
# and the statuses that say "not now" (a gateway's, or the job service's own 503 while
# ZooKeeper is away). A 500 says "bug": it is never retried, and it fails the test.
RETRY_STATUSES = frozenset({502, 503, 504})
MAX_RETRY_AFTER = 5.0  # seconds; a longer Retry-After is cut short (the deadline still holds)


class ServerError(AssertionError):
    """The job service answered a 5xx that is not a "retry later": a bug, whatever the outage."""


class RetryingClient:
    """A client that keeps answering through job-service restarts.

    Connection errors and 502/503/504 (after the ``Retry-After`` they carry) are retried, with
    the same Idempotency-Key for submits, against whatever ``url`` currently is: the caller swaps
    it when it starts a replacement service. Every status seen is counted in ``statuses`` and
    every connection error in ``errors``; any other 5xx raises ServerError at once.
    """

    def __init__(
        self,
        url: str,
        timeout: float = 10.0,
        *,
        headers: Mapping[str, str] = AUTH,
        deadline: float = 60.0,
    ) -> None:
        self._url = url
        self._lock = threading.Lock()
        self.timeout = timeout
        self.headers = dict(headers)
        self.deadline = deadline
        self.retries = 0
        # Every attempt: (monotonic start, seconds taken, status code or error name).
        self.attempts: list[tuple[float, float, int | str]] = []
        self.statuses: Counter[int] = Counter()
        self.errors: Counter[str] = Counter()  # connection errors by type

    @property
    def url(self) -> str:
        with self._lock:
            return self._url

    @url.setter
    def url(self, value: str) -> None:
        with self._lock:
            self._url = value

    def request(
        self, method: str, path: str, *, deadline: float | None = None, **kwargs: Any
    ) -> httpx.Response:
        limit = time.monotonic() + (self.deadline if deadline is None else deadline)
        kwargs["headers"] = {**self.headers, **kwargs.get("headers", {})}
        while True:
            wait = 0.1
            started = time.monotonic()
            try:
                response = httpx.request(method, self.url + path, timeout=self.timeout, **kwargs)
            except httpx.TransportError as exc:
                with self._lock:
                    self.errors[type(exc).__name__] += 1
                    self.attempts.append((started, time.monotonic() - started, type(exc).__name__))
                error = repr(exc)
            else:
                with self._lock:
                    self.statuses[response.status_code] += 1
                    self.attempts.append(
                        (started, time.monotonic() - started, response.status_code)
                    )
                if response.status_code >= 500 and response.status_code not in RETRY_STATUSES:
                    raise ServerError(
                        f"{method} {path}: {response.status_code} {response.text[:500]}"
                    )
                if response.status_code not in RETRY_STATUSES:
                    return response
                error = f"{response.status_code} {response.text[:200]}"
                after = parse_retry_after(response.headers.get("Retry-After"))
                wait = min(after, MAX_RETRY_AFTER) if after is not None else wait
            if time.monotonic() + wait > limit:
                raise TimeoutError(f"{method} {path} kept failing: {error}")
            with self._lock:
                self.retries += 1
            time.sleep(wait)

    def submit(self, spec: dict[str, Any], key: str, **kwargs: Any) -> httpx.Response:
        return self.request(
            "POST", "/v1/jobs", json=spec, headers={"Idempotency-Key": key}, **kwargs
        )

    def server_errors(self) -> dict[int, int]:
        """Every 5xx seen, retried or not (a failover test shows them)."""
        with self._lock:
            return {s: n for s, n in sorted(self.statuses.items()) if s >= 500}
