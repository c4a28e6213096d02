"""Security headers on the pages a browser renders: the dashboard (/ui) and the API docs (/docs).

The dashboard holds an API token in the browser, so it must run nothing but its own files:
a Content-Security-Policy allows only its own scripts and styles (no inline code, no other
origin), `frame-ancestors 'none'` and `X-Frame-Options: DENY` keep other sites from framing it
(clickjacking), and `Referrer-Policy: no-referrer` keeps its URLs (job ids) from leaking.
`X-Content-Type-Options: nosniff` goes on every response: no browser may guess a JSON error or
an uploaded dataset's name into a script.
"""

from __future__ import annotations

import base64
import hashlib

from starlette.types import ASGIApp, Message, Receive, Scope, Send

DASHBOARD_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'"
)


def docs_csp(inline_script: str) -> str:
    """Swagger UI's page: its bundle from this server, its one inline script by hash; it styles
    elements inline, and shows SVG icons as data: images."""
    digest = base64.b64encode(hashlib.sha256(inline_script.encode()).digest()).decode()
    return (
        f"default-src 'none'; script-src 'self' 'sha256-{digest}'; "
        "style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; "
        "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    )


def page_headers(csp: str) -> list[tuple[bytes, bytes]]:
    return [
        (b"content-security-policy", csp.encode()),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"no-referrer"),
    ]


NOSNIFF = (b"x-content-type-options", b"nosniff")


class SecurityHeaders:
    """Adds ``pages``' headers to every response under their path prefixes, nosniff to all."""

    def __init__(self, app: ASGIApp, pages: dict[str, list[tuple[bytes, bytes]]]) -> None:
        self.app = app
        # Longest prefix first: "/docs/assets" could have its own before "/docs".
        self.pages = sorted(pages.items(), key=lambda item: -len(item[0]))

    def _for(self, path: str) -> list[tuple[bytes, bytes]]:
        for prefix, headers in self.pages:
            if path == prefix or path.startswith(prefix.rstrip("/") + "/"):
                return [NOSNIFF, *headers]
        return [NOSNIFF]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = self._for(scope["path"])
        names = {name for name, _ in extra}

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                kept = [(k, v) for k, v in message.get("headers", []) if k.lower() not in names]
                message = {**message, "headers": kept + extra}
            await send(message)

        await self.app(scope, receive, with_headers)
