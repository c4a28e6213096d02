"""POST /v1/jobs: a well-formed submit takes a lane of its own past FastAPI's generic path.

Every request to the job service passes the app's middlewares (ZooKeeper deadline, security
headers, body limit, exception handling, an exit stack), Starlette's routing across every
operation, FastAPI's two exit stacks per request, its generic resolution of the operation's
parameters (the dependency tree: services, the token check and its bearer scheme, the
Idempotency-Key header, each validated against a field built from its annotation, the body
through a TypeAdapter) and the wrappers on the way out. On the submit path that machinery was
about half of the job service's CPU per job (py-spy, docs/performance.md), and a submit's rate
is a goal of its own.

SubmitLane is the app's outermost middleware of its own (inside Starlette's server-error
handler, which still answers anything unexpected with a problem+json 500). For POST /v1/jobs
it reads the body (declared by Content-Length, within ZOOTRAIN_MAX_REQUEST_BYTES) and resolves
the submit's four parameters itself when the request is well-formed in every respect: a JSON
body (``application/json``) that JobSpec accepts, a bearer token that passes with the submit
scope (Gate.admits: no side effects), and an Idempotency-Key that is absent or of a valid
length. The endpoint (app.routers.jobs.submit_job) is then called with them, under the
request's ZooKeeper deadline, as FastAPI would have called it; what it raises is answered by
the app's own exception handlers, and the answer gets the headers SecurityHeaders adds.

Anything else (a body that is not JSON or too large, no Content-Length, a missing or refused
token, a header or spec that does not validate) goes down the app's usual path with the body
replayed, and FastAPI's handler of the same operation answers it as it always did, with the
same status and detail from the same code: bad input keeps its problem+json 4xx by
construction, not by imitation. The operation is still declared through FastAPI, so its schema
in openapi.json comes from the endpoint's signature as before (tests/contract/test_submit_route.py
compares both paths' answers and checks the document).
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI
from fastapi.security.utils import get_authorization_scheme_param
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from app.headers import NOSNIFF
from app.lanes import exception_handler, is_json, read_body, replay_body
from zootrain.auth import Scope as TokenScope
from zootrain.spec import JobSpec
from zootrain.zk import request_deadline

PATH = "/v1/jobs"
PARAMETERS = ("spec", "svc", "principal", "idempotency_key")
"""The endpoint's parameters, each of which ``_arguments`` resolves as FastAPI would."""

MAX_KEY_LENGTH = 255  # the Idempotency-Key header's max_length in the endpoint's signature

Endpoint = Callable[..., Awaitable[Response]]


class SubmitLane:
    def __init__(
        self, app: ASGIApp, *, api: FastAPI, endpoint: Endpoint, max_bytes: int, deadline: float
    ) -> None:
        # A parameter added to the endpoint would be skipped in this lane: refuse to start.
        names = tuple(inspect.signature(endpoint).parameters)
        if names != PARAMETERS:
            raise RuntimeError(
                f"SubmitLane resolves {PARAMETERS}; {endpoint.__name__} takes {names}: "
                "teach app/submit_route.py the new one"
            )
        self.app = app
        self.api = api
        self.endpoint = endpoint
        self.max_bytes = max_bytes
        self.deadline = deadline

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != PATH:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        declared = headers.get("content-length", "")
        if (
            not declared.isdigit()
            or int(declared) > self.max_bytes
            or not is_json(headers.get("content-type"))
        ):
            await self.app(scope, receive, send)  # nothing read yet
            return
        body, complete = await read_body(receive, self.max_bytes)
        if body is None:
            return  # the client went away: nobody to answer
        replay = replay_body(body, complete, receive)
        arguments = _arguments(self.api, headers, body) if complete else None
        if arguments is None:
            await self.app(scope, replay, send)
            return
        request = Request(scope, replay, send)
        request.state.principal = arguments["principal"]
        try:
            with request_deadline(self.deadline):  # what the ZooKeeperDeadline middleware does
                response = await self.endpoint(**arguments)
        except Exception as exc:
            handler = exception_handler(self.api, exc)
            if handler is None:
                raise  # Starlette's server-error middleware answers (a problem+json 500)
            response = await handler(request, exc)
        response.raw_headers.append(NOSNIFF)  # what SecurityHeaders adds outside its pages
        await response(scope, replay, send)


def _arguments(api: FastAPI, headers: Headers, body: bytes) -> dict[str, Any] | None:
    """The endpoint's arguments, or None when FastAPI's handler must answer the request."""
    key = headers.get("idempotency-key")
    if key is not None and not 1 <= len(key) <= MAX_KEY_LENGTH:
        return None
    svc = api.state.services
    scheme, token = get_authorization_scheme_param(headers.get("authorization"))
    principal = svc.gate.admits(token if scheme.lower() == "bearer" else None, TokenScope.SUBMIT)
    if principal is None:
        return None
    try:
        spec = JobSpec.model_validate(json.loads(body))
    except Exception:
        # Not JSON (JSONDecodeError, UnicodeDecodeError) or not a valid spec (ValidationError):
        # FastAPI's handler says what is wrong.
        return None
    return {"spec": spec, "svc": svc, "principal": principal, "idempotency_key": key}
