"""/v1/workers: the live workers, read from their ephemeral znodes."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends
from kazoo.exceptions import NoNodeError

from app.auth import READ
from app.deps import Services, services
from app.problems import problem_responses
from zootrain.records import WorkerRecord

router = APIRouter(prefix="/v1/workers", tags=["workers"], dependencies=[READ])


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
