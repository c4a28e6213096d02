"""RFC 9457 problem details: every error the job service returns is ``application/problem+json``."""

from __future__ import annotations

import logging
import re
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from kazoo.exceptions import KazooException
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from zootrain.errors import DomainError, OutcomeUnknown
from zootrain.zk import RequestDeadlineExceeded, WriteOutcomeUnknown

log = logging.getLogger("zootrain.api")

PROBLEM_TYPE = "application/problem+json"


class Problem(BaseModel):
    type: str = Field("about:blank", description="URI reference naming the problem type")
    title: str
    status: int
    detail: str = Field(description="What is wrong, naming the offending field or resource")
    instance: str | None = None
    errors: list[dict[str, Any]] | None = Field(
        None, description="One entry per invalid field, for validation problems"
    )
    job_id: str | None = Field(
        None,
        description="A submit whose outcome is unknown (503): the id the job has if it was, "
        "or will be, created",
    )


def problem(
    status: int,
    detail: str,
    *,
    title: str | None = None,
    instance: str | None = None,
    headers: dict[str, str] | None = None,
    errors: list[dict[str, Any]] | None = None,
    job_id: str | None = None,
) -> JSONResponse:
    body = Problem(
        title=title or HTTPStatus(status).phrase,
        status=status,
        detail=detail,
        instance=instance,
        errors=errors,
        job_id=job_id,
    )
    return JSONResponse(
        body.model_dump(exclude_none=True),
        status_code=status,
        media_type=PROBLEM_TYPE,
        headers=headers,
    )


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for the problems an operation can answer with."""
    return {
        status: {
            "description": HTTPStatus(status).phrase,
            "content": {PROBLEM_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for status in statuses
    }


def _location(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc if p not in ("body",)]
    return ".".join(parts) or "body"


def _json_safe(value: Any) -> Any:
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return repr(value)[:200]


async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        ctx = errors[0].get("ctx", {})
        return problem(400, f"malformed JSON body: {ctx.get('error', 'invalid JSON')}")
    fields = [
        {
            "field": _location(e.get("loc", ())),
            "message": str(e.get("msg", "")).removeprefix("Value error, "),
            "type": e.get("type"),
        }
        for e in errors
    ]
    detail = "; ".join(f"{f['field']}: {f['message']}" for f in fields[:5])
    for e in fields:
        e["message"] = _json_safe(e["message"])
    return problem(422, detail or "invalid request", errors=fields)


async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    if exc.status_code == 404 and detail == "Not Found":
        detail = f"no resource at {request.url.path}"
    headers = getattr(exc, "headers", None)
    if exc.status_code == 405:
        detail = f"{request.method} is not allowed on {request.url.path}"
        allowed = _allowed_methods(request)
        if allowed:
            headers = {**(headers or {}), "Allow": ", ".join(allowed)}
    return problem(exc.status_code, detail, headers=headers)


def _allowed_methods(request: Request) -> list[str]:
    """The methods the OpenAPI document lists for the request's path: the contract a client
    was given. (Walking the app's routes does not work: FastAPI wraps an included router in
    a route of its own, and Starlette names only the first route that matched the path.)"""
    document: dict[str, Any] = request.app.openapi()
    for template, operations in document.get("paths", {}).items():
        pattern = re.sub(r"\\{[^/]+?\\}", "[^/]+", re.escape(template))
        if re.fullmatch(pattern, request.url.path):
            return sorted(method.upper() for method in operations if method in _HTTP_METHODS)
    return []


_HTTP_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})


async def _domain(request: Request, exc: DomainError) -> JSONResponse:
    if isinstance(exc, OutcomeUnknown):
        log.warning("%s %s: %s", request.method, request.url.path, exc.detail)
    return problem(
        exc.status,
        exc.detail,
        title=exc.title,
        headers=exc.headers(),
        job_id=getattr(exc, "job_id", None),
    )


async def _zookeeper(request: Request, exc: Exception) -> JSONResponse:
    log.warning("zookeeper error on %s %s: %r", request.method, request.url.path, exc)
    if isinstance(exc, RequestDeadlineExceeded):
        detail = "ZooKeeper did not answer within the request's deadline"
        if isinstance(exc, WriteOutcomeUnknown):
            detail += " (a change was sent and may still be applied: check before retrying)"
    else:
        detail = f"the coordination service did not answer ({type(exc).__name__})"
    return problem(503, f"{detail}; retry shortly", headers={"Retry-After": "2"})


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return problem(500, "internal error; the server log has the details")


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http)  # type: ignore[arg-type]
    app.add_exception_handler(DomainError, _domain)  # type: ignore[arg-type]
    app.add_exception_handler(KazooException, _zookeeper)
    app.add_exception_handler(TimeoutError, _zookeeper)
    app.add_exception_handler(Exception, _unexpected)
