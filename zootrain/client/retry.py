"""When a call is retried and how long the client waits first: one policy for both clients."""

from __future__ import annotations

import email.utils
import random
import time
from dataclasses import dataclass

import httpx

# Statuses that say "not now" (a gateway's, or the service's own 503 while ZooKeeper is away).
RETRY_STATUSES = frozenset({502, 503, 504})


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
