"""/v1/models: published model versions, their artifacts, and predictions."""

from __future__ import annotations

import base64
import binascii
import contextlib
from typing import Annotated

from fastapi import APIRouter, Depends, Path, status
from fastapi.responses import Response, StreamingResponse

from app import service_metrics
from app.auth import READ, Admin
from app.deps import Services, services
from app.problems import problem_responses
from zootrain.errors import ArtifactError, Gone, InvalidRequest, NotFound
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
        if not versions:
            continue
        try:
            latest: int | None = (await svc.registry.latest_live(name, versions)).version
        except NotFound:
            latest = None  # every version deleted
        summaries.append(ModelSummary(name=name, latest_version=latest, versions=len(versions)))
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
    record = await svc.registry.read(name, version)
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
        },
    )


@router.post(
    "/{name}/predict",
    response_model=PredictResponse,
    responses=problem_responses(400, 404, 410, 413, 422, 503),
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
    # In a prediction process (app.pool), which keeps the model loaded: scikit-learn's own
    # refusal of the rows comes back as a 422 naming instances.
    predictions = await svc.pool.predict(
        record.artifact, record.sha256, record.size, body.instances
    )
    service_metrics.PREDICTIONS.labels(model=name).inc(len(body.instances))
    return PredictResponse(model=name, version=record.version, predictions=predictions)
