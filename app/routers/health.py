"""Liveness and readiness, for load balancers and orchestrators."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response

from app import service_metrics
from app.deps import Services, services
from app.problems import problem, problem_responses
from zootrain.views import Status

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Status)
async def healthz() -> Status:
    return Status(status="ok")


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"description": "Prometheus text format", "content": {"text/plain": {}}}},
    summary="Prometheus metrics",
)
async def prometheus(svc: Annotated[Services, Depends(services)]) -> Response:
    body, content_type = await service_metrics.render(svc.queue)
    return Response(body, media_type=content_type)


@router.get("/readyz", response_model=Status, responses=problem_responses(503))
async def readyz(svc: Annotated[Services, Depends(services)]) -> Status | JSONResponse:
    if not svc.zk.connected:
        return problem(503, "not connected to ZooKeeper", headers={"Retry-After": "1"})
    if not svc.prepared:
        return problem(503, "creating the base znodes", headers={"Retry-After": "1"})
    if not svc.pool.ready:
        return problem(503, "starting the prediction processes", headers={"Retry-After": "1"})
    return Status(status="ready")
