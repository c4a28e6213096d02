"""/v1/models: published model versions, their artifacts, and predictions."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, Path
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from app import metrics
from app.auth import READ
from app.deps import Services, services
from app.problems import problem_responses
from zootrain.errors import InvalidRequest, NotFound
from zootrain.records import MODEL_NAME_PATTERN, VersionRecord
from zootrain.views import ModelSummary, PredictRequest, PredictResponse

router = APIRouter(prefix="/v1/models", tags=["models"], dependencies=[READ])

ModelName = Annotated[str, Path(pattern=MODEL_NAME_PATTERN)]
VersionNumber = Annotated[int, Path(ge=1, le=9_999_999_999)]


@router.get("", response_model=list[ModelSummary], responses=problem_responses(503))
async def list_models(svc: Annotated[Services, Depends(services)]) -> list[ModelSummary]:
    summaries = []
    for name in await svc.registry.model_names():
        try:
            versions = await svc.registry.versions(name)
        except NotFound:
            continue
        summaries.append(
            ModelSummary(
                name=name, latest_version=versions[-1] if versions else None, versions=len(versions)
            )
        )
    return summaries


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
)
async def get_version(
    name: ModelName, version: VersionNumber, svc: Annotated[Services, Depends(services)]
) -> VersionRecord:
    return await svc.registry.read(name, version)


@router.get(
    "/{name}/versions/{version}/artifact",
    response_class=Response,
    responses={
        200: {
            "description": "The model file (skops format); its sha256 is in X-Content-SHA256",
            "content": {"application/octet-stream": {}},
        },
        **problem_responses(404, 422, 500, 503),
    },
)
async def get_artifact(
    name: ModelName, version: VersionNumber, svc: Annotated[Services, Depends(services)]
) -> Response:
    record = await svc.registry.read(name, version)
    data = await run_in_threadpool(svc.store.get, record.artifact, record.sha256)
    digest = base64.b64encode(binascii.unhexlify(record.sha256)).decode()
    return Response(
        data,
        media_type="application/octet-stream",
        headers={
            "X-Content-SHA256": record.sha256,
            "Repr-Digest": f"sha-256=:{digest}:",
            "Content-Disposition": f'attachment; filename="{name}-v{version}.skops"',
        },
    )


@router.post(
    "/{name}/predict",
    response_model=PredictResponse,
    responses=problem_responses(400, 404, 413, 422, 503),
)
async def predict(
    name: ModelName, body: PredictRequest, svc: Annotated[Services, Depends(services)]
) -> PredictResponse:
    if len(body.instances) > svc.settings.max_predict_instances:
        raise InvalidRequest(
            f"instances: {len(body.instances)} rows exceed the limit of "
            f"{svc.settings.max_predict_instances}"
        )
    record = await svc.registry.read(name, body.version)
    for row, values in enumerate(body.instances):
        if len(values) != record.n_features:
            raise InvalidRequest(
                f"instances[{row}] has {len(values)} values; "
                f"model {name} v{record.version} expects {record.n_features}"
            )
    model = await svc.models.get(record.artifact, record.sha256)
    X = np.asarray(body.instances, dtype=np.float64)
    predictions = await run_in_threadpool(model.predict, X)
    metrics.PREDICTIONS.labels(model=name).inc(len(X))
    return PredictResponse(model=name, version=record.version, predictions=_plain(predictions))


def _plain(values: Any) -> list[Any]:
    return [v.item() if hasattr(v, "item") else v for v in values]
