"""The job service: ``uvicorn app.main:app``. Stateless: every record lives in ZooKeeper."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI

from app import problems, spec_schema
from app.deps import Services
from app.headers import DASHBOARD_CSP, SecurityHeaders, docs_csp, page_headers
from app.limits import BodySizeLimit, ZooKeeperDeadline
from app.predict_route import PredictLane
from app.routers import config, datasets, docs, health, jobs, models, overview, ui, workers
from app.submit_route import SubmitLane
from zootrain import __version__
from zootrain.config_views import ConfigPatch
from zootrain.settings import Settings, get_settings
from zootrain.zk import TRANSIENT_ERRORS

log = logging.getLogger("zootrain.api")


async def _prepare(svc: Services) -> None:
    """Create the base znodes and read the live token list once the first session is up (and
    again if that fails)."""
    while True:
        await svc.zk.wait_connected()
        try:
            await svc.queue.ensure_layout()
            if svc.token_watch is not None:
                await svc.token_watch.start()
            await svc.config_watch.start()
            svc.prepared = True
            return
        except TRANSIENT_ERRORS:
            continue


async def _start_pool(svc: Services) -> None:
    try:
        await svc.pool.start()
    except Exception:
        # /readyz stays 503; the first request that needs a child tries again.
        log.exception("could not start the prediction processes")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        svc = Services.build(settings)
        app.state.services = svc
        # Connect in the background: the process serves /healthz at once and /readyz turns 200
        # when the session is up, instead of failing to start while ZooKeeper is away.
        svc.zk.start_background()
        prepare = asyncio.create_task(_prepare(svc))
        # The prediction processes (scikit-learn's imports, in their forkserver): /readyz waits
        # for them, so that the first submit or predict does not.
        children = asyncio.create_task(_start_pool(svc))
        # The imported modules (FastAPI, pydantic, kazoo) are long-lived objects that every
        # full collection would walk again (the submit tail under load): move them out of the
        # collector's sight once start-up is done.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            prepare.cancel()
            children.cancel()
            await svc.pool.close()
            svc.tables.close()
            await svc.queue.close()
            await svc.zk.stop()

    app = FastAPI(
        title="zootrain",
        version=__version__,
        summary="Distributed training of scikit-learn models, coordinated by Apache ZooKeeper.",
        lifespan=lifespan,
        # /docs is served from a package (app/routers/docs.py), not from a CDN; ReDoc has no
        # such package, so it is not served.
        docs_url=None,
        redoc_url=None,
    )
    problems.install(app)
    for router in (
        models.predict_router,  # first: the route most requests take
        jobs.router,
        datasets.router,
        models.router,
        workers.router,
        config.router,
        health.router,
    ):
        app.include_router(router)
    app.include_router(overview.router)  # the dashboard's overview page
    app.include_router(ui.router)
    app.include_router(docs.router)
    app.mount("/ui", ui.static, name="ui")
    app.mount(docs.ASSETS_PATH, docs.assets, name="docs-assets")
    app.add_middleware(
        BodySizeLimit, max_bytes=settings.max_request_bytes, exempt=(datasets.UPLOAD_PATH,)
    )
    app.add_middleware(
        SecurityHeaders,
        pages={
            "/ui": page_headers(DASHBOARD_CSP),
            docs.DOCS_PATH: page_headers(docs_csp(docs.INLINE_SCRIPT)),
        },
    )
    app.add_middleware(ZooKeeperDeadline, seconds=settings.zk_request_timeout)
    # Outermost of ours: a well-formed submit skips the generic path (app.submit_route).
    app.add_middleware(
        SubmitLane,
        api=app,
        endpoint=jobs.submit_job,
        max_bytes=settings.max_request_bytes,
        deadline=settings.zk_request_timeout,
    )
    # Beside it: a well-formed prediction skips the generic path too (app.predict_route).
    app.add_middleware(
        PredictLane,
        api=app,
        max_bytes=settings.max_request_bytes,
        deadline=settings.zk_request_timeout,
    )
    _add_problem_schema(app)
    return app


def _add_problem_schema(app: FastAPI) -> None:
    """Register the Problem schema that the operations' error responses refer to."""
    build = app.openapi

    def openapi() -> dict[str, object]:
        if app.openapi_schema is None:
            schema = build()
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components["Problem"] = problems.Problem.model_json_schema(
                ref_template="#/components/schemas/{model}"
            )
            # PATCH /v1/config reads its merge patch itself (to name what is wrong in its own
            # words): its body's schema is registered here.
            patch = ConfigPatch.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(patch.pop("$defs", {}))
            components["ConfigPatch"] = patch
            _document_auth_problems(schema)
            _add_links(schema)
            spec_schema.add_algorithm_branches(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _document_auth_problems(schema: dict[str, Any]) -> None:
    """Every operation that needs a token can answer 401 (no valid token) and 403 (scope)."""
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            if isinstance(operation, dict) and operation.get("security"):
                responses = operation.setdefault("responses", {})
                for status, entry in problems.problem_responses(401, 403).items():
                    responses.setdefault(str(status), entry)


# OpenAPI links: what a response's id lets a client do next. Clients and generators follow
# them, and so does schemathesis' stateful phase, which is how the fuzz run reaches a job or a
# dataset that exists instead of guessing ids that 404.
_JOB = "/v1/jobs/{job_id}"
_DATASET = "/v1/datasets/{dataset_id}"
_MODEL = "/v1/models/{name}"
_DRAIN = "/v1/workers/{worker_id}/drain"
_FIRST_MODEL = {"name": "$response.body#/0/name"}
_FIRST_LATEST = {**_FIRST_MODEL, "version": "$response.body#/0/latest_version"}
_LINKS: dict[tuple[str, str], dict[str, tuple[str, str, dict[str, str]]]] = {
    ("/v1/jobs", "post"): {
        "GetJob": (_JOB, "get", {"job_id": "$response.body#/id"}),
        "CancelJob": (_JOB, "delete", {"job_id": "$response.body#/id"}),
        "JobEvents": (_JOB + "/events", "get", {"job_id": "$response.body#/id"}),
    },
    ("/v1/models", "get"): {
        "ListVersions": (_MODEL + "/versions", "get", _FIRST_MODEL),
        "GetLatestVersion": (_MODEL + "/versions/{version}", "get", _FIRST_LATEST),
        "GetLatestArtifact": (_MODEL + "/versions/{version}/artifact", "get", _FIRST_LATEST),
        "Predict": (_MODEL + "/predict", "post", _FIRST_MODEL),
        "DeleteLatestVersion": (_MODEL + "/versions/{version}", "delete", _FIRST_LATEST),
        "DeleteModel": (_MODEL, "delete", _FIRST_MODEL),
        "GetModel": (_MODEL, "get", _FIRST_MODEL),
        "GetServedArtifact": (_MODEL + "/artifact", "get", _FIRST_MODEL),
        "SetAlias": (_MODEL + "/aliases/{alias}", "put", _FIRST_MODEL),
    },
    ("/v1/models/{name}/aliases/{alias}", "put"): {
        "DeleteAlias": (
            _MODEL + "/aliases/{alias}",
            "delete",
            {"name": "$request.path.name", "alias": "$request.path.alias"},
        ),
        "PredictByAlias": (_MODEL + "/predict", "post", {"name": "$request.path.name"}),
    },
    ("/v1/workers", "get"): {
        "DrainWorker": (_DRAIN, "post", {"worker_id": "$response.body#/0/id"}),
    },
    (_DRAIN, "post"): {
        "UndrainWorker": (_DRAIN, "delete", {"worker_id": "$response.body#/worker_id"}),
    },
    ("/v1/datasets", "post"): {
        "GetDataset": (_DATASET, "get", {"dataset_id": "$response.body#/id"}),
        "DeleteDataset": (_DATASET, "delete", {"dataset_id": "$response.body#/id"}),
    },
}


def _add_links(schema: dict[str, Any]) -> None:
    paths = schema.get("paths", {})
    for (path, method), links in _LINKS.items():
        operation = paths[path][method]
        for status in operation["responses"]:
            if not status.startswith("2"):
                continue
            operation["responses"][status]["links"] = {
                name: {"operationId": paths[target][verb]["operationId"], "parameters": params}
                for name, (target, verb, params) in links.items()
            }


app = create_app()
