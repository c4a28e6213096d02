"""A retrying HTTP client for tests and benchmarks that kill the job service under it."""

from __future__ import annotations

import threading
import time
from collections.abc import Collection, Mapping
from typing import Any

import httpx

from tests.support.auth import AUTH

SERVER_ERRORS = (500, 502, 503, 504)


class RetryingClient:
    """A client that keeps answering through job-service restarts.

    Connection errors and ``retry_statuses`` are retried (with the same Idempotency-Key for
    submits) against whatever ``url`` currently is: the caller swaps it when it starts a
    replacement service.
    """

    def __init__(
        self,
        url: str,
        timeout: float = 10.0,
        *,
        headers: Mapping[str, str] = AUTH,
        deadline: float = 60.0,
        retry_statuses: Collection[int] = SERVER_ERRORS,
    ) -> None:
        self._url = url
        self._lock = threading.Lock()
        self.timeout = timeout
        self.headers = dict(headers)
        self.deadline = deadline
        self.retry_statuses = retry_statuses
        self.retries = 0
        # Every attempt: (monotonic start, seconds taken, status code or error name).
        self.attempts: list[tuple[float, float, int | str]] = []

    @property
    def url(self) -> str:
        with self._lock:
            return self._url

    @url.setter
    def url(self, value: str) -> None:
        with self._lock:
            self._url = value

    def request(
        self,
        method: str,
        path: str,
        *,
        deadline: float | None = None,
        retry_statuses: Collection[int] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        limit = time.monotonic() + (self.deadline if deadline is None else deadline)
        retry = self.retry_statuses if retry_statuses is None else retry_statuses
        kwargs["headers"] = {**self.headers, **kwargs.get("headers", {})}
        while True:
            started = time.monotonic()
            try:
                response = httpx.request(method, self.url + path, timeout=self.timeout, **kwargs)
                self.attempts.append((started, time.monotonic() - started, response.status_code))
                if response.status_code not in retry:
                    return response
                error = f"{response.status_code} {response.text[:200]}"
            except httpx.HTTPError as exc:
                self.attempts.append((started, time.monotonic() - started, type(exc).__name__))
                error = repr(exc)
            if time.monotonic() > limit:
                raise TimeoutError(f"{method} {path} kept failing: {error}")
            self.retries += 1
            time.sleep(0.1)

    def submit(self, spec: dict[str, Any], key: str, **kwargs: Any) -> httpx.Response:
        return self.request(
            "POST", "/v1/jobs", json=spec, headers={"Idempotency-Key": key}, **kwargs
        )
