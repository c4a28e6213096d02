"""What a lane shares: a well-formed request answered ahead of the app's middlewares and
routing (app.submit_route, app.predict_route), everything else handed to the app's generic path.

A lane reads the body ahead of the app and, when it decides the generic path answers after all,
hands it on again: the generic path reads it from ``receive`` as if nothing had been read (what
the lane took first, then whatever the client is still sending). What the lane's own call
raises is answered by the app's exception handler, found as Starlette finds it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message, Receive

ErrorHandler = Callable[[Request, Exception], Awaitable[Response]]


def is_json(content_type: str | None) -> bool:
    """``application/json``, with parameters or not: a subset of what FastAPI reads as JSON
    (it also takes ``+json`` types, and knows what a missing header means): the rest go its way."""
    if content_type is None:
        return False
    return content_type.partition(";")[0].strip().lower() == "application/json"


def exception_handler(api: FastAPI, exc: Exception) -> ErrorHandler | None:
    """The app's handler for ``exc``, found as Starlette's ExceptionMiddleware finds it; None
    for the 500 handler, which is ServerErrorMiddleware's (the lane re-raises)."""
    handlers = api.exception_handlers
    for cls in type(exc).__mro__:
        if cls is Exception:
            return None
        if cls in handlers:
            return handlers[cls]  # type: ignore[return-value]  # ours are all async
    return None


async def read_body(receive: Receive, limit: int) -> tuple[bytes | None, bool]:
    """The body (None if the client disconnected), and whether it is complete: reading stops
    past ``limit`` bytes (a Content-Length that lied), leaving the rest to the app's limit."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None, False
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), True
        if size > limit:
            return b"".join(chunks), False


def replay_body(body: bytes, complete: bool, receive: Receive) -> Receive:
    """``receive`` with what was read handed out again first."""
    pending: list[Message] = [{"type": "http.request", "body": body, "more_body": not complete}]

    async def replayed() -> Message:
        if pending:
            return pending.pop()
        return await receive()

    return replayed
