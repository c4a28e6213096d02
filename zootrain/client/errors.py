"""The client's errors: a problem+json answer of the service, and a download that does not match
its announced checksum."""

from __future__ import annotations

import contextlib
from typing import Any

import httpx

from zootrain.client.retry import parse_retry_after
from zootrain.errors import DomainError as _DomainError


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
