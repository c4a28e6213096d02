"""Who may call what: bearer tokens with scopes, and a per-token limit on submits.

Every operation under /v1 depends on ``require(scope)``. Tokens are checked against the hashes in
the configuration (``zootrain.auth``); the token itself is never logged or echoed. The open
paths are the ones an orchestrator or a browser needs before it has a token: /healthz, /readyz,
/metrics, the dashboard's static files and the OpenAPI document.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app import service_metrics
from zootrain.auth import ANONYMOUS, Principal, Scope, TokenTable
from zootrain.errors import Forbidden, RateLimited, Unauthorized, Unavailable
from zootrain.settings import Settings
from zootrain.tokenstore import StoredTokens

log = logging.getLogger("zootrain.api")

# auto_error=False: a missing header is our 401 in problem+json, not Starlette's plain 403.
bearer = HTTPBearer(
    auto_error=False,
    description="An API token (`zootrain token new`), sent as `Authorization: Bearer <token>`",
)


@dataclass
class Gate:
    """The job service's authentication state: the configured tokens (ZOOTRAIN_TOKENS,
    ZOOTRAIN_TOKENS_FILE, read once at start-up) merged with the live list in ZooKeeper
    (zootrain.tokenstore), which a watch keeps current."""

    enabled: bool
    tokens: TokenTable
    submits: RateLimiter
    uploads: RateLimiter = field(
        default_factory=lambda: RateLimiter(0, 1, "upload", "datasets", "ZOOTRAIN_UPLOAD")
    )
    configured: TokenTable = field(default_factory=lambda: TokenTable({}))
    # Until the live list is read, a token it revokes could still pass: /v1 answers 503.
    live: bool = False

    def __post_init__(self) -> None:
        if not self.configured.by_digest:
            self.configured = self.tokens

    def apply(self, stored: StoredTokens) -> None:
        """A new live list (TokenWatch): the table every request is checked against now."""
        self.tokens = self.configured.merged(stored.table(), stored.revoked)
        self.live = True

    @classmethod
    def from_settings(cls, settings: Settings) -> Gate:
        """Raises TokenConfigError (naming the bad entry) or RuntimeError on unusable settings."""
        limiter = RateLimiter(settings.submit_rate, settings.submit_burst)
        uploads = RateLimiter(
            settings.upload_rate, settings.upload_burst, "upload", "datasets", "ZOOTRAIN_UPLOAD"
        )
        if settings.auth == "off":
            log.warning(
                "AUTHENTICATION IS OFF (ZOOTRAIN_AUTH=off): anyone who can reach this port can "
                "submit, cancel and delete. Use this for local development only."
            )
            return cls(False, TokenTable({}), limiter, uploads)
        tokens = TokenTable.load(settings.tokens, settings.tokens_file)
        if not tokens:
            raise RuntimeError(
                "no API token is configured: set ZOOTRAIN_TOKENS or ZOOTRAIN_TOKENS_FILE "
                "(`zootrain token new NAME --scopes admin` prints an entry), or set "
                "ZOOTRAIN_AUTH=off for local development"
            )
        log.info("authentication on: %d token(s) configured", len(tokens))
        return cls(True, tokens, limiter, uploads)

    def authenticate(self, credentials: HTTPAuthorizationCredentials | None) -> Principal:
        if not self.enabled:
            return ANONYMOUS
        if credentials is None:
            service_metrics.AUTH_FAILURES.labels(reason="missing").inc()
            raise Unauthorized(
                "this operation needs an API token: send `Authorization: Bearer <token>`"
            )
        if not self.live:
            raise Unavailable(
                "the job service has not read a usable token list from ZooKeeper yet (its log "
                "says why if this lasts)"
            )
        principal = self.tokens.authenticate(credentials.credentials)
        if principal is None:
            service_metrics.AUTH_FAILURES.labels(reason="invalid").inc()
            raise Unauthorized("the bearer token is not valid (unknown or revoked)")
        if principal.expired(datetime.now(UTC)):
            service_metrics.AUTH_FAILURES.labels(reason="expired").inc()
            assert principal.expires is not None
            raise Unauthorized(
                f"the bearer token {principal.name!r} expired at "
                f"{principal.expires.isoformat(timespec='minutes')}"
            )
        return principal

    def admits(self, token: str | None, scope: Scope) -> Principal | None:
        """The principal ``token`` acts as if it may do ``scope`` now, else None: what
        authenticate and require(scope) let through, without their errors and metrics (a
        caller that gets None goes through those to answer why; app.submit_route)."""
        if not self.enabled:
            return ANONYMOUS
        if token is None or not self.live:
            return None
        principal = self.tokens.authenticate(token)
        if principal is None or principal.expired(datetime.now(UTC)) or not principal.allows(scope):
            return None
        return principal


@dataclass
class RateLimiter:
    """A token bucket per principal: ``burst`` requests at once, refilled at ``rate`` a second.

    Kept in this process: with N job-service processes a token may go N times the rate. The
    queue's own ceiling (ZOOTRAIN_MAX_QUEUE) is the global bound on submits, the upload quota
    (ZOOTRAIN_UPLOAD_QUOTA_BYTES) on stored uploads.
    """

    rate: float
    burst: int
    what: str = "submit"  # what the token may do, as the 429 says it
    unit: str = "jobs"
    setting: str = "ZOOTRAIN_SUBMIT"  # the settings' prefix: <setting>_RATE, <setting>_BURST
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict)  # tokens, at

    def take(self, who: str) -> None:
        if self.rate <= 0:
            return
        now = time.monotonic()
        tokens, at = self._buckets.get(who, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - at) * self.rate)
        if tokens < 1.0:
            wait = math.ceil((1.0 - tokens) / self.rate)
            raise RateLimited(
                f"token {who!r} may {self.what} {self.rate:g} {self.unit} a second (bursts of "
                f"{self.burst}; {self.setting}_RATE, {self.setting}_BURST); retry after the "
                "Retry-After delay",
                max(1, wait),
            )
        self._buckets[who] = (tokens - 1.0, now)


def gate(request: Request) -> Gate:
    found: Gate = request.app.state.services.gate
    return found


Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


def require(scope: Scope) -> Callable[..., Awaitable[Principal]]:
    """A dependency: the request's principal, which must hold ``scope``."""

    async def dependency(request: Request, credentials: Credentials) -> Principal:
        principal = gate(request).authenticate(credentials)
        if not principal.allows(scope):
            service_metrics.AUTH_FAILURES.labels(reason="scope").inc()
            raise Forbidden(
                f"token {principal.name!r} lacks the {scope.value!r} scope this operation needs "
                f"(it holds: {', '.join(sorted(s.value for s in principal.scopes))})"
            )
        request.state.principal = principal
        return principal

    dependency.__name__ = f"require_{scope.value}"
    return dependency


read_principal = require(Scope.READ)
"""The READ dependency's function, for a handler that checks the scope itself
(app.predict_route)."""
READ = Depends(read_principal)
Reader = Annotated[Principal, READ]  # the same dependency as READ: it runs once a request
Submitter = Annotated[Principal, Depends(require(Scope.SUBMIT))]
Admin = Annotated[Principal, Depends(require(Scope.ADMIN))]
