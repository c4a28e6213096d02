"""Every endpoint of API version 1 as data (``_Call``: method, path, body, how the answer is
read), so that the sync and async clients share all but their sending loops."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Generic, TypeVar

import httpx
from pydantic import TypeAdapter

from zootrain.client.events import _EventCursor
from zootrain.config_views import ConfigChange, ConfigView
from zootrain.records import DrainRecord, JobSpec, JobState, VersionRecord, WorkerRecord
from zootrain.views import (
    JobList,
    JobView,
    ModelSummary,
    ModelView,
    Overview,
    PredictResponse,
    Status,
)

T = TypeVar("T")


@functools.cache
def _model(kind: type[T]) -> Callable[[httpx.Response], T]:
    """The parser of a JSON answer into ``kind`` (built once per type)."""
    adapter = TypeAdapter(kind)

    def parse(response: httpx.Response) -> T:
        # The service validated every job it answers with at submit: its answers are not
        # checked against scikit-learn again here (which would also import it in the client).
        return adapter.validate_json(response.content)

    return parse


def _json(response: httpx.Response) -> Any:
    return response.json()


@dataclass(frozen=True)
class _Call(Generic[T]):
    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    params: Mapping[str, Any] | None = None
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    files: Mapping[str, tuple[str, BinaryIO, str]] | None = None
    data: Mapping[str, str] | None = None  # form fields sent with ``files``
    idempotent: bool = False
    retry: bool = True


def _get(path: str, parse: Callable[[httpx.Response], T], **params: Any) -> _Call[T]:
    query = {k: v for k, v in params.items() if v is not None}
    return _Call("GET", path, parse, params=query or None, idempotent=True)


def _spec_body(spec: JobSpec | Mapping[str, Any]) -> Any:
    # A JobSpec was validated here already; a mapping is sent as is, and the service, which
    # has the final word, answers a problem naming what is wrong.
    return spec.model_dump(mode="json") if isinstance(spec, JobSpec) else dict(spec)


def _instances(rows: Sequence[Sequence[float]] | Any) -> list[list[float]]:
    return [[float(value) for value in row] for row in rows]


class _Calls:
    """Every endpoint of API version 1, as data."""

    @staticmethod
    def submit(spec: JobSpec | Mapping[str, Any], idempotency_key: str | None) -> _Call[JobView]:
        key = idempotency_key or str(uuid.uuid4())
        return _Call(
            "POST",
            "/v1/jobs",
            _model(JobView),
            body=_spec_body(spec),
            headers={"Idempotency-Key": key},
            idempotent=True,  # the key makes a repeat return the same job
        )

    @staticmethod
    def get_job(job_id: str) -> _Call[JobView]:
        return _get(f"/v1/jobs/{_segment(job_id)}", _model(JobView))

    @staticmethod
    def list_jobs(
        state: JobState | str | None, limit: int | None, cursor: str | None
    ) -> _Call[JobList]:
        return _get("/v1/jobs", _model(JobList), state=state, limit=limit, cursor=cursor)

    @staticmethod
    def cancel(job_id: str) -> _Call[JobView]:
        return _Call("DELETE", f"/v1/jobs/{_segment(job_id)}", _model(JobView), idempotent=True)

    @staticmethod
    def events(job_id: str, cursor: _EventCursor) -> _Call[None]:
        return _Call(
            "GET",
            f"/v1/jobs/{_segment(job_id)}/events",
            lambda _: None,
            headers={"Accept": "text/event-stream", **cursor.headers()},
            idempotent=True,
        )

    @staticmethod
    def models() -> _Call[list[ModelSummary]]:
        return _get("/v1/models", _model(list[ModelSummary]))

    @staticmethod
    def versions(name: str) -> _Call[list[VersionRecord]]:
        return _get(f"/v1/models/{_segment(name)}/versions", _model(list[VersionRecord]))

    @staticmethod
    def version(name: str, version: int) -> _Call[VersionRecord]:
        return _get(f"/v1/models/{_segment(name)}/versions/{int(version)}", _model(VersionRecord))

    @staticmethod
    def artifact(name: str, version: int) -> _Call[None]:
        path = f"/v1/models/{_segment(name)}/versions/{int(version)}/artifact"
        return _get(path, lambda _: None)

    @staticmethod
    def artifact_by_alias(name: str, alias: str | None) -> _Call[None]:
        return _get(f"/v1/models/{_segment(name)}/artifact", lambda _: None, alias=alias)

    @staticmethod
    def model(name: str) -> _Call[ModelView]:
        return _get(f"/v1/models/{_segment(name)}", _model(ModelView))

    @staticmethod
    def set_alias(name: str, alias: str, version: int, if_match: int | None) -> _Call[ModelView]:
        return _Call(
            "PUT",
            f"/v1/models/{_segment(name)}/aliases/{_segment(alias)}",
            _model(ModelView),
            body={"version": int(version)},
            headers=_if_match(if_match),
            # Setting an alias to a version twice is the same as once; with If-Match a retry
            # after a lost answer would meet its own move as a conflict, so it is not retried.
            idempotent=if_match is None,
        )

    @staticmethod
    def delete_alias(name: str, alias: str, if_match: int | None) -> _Call[ModelView]:
        return _Call(
            "DELETE",
            f"/v1/models/{_segment(name)}/aliases/{_segment(alias)}",
            _model(ModelView),
            headers=_if_match(if_match),
        )

    @staticmethod
    def delete_model(name: str, version: int | None) -> _Call[None]:
        path = f"/v1/models/{_segment(name)}"
        if version is not None:
            path += f"/versions/{int(version)}"
        return _Call("DELETE", path, lambda _: None, idempotent=True)

    @staticmethod
    def predict(
        name: str,
        instances: Sequence[Sequence[float]] | Any | None,
        version: int | None,
        *,
        alias: str | None = None,
        records: Sequence[Mapping[str, Any]] | None = None,
        dataframe_split: Mapping[str, Any] | None = None,
    ) -> _Call[PredictResponse]:
        body: dict[str, Any] = {}
        if instances is not None:
            body["instances"] = _instances(instances)
        if records is not None:
            body["records"] = [dict(record) for record in records]
        if dataframe_split is not None:
            body["dataframe_split"] = dict(dataframe_split)
        if version is not None:
            body["version"] = version
        if alias is not None:
            body["alias"] = alias
        return _Call(
            "POST", f"/v1/models/{_segment(name)}/predict", _model(PredictResponse), body=body
        )

    @staticmethod
    def workers() -> _Call[list[WorkerRecord]]:
        return _get("/v1/workers", _model(list[WorkerRecord]))

    @staticmethod
    def drain_worker(worker_id: str) -> _Call[DrainRecord]:
        # Asking twice is harmless: the service keeps the first request.
        path = f"/v1/workers/{_segment(worker_id)}/drain"
        return _Call("POST", path, _model(DrainRecord), idempotent=True)

    @staticmethod
    def undrain_worker(worker_id: str) -> _Call[None]:
        path = f"/v1/workers/{_segment(worker_id)}/drain"
        return _Call("DELETE", path, lambda _: None)

    @staticmethod
    def config() -> _Call[ConfigView]:
        return _get("/v1/config", _model(ConfigView))

    @staticmethod
    def update_config(
        settings: Mapping[str, Any] | None, if_match: int | None
    ) -> _Call[ConfigView]:
        headers = {"Content-Type": "application/merge-patch+json"}
        if if_match is not None:
            headers["If-Match"] = f'"{int(if_match)}"'
        return _Call(
            "PATCH",
            "/v1/config",
            _model(ConfigView),
            body={"settings": None if settings is None else dict(settings)},
            headers=headers,
            # A patch of values is idempotent; with If-Match a repeat would meet its own
            # write and answer 412, so that one is sent once.
            idempotent=if_match is None,
        )

    @staticmethod
    def config_history(limit: int | None) -> _Call[list[ConfigChange]]:
        return _get("/v1/config/history", _model(list[ConfigChange]), limit=limit)

    @staticmethod
    def overview(failures: int = 10) -> _Call[Overview]:
        return _get("/v1/overview", _model(Overview), failures=int(failures))

    @staticmethod
    def health() -> _Call[Status]:
        return _Call("GET", "/healthz", _model(Status), idempotent=True, retry=False)

    @staticmethod
    def ready() -> _Call[Status]:
        return _Call("GET", "/readyz", _model(Status), idempotent=True, retry=False)

    @staticmethod
    def openapi() -> _Call[Any]:
        return _get("/openapi.json", _json)

    @staticmethod
    def upload_dataset(path: Path, file: BinaryIO, name: str | None) -> _Call[Any]:
        # Streamed from the open file (httpx rewinds it for every attempt).
        files = {"file": (path.name, file, _media_type(path))}
        return _Call(
            "POST", "/v1/datasets", _json, files=files, data={"name": name} if name else None
        )

    @staticmethod
    def list_datasets(limit: int | None, cursor: str | None) -> _Call[Any]:
        return _get("/v1/datasets", _json, limit=limit, cursor=cursor)

    @staticmethod
    def get_dataset(dataset_id: str) -> _Call[Any]:
        return _get(f"/v1/datasets/{_segment(dataset_id)}", _json)


def _if_match(version: int | None) -> dict[str, str]:
    return {} if version is None else {"If-Match": f'"{int(version)}"'}


def _media_type(path: Path) -> str:
    return {".csv": "text/csv", ".parquet": "application/vnd.apache.parquet"}.get(
        path.suffix.lower(), "application/octet-stream"
    )


def _segment(value: str) -> str:
    """A path segment: ids and names must not smuggle in another path."""
    if not value or "/" in value or value in (".", ".."):
        raise ValueError(f"invalid path segment {value!r}")
    return value
