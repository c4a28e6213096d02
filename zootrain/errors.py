"""Domain errors, raised by the core and turned into problem+json responses by the job service."""

from __future__ import annotations


class DomainError(Exception):
    status = 500
    title = "Internal error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail

    def headers(self) -> dict[str, str] | None:
        """HTTP headers the problem response carries (Retry-After, WWW-Authenticate)."""
        return None


class NotFound(DomainError):
    status = 404
    title = "Not found"


class Conflict(DomainError):
    status = 409
    title = "Conflict"


class Gone(DomainError):
    status = 410
    title = "Gone"


class PreconditionFailed(DomainError):
    status = 412
    title = "Precondition failed"


class InvalidRequest(DomainError):
    status = 422
    title = "Unprocessable request"


class Unauthorized(DomainError):
    status = 401
    title = "Unauthorized"

    def headers(self) -> dict[str, str] | None:
        return {"WWW-Authenticate": 'Bearer realm="zootrain"'}


class Forbidden(DomainError):
    status = 403
    title = "Forbidden"


class TooManyRequests(DomainError):
    status = 429
    title = "Too many requests"

    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str] | None:
        return {"Retry-After": str(self.retry_after)}


class QueueFull(TooManyRequests):
    title = "Queue full"


class RateLimited(TooManyRequests):
    title = "Rate limit exceeded"


class Unavailable(DomainError):
    status = 503
    title = "Coordination service unavailable"

    def headers(self) -> dict[str, str] | None:
        return {"Retry-After": "2"}


class OutcomeUnknown(Unavailable):
    """A submit's multi was sent and not confirmed in time: the job may exist, or appear later
    (kazoo sends a queued request when the connection comes back). The answer names the job id
    chosen before the multi, so the client can look, or retry with its Idempotency-Key."""

    title = "Outcome unknown"

    def __init__(self, detail: str, job_id: str) -> None:
        super().__init__(detail)
        self.job_id = job_id


class ArtifactError(DomainError):
    """An artifact is missing, does not match its recorded sha256, or holds untrusted types."""

    status = 500
    title = "Artifact unusable"
