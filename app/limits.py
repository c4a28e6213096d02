"""Caps enforced per request: request bodies while they stream in (Content-Length may be
absent), the event streams a token holds open, and the time a request may wait for ZooKeeper."""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from collections.abc import Iterator

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import service_metrics
from app.problems import PROBLEM_TYPE
from zootrain.errors import RateLimited
from zootrain.zk import request_deadline

STREAM_RETRY_AFTER = 5  # seconds a client refused a stream waits before it tries again


class BodySizeLimit:
    def __init__(self, app: ASGIApp, max_bytes: int, exempt: tuple[str, ...] = ()) -> None:
        self.app = app
        self.max_bytes = max_bytes
        # Paths whose handlers stream the body and enforce their own (larger) limit: uploads.
        self.exempt = frozenset(exempt)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.exempt:
            await self.app(scope, receive, send)
            return
        declared, chunked = None, False
        for name, value in scope["headers"]:
            if name == b"content-length":
                declared = value
            elif name == b"transfer-encoding":
                chunked = True
        if declared is not None and declared.isdigit():
            if int(declared) > self.max_bytes:
                await self._reject(send)
                return
            if not chunked:
                # HTTP/1.1 framing: the server hands the app exactly Content-Length bytes of
                # body, no more, so there is nothing to count (most requests, predictions
                # among them, skip the two wrappers below).
                with contextlib.suppress(ClientDisconnect):
                    await self.app(scope, receive, send)
                return
        seen = 0
        started = False
        rejected = False

        async def counted() -> Message:
            # Answer 413 ourselves the moment the limit is passed, and tell the app the client
            # went away: raising here instead would reach the app's body parser, which turns
            # any error into a 400.
            nonlocal seen, rejected
            if rejected:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    rejected = True
                    if not started:
                        await self._reject(send)
                    return {"type": "http.disconnect"}
            return message

        async def tracked(message: Message) -> None:
            nonlocal started
            if rejected:
                return  # the 413 has been sent: whatever the app says now goes nowhere
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        with contextlib.suppress(ClientDisconnect):
            await self.app(scope, counted, tracked)

    async def _reject(self, send: Send) -> None:
        body = json.dumps(
            {
                "type": "about:blank",
                "title": "Content Too Large",
                "status": 413,
                "detail": f"request body exceeds the limit of {self.max_bytes} bytes",
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", PROBLEM_TYPE.encode()),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class StreamSlots:
    """Event streams open per token in this process: each holds a ZooKeeper feed's subscription
    and a connection for as long as the client keeps it, so one token must not hold them all.
    Past ``per_token``, a new stream is refused (429) until one of the token's streams ends."""

    def __init__(self, per_token: int) -> None:
        self.per_token = per_token
        self._open: Counter[str] = Counter()

    @contextlib.contextmanager
    def hold(self, who: str) -> Iterator[None]:
        if self._open[who] >= self.per_token:
            raise RateLimited(
                f"token {who!r} has {self._open[who]} event streams open on this server, its "
                f"limit (ZOOTRAIN_MAX_EVENT_STREAMS is {self.per_token}); close one, or retry "
                "after the Retry-After delay",
                STREAM_RETRY_AFTER,
            )
        self._open[who] += 1
        service_metrics.EVENT_STREAMS.inc()
        try:
            yield
        finally:
            self._open[who] -= 1
            if not self._open[who]:
                del self._open[who]
            service_metrics.EVENT_STREAMS.dec()


class ZooKeeperDeadline:
    """Every ZooKeeper call made while serving a request shares one deadline.

    kazoo queues a call made while the session is disconnected and sends it whenever the
    connection comes back: without a deadline, a request started during a quorum outage would
    hang for as long as the outage lasts. With it (``zootrain.zk.request_deadline``), the call
    is not sent while disconnected, and the request answers 503 with Retry-After once the
    deadline passes. Handlers that spend long on other things between their ZooKeeper calls
    (an upload streaming its body) start a fresh deadline for the calls that follow.
    """

    def __init__(self, app: ASGIApp, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        with request_deadline(self.seconds):
            await self.app(scope, receive, send)
