"""A request body read ahead of the app, and handed to it again: how a lane (app.submit_route,
app.predict_route) looks at a request before deciding whether the app's generic path answers it.

The generic path then reads the body from ``receive`` as if nothing had been read: what the lane
took comes first, then whatever the client is still sending.
"""

from __future__ import annotations

from starlette.types import Message, Receive


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
