"""/v1/jobs: submit, inspect, list and cancel training jobs."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Query, Response, status
from fastapi.sse import EventSourceResponse, ServerSentEvent

from app import events, service_metrics
from app.auth import READ, Reader, Submitter
from app.deps import Services, services
from app.problems import problem_responses
from zootrain.auth import ANONYMOUS, Scope
from zootrain.errors import Forbidden, InvalidRequest, QueueFull, RateLimited
from zootrain.ml.cost import over_ceilings
from zootrain.records import JOB_ID_PATTERN, JobRecord, JobSpec, JobState, ShardRecord
from zootrain.uploads import DatasetCatalog
from zootrain.views import JobList, JobView
from zootrain.zk import request_deadline

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

PING_SECONDS = 15.0  # a comment line at least this often on an open event stream

JobId = Annotated[str, Path(pattern=JOB_ID_PATTERN, description="Job id, as returned by submit")]


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobView,
    responses={
        200: {"model": JobView, "description": "Replay of an earlier submit with the same key"},
        **problem_responses(400, 409, 413, 422, 429, 503),
    },
    summary="Submit a training job",
    description=(
        "202 with the job (its shards pending) and `Location`; 200 when an `Idempotency-Key` "
        "replays an earlier submit. A 503 titled `Outcome unknown` means ZooKeeper did not "
        "confirm the job within the request's deadline: the job named in `job_id` may exist "
        "already or appear once ZooKeeper is back. Retry with the same `Idempotency-Key` "
        "(the CLI and the Python client always send one): the retry returns that job if it "
        "was created, and creates it otherwise. A 409 means an uploaded dataset the job "
        "names was deleted while the job was being submitted."
    ),
)
async def submit_job(
    # A well-formed submit reaches this function through app.submit_route.SubmitLane, which
    # resolves these four parameters itself: a new one must be taught to it (it refuses to
    # start otherwise).
    spec: JobSpec,
    svc: Annotated[Services, Depends(services)],
    principal: Submitter,
    idempotency_key: Annotated[
        str | None,
        Header(
            min_length=1,
            max_length=255,
            description="Retry-safe submits: the same key and body return the same job",
        ),
    ] = None,
) -> Response:
    # What needs scikit-learn (the parameters, a search's candidates) is checked in a child
    # process (app.pool); the first submit of a fresh service also starts it.
    spec, cost = await svc.pool.validate(spec)
    if spec.tasks > svc.settings.max_shards:
        raise InvalidRequest(
            f"shards: the job has {spec.tasks} tasks; this server accepts at most "
            f"{svc.settings.max_shards} (ZOOTRAIN_MAX_SHARDS)"
        )
    over = over_ceilings(cost, svc.settings.ceilings())
    if over:
        service_metrics.REJECTED.labels(reason="cost").inc()
        raise InvalidRequest("the job is too large: " + "; ".join(over))
    try:
        svc.gate.submits.take(principal.name)
    except RateLimited:
        service_metrics.REJECTED.labels(reason="rate_limited").inc()
        raise
    # The validation took as long as it took: the ZooKeeper calls get a deadline of their own.
    with service_metrics.SUBMIT_SECONDS.time(), request_deadline(svc.settings.zk_request_timeout):
        # An uploaded dataset is checked against its record (422 naming the field); its
        # resolved source goes into the job record, in submit's one multi.
        catalog = DatasetCatalog(svc.zk, svc.paths, svc.store)
        source, dataset_version = await catalog.resolve_versioned(spec)
        try:
            submitted = await svc.queue.submit(
                spec,
                idempotency_key=idempotency_key,
                owner=None if principal is ANONYMOUS else principal.name,
                dataset_source=source,
                dataset_version=dataset_version,
                max_queue=svc.settings.max_queue,
                idempotency_retention=svc.settings.idempotency_retention,
                shard_memory=int(svc.settings.shard_memory),
            )
        except QueueFull:
            service_metrics.REJECTED.labels(reason="queue_full").inc()
            raise
    (service_metrics.SUBMITS if submitted.created else service_metrics.SUBMIT_REPLAYS).inc()
    headers = {"Location": f"/v1/jobs/{submitted.job.id}"}
    if not submitted.created:
        headers["Idempotent-Replayed"] = "true"
    # Serialized here, once: returning the model would have FastAPI validate the records we
    # just built against JobView again (a third of the handler's CPU on the submit path). A
    # created job's JSON is the records' bytes as written (zootrain.queue.job_view_json).
    body = submitted.written
    if body is None:
        body = (await _view(svc, submitted.job)).model_dump_json().encode()
    return Response(
        body,
        status_code=status.HTTP_202_ACCEPTED if submitted.created else status.HTTP_200_OK,
        headers=headers,
        media_type="application/json",
    )


@router.get(
    "",
    response_model=JobList,
    responses=problem_responses(422, 503),
    summary="List jobs, newest first",
    dependencies=[READ],
)
async def list_jobs(
    svc: Annotated[Services, Depends(services)],
    state: Annotated[JobState | None, Query(description="Only jobs in this state")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[
        str | None, Query(pattern=JOB_ID_PATTERN, description="next_cursor of the previous page")
    ] = None,
) -> JobList:
    items, next_cursor = await svc.queue.list_jobs(state=state, limit=limit, cursor=cursor)
    return JobList(items=items, next_cursor=next_cursor)


@router.get(
    "/{job_id}",
    response_model=JobView,
    responses=problem_responses(404, 422, 503),
    summary="A job with its shards",
    dependencies=[READ],
)
async def get_job(job_id: JobId, svc: Annotated[Services, Depends(services)]) -> JobView:
    job, _ = await svc.queue.read_job(job_id)
    return await _view(svc, job)


@router.delete(
    "/{job_id}",
    response_model=JobView,
    responses=problem_responses(404, 409, 422, 503),
    summary="Cancel a job that has not finished",
    description="A token may cancel the jobs it submitted; another token's job needs `admin`.",
)
async def cancel_job(
    job_id: JobId, svc: Annotated[Services, Depends(services)], principal: Submitter
) -> JobView:
    if not principal.allows(Scope.ADMIN):
        # The owner is written once, at submit: checking it before the cancel cannot race.
        current, _ = await svc.queue.read_job(job_id)
        if current.owner != principal.name:
            raise Forbidden(
                f"job {job_id} was submitted by {current.owner or 'another token'!r}; "
                "cancelling another token's job needs the 'admin' scope"
            )
    job = await svc.queue.cancel(job_id)
    service_metrics.CANCELS.inc()
    return await _view(svc, job)


async def existing_job(job_id: JobId, svc: Annotated[Services, Depends(services)]) -> JobRecord:
    # A dependency, so that an unknown job is a 404 before any event stream starts.
    job, _ = await svc.queue.read_job(job_id)
    return job


async def stream_slot(
    svc: Annotated[Services, Depends(services)], principal: Reader
) -> AsyncIterator[None]:
    # A dependency with yield: it is left when the stream ends (the client went away or the
    # job finished), after the response, so the slot is held exactly as long as the stream.
    with svc.streams.hold(principal.name):
        yield


async def subscription(
    job: Annotated[JobRecord, Depends(existing_job)], svc: Annotated[Services, Depends(services)]
) -> AsyncIterator[tuple[events.JobFeed, events.Subscription]]:
    # Also a dependency: its reads happen before the response starts, under the request's
    # ZooKeeper deadline, so a stream opened during an outage is a 503, not a broken stream.
    # Once it is open, the feed's own reads wait for the session as long as it takes.
    async with svc.events.subscribe(job) as subscribed:
        yield subscribed


@router.get(
    "/{job_id}/events",
    response_class=EventSourceResponse,
    responses=problem_responses(404, 422, 429, 503),
    summary="Stream the job's changes as Server-Sent Events",
    dependencies=[READ, Depends(stream_slot)],
    description=(
        "One event per change of the job record (`event: job`) or of one of its shards "
        "(`event: shard`, with `job_id`); `data` is the record as JSON. Each event's `id` is "
        "`<zxid>-<node>` (ZooKeeper's order of the change, then the node): reconnect with "
        "`Last-Event-ID` to resume without missed or repeated events. The stream ends after "
        "the job's terminal event, or when the job is deleted (reconnecting then answers "
        "404). A comment line comes at least every 15 s, also while ZooKeeper is "
        "unreachable; the stream then resumes where it was. Opening a stream while "
        "ZooKeeper is unreachable answers 503 with Retry-After. A token may hold "
        "ZOOTRAIN_MAX_EVENT_STREAMS streams open per job-service process (429 past it)."
    ),
)
async def job_events(
    subscribed: Annotated[tuple[events.JobFeed, events.Subscription], Depends(subscription)],
    last_event_id: Annotated[
        str | None, Header(alias="Last-Event-ID", pattern=r"^\d{1,19}(-\d{1,5})?$")
    ] = None,
) -> AsyncIterable[ServerSentEvent]:
    after = (0, 0)
    if last_event_id is not None:
        zxid, _, node = last_event_id.partition("-")
        after = (int(zxid), int(node or 0))
    feed, queue = subscribed
    async for event in events.stream(feed, queue, after, ping=PING_SECONDS):
        if event is None:
            yield ServerSentEvent(comment="keep-alive")
        else:
            yield ServerSentEvent(id=event.id, event=event.kind, data=event.data)


async def _view(svc: Services, job: JobRecord, shards: list[ShardRecord] | None = None) -> JobView:
    """The job with its shards (read from ZooKeeper unless the caller just wrote them)."""
    if shards is None:
        shards = [s for s, _ in await svc.queue.read_shards(job.id, job.spec.tasks)]
    # The records are validated already: construct, rather than validate the spec once more.
    fields = {name: getattr(job, name) for name in type(job).model_fields}
    return JobView.model_construct(**fields, shards=shards)
