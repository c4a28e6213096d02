"""/v1/workers: the live workers, read from their ephemeral znodes; draining one."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response, status
from kazoo.exceptions import NodeExistsError, NoNodeError

from app.auth import READ, Admin
from app.deps import Services, services
from app.problems import problem_responses
from zootrain.errors import NotFound
from zootrain.records import DrainRecord, WorkerRecord, utcnow

router = APIRouter(prefix="/v1/workers", tags=["workers"], dependencies=[READ])

WorkerId = Annotated[
    str, Path(pattern=r"^[A-Za-z0-9._-]{1,64}$", description="a worker's id, as /v1/workers lists")
]


@router.get("", response_model=list[WorkerRecord], responses=problem_responses(503))
async def list_workers(svc: Annotated[Services, Depends(services)]) -> list[WorkerRecord]:
    zk, paths = svc.zk, svc.paths
    names = await zk.retry(lambda: zk.get_children(paths.workers))

    async def read(name: str) -> WorkerRecord | None:
        try:
            data, _ = await zk.get(paths.worker(name))
        except NoNodeError:
            return None  # it went away between the listing and the read
        record: WorkerRecord = WorkerRecord.load(data)
        return record

    records = await asyncio.gather(*(read(n) for n in sorted(names)))
    return [r for r in records if r is not None]


@router.post(
    "/{worker_id}/drain",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=DrainRecord,
    responses=problem_responses(404, 422, 503),
    summary="Drain a worker (admin)",
    description=(
        "The worker finishes what it holds and claims nothing new; `/v1/workers` shows it "
        "`draining` once it has heard (a ZooKeeper watch: within a second). It stays drained "
        "until `DELETE` on the same path or until it stops; the other workers are untouched. "
        "Asking again is harmless (the first request is kept). 404 if no such worker is live."
    ),
)
async def drain_worker(
    worker_id: WorkerId, svc: Annotated[Services, Depends(services)], principal: Admin
) -> DrainRecord:
    zk, paths = svc.zk, svc.paths
    if await zk.retry(lambda: zk.exists(paths.worker(worker_id))) is None:
        raise NotFound(f"no live worker {worker_id!r} (GET /v1/workers lists them)")
    record = DrainRecord(worker_id=worker_id, requested_at=utcnow(), requested_by=principal.name)
    try:
        await zk.create(paths.drain(worker_id), record.dump())
    except NodeExistsError:
        data, _ = await zk.retry(lambda: zk.get(paths.drain(worker_id)))
        record = DrainRecord.load(data)
    return record


@router.delete(
    "/{worker_id}/drain",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=problem_responses(404, 422, 503),
    summary="Stop draining a worker (admin)",
    description="The worker claims work again. 404 if it was not asked to drain.",
)
async def undrain_worker(
    worker_id: WorkerId, svc: Annotated[Services, Depends(services)], _: Admin
) -> Response:
    try:
        await svc.zk.delete(svc.paths.drain(worker_id))
    except NoNodeError:
        raise NotFound(f"worker {worker_id!r} is not draining") from None
    return Response(status_code=status.HTTP_204_NO_CONTENT)
