"""/v1/overview: what the cluster is doing, in one answer (the dashboard's overview page).

Jobs per state and the recent failures need every job record: the same reads as a filtered
listing of /v1/jobs, done once. The queue depth is the queue node's children, as for
backpressure.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from app.auth import READ
from app.deps import Services, services
from app.problems import problem_responses
from zootrain.errors import NotFound
from zootrain.records import JobRecord, JobState
from zootrain.views import Failure, Overview

router = APIRouter(prefix="/v1/overview", tags=["overview"], dependencies=[READ])

READ_BATCH = 64  # job records read at once: a bounded burst of ZooKeeper requests


@router.get(
    "",
    response_model=Overview,
    responses=problem_responses(422, 503),
    summary="Jobs per state, the queue depth and the recent failures",
)
async def overview(
    svc: Annotated[Services, Depends(services)],
    failures: Annotated[int, Query(ge=0, le=100, description="Failures to list")] = 10,
) -> Overview:
    queue = svc.queue
    depth = len(await queue.queue())
    ids = await queue.job_ids()
    jobs: list[JobRecord] = []
    for start in range(0, len(ids), READ_BATCH):
        chunk = ids[start : start + READ_BATCH]
        jobs += [j for j in await asyncio.gather(*(_maybe(svc, i) for i in chunk)) if j]
    counts = dict.fromkeys(JobState, 0)
    for job in jobs:
        counts[job.state] += 1
    failed = sorted(
        (j for j in jobs if j.state == JobState.failed),
        key=lambda j: j.finished_at or j.updated_at,
        reverse=True,
    )
    return Overview(
        queue_depth=depth,
        jobs=counts,
        recent_failures=[
            Failure(
                job_id=j.id,
                model_name=j.spec.model_name,
                algorithm=j.spec.algorithm,
                error=j.error,
                finished_at=j.finished_at,
            )
            for j in failed[:failures]
        ],
    )


async def _maybe(svc: Services, job_id: str) -> JobRecord | None:
    try:
        return (await svc.queue.read_job(job_id))[0]
    except NotFound:
        return None  # removed by retention between the listing and the read
