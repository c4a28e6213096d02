"""A Python client for the zootrain job service: ``Client`` (sync) and ``AsyncClient``.

Both speak the REST API of docs/api.md and return the pydantic models the service itself uses
(``zootrain.records``, ``zootrain.views``). What the two share is plain code: each endpoint is
described once as a ``_Call`` (method, path, body, how to parse the answer: ``calls``), retry
decisions are made once by ``RetryPolicy`` (``retry``), problem+json is parsed once
(``errors``), and Server-Sent Events are decoded once by ``_SSEDecoder`` (``events``); only the
sending, sleeping and streaming loops exist twice (``sync_client``, ``async_client``), around
what ``base`` holds for both.

Retries: idempotent calls (GET, DELETE, and ``POST /v1/jobs``, which always carries an
``Idempotency-Key``) are retried on connection errors and on 502/503/504 with exponential
backoff; any call is retried when the connection could not be made at all or when the service
answered 429. ``Retry-After`` is honoured on 429 and 503. A 401 or 403 is never retried.

Authentication: a ``token`` (default: ``$ZOOTRAIN_TOKEN``) is sent as ``Authorization: Bearer``
on every request, event streams and downloads included. It is kept out of every repr, str and
error message.
"""

from __future__ import annotations

from zootrain.client.async_client import AsyncClient
from zootrain.client.base import DEFAULT_TIMEOUT, DEFAULT_URL, STREAM_READ_TIMEOUT
from zootrain.client.errors import ChecksumMismatch, ZootrainError
from zootrain.client.events import Event, JobEvent, ShardEvent, event_position
from zootrain.client.retry import RETRY_STATUSES, RetryPolicy, parse_retry_after
from zootrain.client.sync_client import Client

__all__ = [
    "DEFAULT_TIMEOUT",
    "DEFAULT_URL",
    "RETRY_STATUSES",
    "STREAM_READ_TIMEOUT",
    "AsyncClient",
    "ChecksumMismatch",
    "Client",
    "Event",
    "JobEvent",
    "RetryPolicy",
    "ShardEvent",
    "ZootrainError",
    "event_position",
    "parse_retry_after",
]
