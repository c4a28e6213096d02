"""/v1/models: published model versions, their artifacts, and predictions."""

from __future__ import annotations

import base64
import binascii
import contextlib
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Header, Path, Query, status
from fastapi.responses import Response, StreamingResponse

from app.auth import READ, Admin, Submitter
from app.deps import Services, services
from app.predict_route import PredictRoute, predict_rows
from app.problems import problem_responses
from zootrain.auth import Principal, Scope
from zootrain.errors import ArtifactError, Forbidden, Gone, InvalidRequest, NotFound
from zootrain.records import ALIAS_PATTERN, MODEL_NAME_PATTERN, ModelRecord, VersionRecord
from zootrain.registry import CHAMPION
from zootrain.spec import RESERVED_ALIASES
from zootrain.views import (
    AliasRequest,
    ModelSummary,
    ModelView,
    PredictRequest,
    PredictResponse,
)
from zootrain.zk import ZnodeStat

router = APIRouter(prefix="/v1/models", tags=["models"], dependencies=[READ])

S = TypeVar("S", bound=ModelSummary)
ModelName = Annotated[str, Path(pattern=MODEL_NAME_PATTERN)]
VersionNumber = Annotated[int, Path(ge=1, le=9_999_999_999)]
AliasName = Annotated[str, Path(pattern=ALIAS_PATTERN)]
IfMatch = Annotated[
    str | None,
    Header(
        description="The model's ETag (aliases_version) as read: the move is refused with 409 "
        "if another alias move landed since"
    ),
]


@router.get("", response_model=list[ModelSummary], responses=problem_responses(503))
async def list_models(svc: Annotated[Services, Depends(services)]) -> list[ModelSummary]:
    summaries = []
    for name in await svc.registry.model_names():
        try:
            versions = await svc.registry.versions(name)
        except NotFound:
            continue
        if not versions:
            continue
        try:
            latest: int | None = (await svc.registry.latest_live(name, versions)).version
        except NotFound:
            latest = None  # every version deleted
        try:
            model, _ = await svc.registry.model(name)
        except NotFound:
            continue  # deleted since the listing
        summaries.append(_summary(ModelSummary, name, model, latest, len(versions)))
    return summaries


def _summary(
    kind: type[S], name: str, model: ModelRecord, latest: int | None, versions: int, **more: Any
) -> S:
    champion = model.aliases.get(CHAMPION)
    return kind(
        name=name,
        latest_version=latest,
        versions=versions,
        aliases=model.aliases,
        serving_version=champion if champion is not None else latest,
        serving=CHAMPION if champion is not None else ("latest" if latest is not None else None),
        **more,
    )


@router.get(
    "/{name}",
    response_model=ModelView,
    responses=problem_responses(404, 422, 503),
    summary="A model: its aliases and the version it serves by default",
    description=(
        "A model with a `champion` alias serves the champion's version to predictions and "
        "downloads that name no version or alias; otherwise the newest version not deleted. "
        "The ETag is the alias record's version, for If-Match on alias moves."
    ),
)
async def get_model(
    name: ModelName, response: Response, svc: Annotated[Services, Depends(services)]
) -> ModelView:
    model, stat = await svc.registry.model(name)
    return await _model_view(svc, name, model, stat, response)


async def _model_view(
    svc: Services, name: str, model: ModelRecord, stat: ZnodeStat, response: Response
) -> ModelView:
    versions = await svc.registry.versions(name)
    try:
        latest: int | None = (await svc.registry.latest_live(name, versions)).version
    except NotFound:
        latest = None
    response.headers["ETag"] = f'"{stat.version}"'
    return _summary(
        ModelView,
        name,
        model,
        latest,
        len(versions),
        owner=await svc.registry.owner(name),
        aliases_version=stat.version,
        aliases_updated_at=model.updated_at,
        aliases_updated_by=model.updated_by,
    )


@router.put(
    "/{name}/aliases/{alias}",
    response_model=ModelView,
    responses=problem_responses(400, 403, 404, 409, 422, 503),
    summary="Point an alias at a version (admin, or the model's owner)",
    description=(
        "One version-checked write of the model's alias record: two concurrent moves never "
        "both win silently. With `If-Match` (the ETag of GET /v1/models/{name}) a move that "
        "lost the race is a 409; without it the move is applied on top of the other. "
        "`latest` is reserved. A `champion` alias changes what the model serves by default."
    ),
)
async def put_alias(
    name: ModelName,
    alias: AliasName,
    body: AliasRequest,
    response: Response,
    svc: Annotated[Services, Depends(services)],
    principal: Submitter,
    if_match: IfMatch = None,
) -> ModelView:
    if alias in RESERVED_ALIASES:
        raise InvalidRequest(f"alias: {alias!r} is reserved")
    await _may_move_aliases(svc, name, principal)
    model, stat = await svc.registry.set_alias(
        name, alias, body.version, if_match=_if_match(if_match), by=principal.name
    )
    return await _model_view(svc, name, model, stat, response)


@router.delete(
    "/{name}/aliases/{alias}",
    response_model=ModelView,
    responses=problem_responses(400, 403, 404, 409, 422, 503),
    summary="Remove an alias (admin, or the model's owner)",
)
async def delete_alias(
    name: ModelName,
    alias: AliasName,
    response: Response,
    svc: Annotated[Services, Depends(services)],
    principal: Submitter,
    if_match: IfMatch = None,
) -> ModelView:
    await _may_move_aliases(svc, name, principal)
    model, stat = await svc.registry.remove_alias(
        name, alias, if_match=_if_match(if_match), by=principal.name
    )
    return await _model_view(svc, name, model, stat, response)


async def _may_move_aliases(svc: Services, name: str, principal: Principal) -> None:
    if principal.allows(Scope.ADMIN):
        return
    # The owner is written once per version, at publish: checking it before the move cannot
    # race with a change of owner.
    owner = await svc.registry.owner(name)
    if owner != principal.name:
        raise Forbidden(
            f"model {name!r} belongs to {owner or 'another token'!r}; moving its aliases "
            "needs the 'admin' scope"
        )


def _if_match(header: str | None) -> int | None:
    if header is None or header.strip() == "*":
        return None  # "*": any current version (RFC 9110), i.e. no check
    text = header.strip().removeprefix("W/").strip('"')
    if not text.isdigit() or len(text) > 10:
        raise InvalidRequest(
            f"If-Match: {header[:40]!r} is not an ETag of this model (send the ETag of "
            'GET /v1/models/{name}, e.g. "3")'
        )
    return int(text)


@router.get(
    "/{name}/versions",
    response_model=list[VersionRecord],
    responses=problem_responses(404, 422, 503),
)
async def list_versions(
    name: ModelName, svc: Annotated[Services, Depends(services)]
) -> list[VersionRecord]:
    return await svc.registry.read_all(name)


@router.get(
    "/{name}/versions/{version}",
    response_model=VersionRecord,
    responses=problem_responses(404, 422, 503),
    summary="A version's record (a deleted one too, with deleted_at)",
)
async def get_version(
    name: ModelName, version: VersionNumber, svc: Annotated[Services, Depends(services)]
) -> VersionRecord:
    return await svc.registry.record(name, version)


@router.delete(
    "/{name}/versions/{version}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=problem_responses(404, 410, 422, 503),
    summary="Delete a version (admin)",
    description=(
        "The version is no longer served (predict and artifact answer 410) and its file is "
        "removed from the store unless another version has the same bytes. Its record stays "
        "with `deleted_at`, so its number is never reused. Predictions without a version move "
        "to the newest version not deleted."
    ),
)
async def delete_version(
    name: ModelName, version: VersionNumber, svc: Annotated[Services, Depends(services)], _: Admin
) -> Response:
    deleted = await svc.registry.delete(name, version)
    await _remove_files(svc, {deleted.artifact})
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.delete(
    "/{name}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=problem_responses(404, 422, 503),
    summary="Delete every version of a model (admin)",
)
async def delete_model(
    name: ModelName, svc: Annotated[Services, Depends(services)], _: Admin
) -> Response:
    artifacts: set[str] = set()
    for record in await svc.registry.read_all(name):
        if record.deleted_at is None:
            with contextlib.suppress(Gone):  # a concurrent delete got there first
                artifacts.add((await svc.registry.delete(name, record.version)).artifact)
    await _remove_files(svc, artifacts)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


async def _remove_files(svc: Services, artifacts: set[str]) -> None:
    # Files are content-addressed: one still used by a version not deleted stays. A publish of
    # identical bytes racing this delete could lose its file; predictions then answer 500
    # naming the missing artifact, and the job can be run again.
    for uri in await svc.registry.unreferenced(artifacts):
        await svc.store.delete_async(uri)


@router.get(
    "/{name}/versions/{version}/artifact",
    response_class=Response,
    responses={
        200: {
            "description": "The model file (skops format); its sha256 is in X-Content-SHA256",
            "content": {"application/octet-stream": {}},
        },
        **problem_responses(404, 410, 422, 500, 503),
    },
)
async def get_artifact(
    name: ModelName, version: VersionNumber, svc: Annotated[Services, Depends(services)]
) -> Response:
    return await _artifact(svc, name, await svc.registry.read(name, version))


@router.get(
    "/{name}/artifact",
    response_class=Response,
    responses={
        200: {
            "description": "The model file (skops format) of the version the alias points at, "
            "or of the version served by default; X-Model-Version names it",
            "content": {"application/octet-stream": {}},
        },
        **problem_responses(404, 410, 422, 500, 503),
    },
    summary="Download the model file by alias (default: the champion, else the latest)",
)
async def get_artifact_by_alias(
    name: ModelName,
    svc: Annotated[Services, Depends(services)],
    alias: Annotated[str | None, Query(pattern=ALIAS_PATTERN)] = None,
) -> Response:
    record, _ = await svc.registry.serve(name, None, alias)
    return await _artifact(svc, name, record)


async def _artifact(svc: Services, name: str, record: VersionRecord) -> Response:
    version = record.version
    # Streamed from the store, never held whole: checked before the first byte that the object
    # is there with the recorded size, and while streaming that its bytes match the sha256 (the
    # last chunk is withheld if not, so the client sees a cut-off body, never a wrong one).
    size = await svc.store.size_async(record.artifact)
    if size is None:
        raise ArtifactError(f"artifact {record.artifact} is missing from the store")
    if size != record.size:
        raise ArtifactError(
            f"artifact {record.artifact} has {size} bytes, its record says {record.size} "
            "(tampered or corrupt)"
        )
    digest = base64.b64encode(binascii.unhexlify(record.sha256)).decode()
    return StreamingResponse(
        svc.store.stream(record.artifact, record.sha256),
        media_type="application/octet-stream",
        headers={
            "Content-Length": str(size),
            "X-Content-SHA256": record.sha256,
            "Repr-Digest": f"sha-256=:{digest}:",
            "Content-Disposition": f'attachment; filename="{name}-v{version}.skops"',
            "X-Model-Version": str(version),
        },
    )


async def predict(
    name: ModelName, body: PredictRequest, svc: Annotated[Services, Depends(services)]
) -> PredictResponse:
    return await predict_rows(svc, name, body)


# Predictions come by the thousand: their route has a router of its own, which app.main
# includes before every other (FastAPI tries a request against the routes in order, each
# costing a few microseconds). app.predict_route: the same operation, whose common requests
# skip FastAPI's generic handling.
predict_router = APIRouter(prefix="/v1/models", tags=["models"], dependencies=[READ])
predict_router.add_api_route(
    "/{name}/predict",
    predict,
    methods=["POST"],
    response_model=PredictResponse,
    responses=problem_responses(400, 404, 410, 413, 422, 503),
    route_class_override=PredictRoute,
)
