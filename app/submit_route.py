"""POST /v1/jobs: a well-formed submit skips FastAPI's generic resolution of its parameters.

FastAPI resolves an operation's parameters generically: it walks the dependency tree (the
services, the token check and its bearer scheme, the Idempotency-Key header), validates each
value against a field built from its annotation, and the body through a TypeAdapter, with the
exit stacks and bookkeeping that make any signature work. On the submit path that machinery was
the largest single share of the job service's CPU per job after the ZooKeeper multi
(docs/performance.md), and a submit's rate is a goal of its own.

So SubmitRoute resolves the submit's four parameters itself, for a request that is well-formed
in every respect: a JSON body (``application/json``) that JobSpec accepts, a bearer token that
passes with the submit scope (Gate.admits: no side effects), and an Idempotency-Key that is
absent or of a valid length. The endpoint is then called with them, exactly as FastAPI would
have called it. Anything else (a body that is not JSON, a missing or refused token, a header or
spec that does not validate) is handed to FastAPI's own handler for the same route, which
answers as it always did, with the same status and detail from the same code: bad input keeps
its problem+json 4xx by construction, not by imitation. The operation is still declared through
FastAPI, so its schema in openapi.json comes from the endpoint's signature as before
(tests/contract checks the document and compares both paths' answers).
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi.routing import APIRoute
from fastapi.security.utils import get_authorization_scheme_param
from starlette.requests import Request
from starlette.responses import Response

from zootrain.auth import Scope
from zootrain.spec import JobSpec

PARAMETERS = ("spec", "svc", "principal", "idempotency_key")
"""The endpoint's parameters, each of which ``_resolve`` resolves as FastAPI would."""

MAX_KEY_LENGTH = 255  # the Idempotency-Key header's max_length in the endpoint's signature


class SubmitRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        generic = super().get_route_handler()
        endpoint = self.endpoint
        # A parameter or dependency added to the endpoint would be skipped on the fast path:
        # refuse to start instead.
        names = tuple(inspect.signature(endpoint).parameters)
        if names != PARAMETERS or self.dependencies:
            raise RuntimeError(
                f"SubmitRoute resolves {PARAMETERS} only; {endpoint.__name__} takes {names} "
                f"and {len(self.dependencies)} route dependencies: teach app/submit_route.py"
            )

        async def handle(request: Request) -> Response:
            arguments = await _resolve(request)
            if arguments is None:
                return await generic(request)
            response: Response = await endpoint(**arguments)
            return response

        return handle


async def _resolve(request: Request) -> dict[str, Any] | None:
    """The endpoint's arguments, or None when FastAPI's handler must answer the request."""
    headers = request.headers
    content_type = headers.get("content-type", "")
    if content_type.partition(";")[0].strip().lower() != "application/json":
        return None
    key = headers.get("idempotency-key")
    if key is not None and not 1 <= len(key) <= MAX_KEY_LENGTH:
        return None
    svc = request.app.state.services
    scheme, token = get_authorization_scheme_param(headers.get("authorization"))
    principal = svc.gate.admits(token if scheme.lower() == "bearer" else None, Scope.SUBMIT)
    if principal is None:
        return None
    try:
        body = await request.body()  # kept on the request: FastAPI's handler reads it again
        spec = JobSpec.model_validate(json.loads(body))
    except Exception:
        # Not JSON (JSONDecodeError, UnicodeDecodeError), not a valid spec (ValidationError),
        # or a body that did not arrive whole (over the size limit: its 413 is sent already).
        return None
    request.state.principal = principal
    return {"spec": spec, "svc": svc, "principal": principal, "idempotency_key": key}
