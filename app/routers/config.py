"""/v1/config: the live configuration every process follows (zootrain.liveconfig)."""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from kazoo.exceptions import NoNodeError

from app.auth import READ, Admin
from app.deps import Services, services
from app.problems import problem_responses
from zootrain.config_views import ConfigChange, ConfigView, LiveSettingsView, RejectedDocument
from zootrain.errors import DomainError, InvalidRequest
from zootrain.liveconfig import LIVE_KEYS, ConfigDocument, ConfigInvalid, load_history, write_patch

router = APIRouter(prefix="/v1/config", tags=["config"])

MERGE_PATCH = "application/merge-patch+json"


class UnsupportedMediaType(DomainError):
    status = 415
    title = "Unsupported media type"


def _view(svc: Services, document: ConfigDocument, version: int) -> ConfigView:
    effective = {key: document.settings.get(key, svc.live.baseline[key]) for key in LIVE_KEYS}
    return ConfigView(
        version=version,
        settings=LiveSettingsView(**effective),
        overrides=dict(document.settings),
        updated_at=document.updated_at,
        updated_by=document.updated_by,
    )


def _etag(version: int) -> str:
    return f'"{version}"'


@router.get(
    "",
    response_model=ConfigView,
    dependencies=[READ],
    responses=problem_responses(503),
    summary="The live configuration",
    description="The document in ZooKeeper with every live setting in effect; `ETag` is its "
    "version, for `If-Match` on PATCH.",
)
async def get_config(svc: Annotated[Services, Depends(services)], response: Response) -> ConfigView:
    zk = svc.zk
    try:
        data, stat = await zk.retry(lambda: zk.get(svc.paths.config))
    except NoNodeError:
        data, stat = b"", None  # deleted by hand: nothing is set
    if stat is None:
        response.headers["ETag"] = _etag(0)
        return _view(svc, ConfigDocument(), 0)
    try:
        view = _view(svc, ConfigDocument.load(data), stat.version)
    except ConfigInvalid as exc:
        view = _view(svc, svc.live.document, max(svc.live.version, 0))
        view.rejected = RejectedDocument(version=stat.version, error=exc.detail)
    response.headers["ETag"] = _etag(view.version)
    return view


def _if_match(value: str | None) -> int | None:
    """The version an If-Match names; -1 for one that can name no version (412 then)."""
    if value is None or value.strip() == "*":
        return None
    tag = value.strip()
    if tag.startswith('"') and tag.endswith('"') and len(tag) >= 2:
        tag = tag[1:-1]
    return int(tag) if tag.isdigit() and len(tag) < 12 else -1


@router.patch(
    "",
    response_model=ConfigView,
    responses=problem_responses(400, 412, 415, 422, 503),
    summary="Change live settings (admin)",
    description=(
        "An RFC 7396 merge patch (`Content-Type: application/merge-patch+json`), e.g. "
        '`{"settings": {"paused": true}}`; `null` returns a setting to the environment\'s '
        "value. Every process applies it within a second, through a ZooKeeper watch. With "
        "`If-Match` (the ETag of GET) a stale version is refused with 412; without it the "
        "change is applied to the newest document. 422 names a setting that is unknown, "
        "invalid, or one that can only be set in the environment (with the reason)."
    ),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {MERGE_PATCH: {"schema": {"$ref": "#/components/schemas/ConfigPatch"}}},
        }
    },
)
async def patch_config(
    request: Request,
    svc: Annotated[Services, Depends(services)],
    principal: Admin,
    response: Response,
    if_match: Annotated[
        str | None,
        Header(max_length=64, description="the ETag of the version this change is based on"),
    ] = None,
) -> ConfigView:
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in (MERGE_PATCH, "application/json"):
        raise UnsupportedMediaType(
            f"send the change as {MERGE_PATCH} (RFC 7396), not {media or 'no Content-Type'}"
        )
    try:
        patch = json.loads(await request.body())
    except ValueError as exc:
        raise InvalidRequest(f"the body is not valid JSON: {exc}") from None
    document, version = await write_patch(
        svc.zk,
        svc.paths,
        patch,
        who=principal.name,
        if_match=_if_match(if_match),
        fallback=svc.live.document,
    )
    response.headers["ETag"] = _etag(version)
    return _view(svc, document, version)


@router.get(
    "/history",
    response_model=list[ConfigChange],
    dependencies=[READ],
    responses=problem_responses(422, 503),
    summary="Changes to the configuration, newest first",
)
async def config_history(
    svc: Annotated[Services, Depends(services)],
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[ConfigChange]:
    zk = svc.zk
    try:
        data, _ = await zk.retry(lambda: zk.get(svc.paths.config_history))
    except NoNodeError:
        return []  # deleted by hand: the next change makes it again
    changes = []
    for entry in load_history(data)[:limit]:
        try:
            changes.append(ConfigChange.model_validate(entry))
        except ValueError:
            continue  # an entry edited by hand: the others still show
    return changes
