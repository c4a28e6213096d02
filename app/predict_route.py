"""POST /v1/models/{name}/predict: the prediction itself, and a shorter way through FastAPI.

A one-row prediction of a small forest takes about a millisecond in scikit-learn; the job
service's own share of the request must stay well under that (issue 17: ≤ 1 ms over the same
``predict`` in-process), and under load that share, not the predict, is what bounds the rows a
second a batched model serves. FastAPI's generic handling of an operation is most of it: the
body read through ``json.loads`` and validated as Python objects, the content type parsed with
``email.message``, the dependency graph solved (the bearer scheme, the scope check, the
services), the returned model validated again before it is dumped.

``PredictRoute`` is FastAPI's own extension point for this (a custom ``APIRoute``, whose
``get_route_handler`` FastAPI builds the operation's ASGI app from). Its handler serves the
common request directly: a JSON body that ``PredictRequest`` accepts, parsed and validated in
one pass by pydantic-core (``model_validate_json``), the same scope check, the same
``predict_rows``, the answer dumped by pydantic-core with the bytes and headers FastAPI would
send. Anything else (another content type, a model name the path pattern refuses, a body the
model refuses) goes to FastAPI's generic handler with the body already read, so every error a
client can see is still made by FastAPI and app.problems exactly as before, in the same order
(a malformed body before a missing token). The operation, its schema and ``openapi.json`` are
unchanged: the route is the same ``APIRoute``, only its handler is shorter.

``PredictLane`` goes one step further, as app.submit_route's SubmitLane does for a submit: the
app's own middlewares (ZooKeeper deadline, security headers, body limit, exception handling, an
exit stack), Starlette's routing across every operation and FastAPI's wrappers around a route
cost a one-row prediction about as much again as the handler itself (py-spy,
docs/performance.md), and under load that CPU, not the model, bounds the rows a second a
batched model serves. The lane is an app middleware next to SubmitLane: a ``POST
/v1/models/{name}/predict`` with a JSON body of a declared length within
ZOOTRAIN_MAX_REQUEST_BYTES is answered by ``direct`` itself, under the request's ZooKeeper
deadline, its errors answered by the app's own exception handlers with the header
SecurityHeaders adds. Whatever ``direct`` leaves to FastAPI goes down the usual path with the
body replayed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.routing import APIRoute
from pydantic import TypeAdapter, ValidationError
from starlette.datastructures import Headers
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send

from app import service_metrics
from app.auth import bearer, read_principal
from app.deps import Services
from app.headers import NOSNIFF
from app.lanes import exception_handler, is_json, read_body, replay_body
from zootrain.errors import InvalidRequest
from zootrain.inputs import RowError, encode_records, split_to_records
from zootrain.records import MODEL_NAME_PATTERN, VersionRecord
from zootrain.views import PredictRequest, PredictResponse
from zootrain.zk import request_deadline

_NAME = re.compile(MODEL_NAME_PATTERN)
# FastAPI dumps a response model through a TypeAdapter of it (fastapi._compat's
# serialize_json): the same call gives the same bytes.
_ANSWER = TypeAdapter(PredictResponse)


async def predict_rows(svc: Services, name: str, body: PredictRequest) -> PredictResponse:
    """The prediction a valid request asks for (both handlers' work)."""
    if body.rows > svc.settings.max_predict_instances:
        what = (
            next(k for k in ("instances", "records") if getattr(body, k) is not None)
            if (body.dataframe_split is None)
            else "dataframe_split.data"
        )
        raise InvalidRequest(
            f"{what}: {body.rows} rows exceed the limit of {svc.settings.max_predict_instances}"
        )
    record, alias = await svc.registry.serve(name, body.version, body.alias)
    instances = _instances(name, body, record)
    # In a prediction process (app.pool), which keeps the model loaded: scikit-learn's own
    # refusal of the rows comes back as a 422 naming instances.
    predictions = await svc.pool.predict(record.artifact, record.sha256, record.size, instances)
    service_metrics.PREDICTIONS.labels(model=name).inc(len(instances))
    return PredictResponse(model=name, version=record.version, predictions=predictions, alias=alias)


def _instances(name: str, body: PredictRequest, record: VersionRecord) -> list[list[float]]:
    """The rows as the model's encoded feature vectors: instances as given, raw rows encoded
    with the version's own plan (here, before the prediction pool: pure Python, no numpy)."""
    if body.instances is not None:
        for row, values in enumerate(body.instances):
            if len(values) != record.n_features:
                raise InvalidRequest(
                    f"instances[{row}] has {len(values)} values; "
                    f"model {name} v{record.version} expects {record.n_features}"
                )
        return body.instances
    field = "records" if body.records is not None else "dataframe_split"
    if record.encoding is None:
        raise InvalidRequest(
            f"{field}: model {name} v{record.version} was not trained on an uploaded dataset, "
            f"so it has no input schema; send instances ({record.n_features} numbers a row)"
        )
    try:
        if body.records is not None:
            return encode_records(record.encoding, body.records)
        assert body.dataframe_split is not None
        split = body.dataframe_split
        rows = split_to_records(split.columns, split.data)
        return encode_records(record.encoding, rows, field="dataframe_split.data")
    except RowError as exc:
        raise InvalidRequest(str(exc)) from None


Handler = Callable[[Request], Coroutine[Any, Any, Response]]


class PredictRoute(APIRoute):
    """The predict operation, with ``direct`` tried before FastAPI's generic handler."""

    def get_route_handler(self) -> Handler:
        generic = super().get_route_handler()

        async def handler(request: Request) -> Response:
            answer = await direct(request)
            # The same Request: FastAPI's handler finds the body already read.
            return answer if answer is not None else await generic(request)

        return handler


async def direct(request: Request) -> Response | None:
    """The answer to a well-formed prediction request, or None for FastAPI's generic handler
    (which makes every error answer). Raises what the operation itself raises (a missing
    token, an unknown model, rows the model refuses): app.problems answers those."""
    if not is_json(request.headers.get("content-type")):
        return None
    name = request.path_params.get("name")
    if not isinstance(name, str) or _NAME.fullmatch(name) is None:
        return None
    try:
        body = PredictRequest.model_validate_json(await request.body())
    except (ValidationError, ClientDisconnect):
        return None
    # FastAPI's order: the body is read and parsed before the dependencies run, and the
    # router's scope check (app.auth.READ) before the operation.
    await read_principal(request, await bearer(request))
    svc: Services = request.app.state.services
    answer = await predict_rows(svc, name, body)
    return Response(content=_ANSWER.dump_json(answer), media_type="application/json")


PREFIX = "/v1/models/"
SUFFIX = "/predict"


class PredictLane:
    """POST /v1/models/{name}/predict past the app's middlewares and routing (see above)."""

    def __init__(self, app: ASGIApp, *, api: FastAPI, max_bytes: int, deadline: float) -> None:
        self.app = app
        self.api = api
        self.max_bytes = max_bytes
        self.deadline = deadline

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        name = _lane_name(scope)
        if name is None:
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
        if not complete:
            await self.app(scope, replay_body(body, complete, receive), send)
            return
        # What Starlette's router would have put in the scope for the predict operation.
        replayed = replay_body(body, True, receive)
        request = Request({**scope, "path_params": {"name": name}}, replayed)
        try:
            with request_deadline(self.deadline):  # what the ZooKeeperDeadline middleware does
                answer = await direct(request)
        except Exception as exc:
            handler = exception_handler(self.api, exc)
            if handler is None:
                raise  # Starlette's server-error middleware answers (a problem+json 500)
            answer = await handler(request, exc)
        if answer is None:  # FastAPI's handler makes this answer (an error, or an odd body)
            await self.app(scope, replay_body(body, True, receive), send)
            return
        answer.raw_headers.append(NOSNIFF)  # what SecurityHeaders adds outside its pages
        await answer(scope, receive, send)


def _lane_name(scope: Scope) -> str | None:
    """The model name of a POST to the predict operation's path, else None."""
    if scope["type"] != "http" or scope["method"] != "POST":
        return None
    path: str = scope["path"]
    if not (path.startswith(PREFIX) and path.endswith(SUFFIX)):
        return None
    name = path[len(PREFIX) : -len(SUFFIX)]
    # A name the path pattern refuses (FastAPI's 422) or one with a slash (another route or a
    # 404) is FastAPI's to answer.
    return name if _NAME.fullmatch(name) is not None else None
