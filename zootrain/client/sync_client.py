"""The sync client, ``Client``."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

from zootrain.client.base import (
    DEFAULT_TIMEOUT,
    _Base,
    _check_deadline,
    _check_sha256,
    _deadline,
    _download_target,
    _expected_sha256,
    _stream_ended,
    _unavailable,
)
from zootrain.client.calls import T, _Call, _Calls
from zootrain.client.errors import ZootrainError
from zootrain.client.events import Event, _EventCursor, _SSEDecoder
from zootrain.client.retry import RetryPolicy
from zootrain.config_views import ConfigChange, ConfigView
from zootrain.records import (
    DrainRecord,
    JobRecord,
    JobSpec,
    JobState,
    VersionRecord,
    WorkerRecord,
)
from zootrain.views import (
    JobList,
    JobView,
    ModelSummary,
    ModelView,
    Overview,
    PredictResponse,
    Status,
)


class Client(_Base):
    """``Client("http://host:8000")``, or ``$ZOOTRAIN_URL``, or http://127.0.0.1:8000.

    ``token`` is the API token sent as ``Authorization: Bearer`` (default: ``$ZOOTRAIN_TOKEN``;
    ``""`` sends none).
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        token: str | None = None,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(base_url, timeout, retry, token)
        self._http = httpx.Client(
            base_url=self.base_url,
            headers=self.headers,
            auth=self._auth,
            transport=transport,
            timeout=self.timeout,
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- plumbing

    def _send(
        self, call: _Call[Any], *, stream: bool = False, deadline: float | None = None
    ) -> httpx.Response:
        attempt = 0
        while True:
            request = self._http.build_request(**self._request_kwargs(call, deadline, stream))
            try:
                response = self._http.send(request, stream=stream)
            except httpx.TransportError as exc:
                delay = self._delay(call, attempt, error=exc)
                if delay is None:
                    raise
            else:
                if response.is_success:
                    return response
                if stream:
                    response.read()
                response.close()
                delay = self._delay(call, attempt, response=response)
                if delay is None:
                    raise ZootrainError.from_response(response)
            _check_deadline(deadline, delay, f"{call.method} {call.path}")
            time.sleep(delay)
            attempt += 1

    def _run(self, call: _Call[T]) -> T:
        return call.parse(self._send(call))

    # -- jobs

    def submit(
        self, spec: JobSpec | Mapping[str, Any], idempotency_key: str | None = None
    ) -> JobView:
        """Submit a job; retried safely under one Idempotency-Key (a fresh uuid4 by default)."""
        return self._run(_Calls.submit(spec, idempotency_key))

    def get_job(self, job_id: str) -> JobView:
        return self._run(_Calls.get_job(job_id))

    def list_jobs(
        self,
        state: JobState | str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> JobList:
        """One page of jobs, newest first; pass ``next_cursor`` as ``cursor`` for the next."""
        return self._run(_Calls.list_jobs(state, limit, cursor))

    def iter_jobs(
        self, state: JobState | str | None = None, page_size: int | None = None
    ) -> Iterator[JobRecord]:
        """Every job, newest first, fetching pages as needed."""
        cursor: str | None = None
        while True:
            page = self.list_jobs(state, page_size, cursor)
            yield from page.items
            if page.next_cursor is None or not page.items:
                return
            cursor = page.next_cursor

    def cancel(self, job_id: str) -> JobView:
        return self._run(_Calls.cancel(job_id))

    def delete_model(self, name: str, version: int | None = None) -> None:
        """Delete one version of a model, or all of them (needs a token with ``admin``)."""
        self._run(_Calls.delete_model(name, version))

    def events(
        self, job_id: str, *, last_event_id: str | None = None, timeout: float | None = None
    ) -> Iterator[Event]:
        """The job's changes as they happen, ending after its terminal job event.

        A dropped connection is resumed with ``Last-Event-ID``: no event is missed or repeated.
        Pass an event's ``event_id`` as ``last_event_id`` to resume a stream you stopped.
        Raises TimeoutError when ``timeout`` seconds pass before the end.
        """
        return self._events(job_id, _EventCursor(last_event_id), _deadline(timeout))

    def _events(self, job_id: str, cursor: _EventCursor, deadline: float | None) -> Iterator[Event]:
        failures = 0
        while not cursor.done:
            call = _Calls.events(job_id, cursor)
            received = False
            error: BaseException | None = None
            response = self._send(call, stream=True, deadline=deadline)
            try:
                decoder = _SSEDecoder()
                for line in response.iter_lines():
                    raw = decoder.feed(line)
                    event = cursor.accept(raw) if raw is not None else None
                    if event is not None:
                        received, failures = True, 0
                        yield event
                        if cursor.done:
                            return
            except httpx.TransportError as exc:  # the connection dropped mid-stream
                _check_deadline(deadline, 0, f"events of job {job_id}")
                error = exc
            finally:
                response.close()
            if not received and error is None and self.get_job(job_id).state.terminal:
                return  # the stream ended at once: its end was seen before (Last-Event-ID)
            delay = self.retry.delay(failures, idempotent=True, error=error or httpx.ReadError(""))
            if delay is None:
                raise error or _stream_ended(job_id, failures + 1)
            _check_deadline(deadline, delay, f"events of job {job_id}")
            time.sleep(delay)
            failures += 1

    def wait(self, job_id: str, timeout: float | None = None) -> JobView:
        """Follow the job's events until it is terminal; then the job with its shards.

        Raises TimeoutError when ``timeout`` seconds pass first.
        """
        for _ in self._events(job_id, _EventCursor(), _deadline(timeout)):
            pass
        return self.get_job(job_id)

    # -- models

    def models(self) -> list[ModelSummary]:
        return self._run(_Calls.models())

    def versions(self, name: str) -> list[VersionRecord]:
        return self._run(_Calls.versions(name))

    def version(self, name: str, version: int) -> VersionRecord:
        return self._run(_Calls.version(name, version))

    def download_artifact(
        self,
        name: str,
        version: int | None,
        path: str | os.PathLike[str],
        *,
        alias: str | None = None,
    ) -> Path:
        """Save the version's model file at ``path`` (a file, or a directory to put it in).
        ``version`` None: the version ``alias`` points at, or the one served by default.

        The bytes are checked against the ``X-Content-SHA256`` header before the file appears;
        a mismatch raises ChecksumMismatch and leaves nothing behind.
        """
        call = (
            _Calls.artifact(name, version)
            if version is not None
            else _Calls.artifact_by_alias(name, alias)
        )
        response = self._send(call, stream=True)
        try:
            served = version or int(response.headers.get("X-Model-Version", "0"))
            target = _download_target(path, name, served)
            partial = target.with_name(target.name + ".part")
            expected = _expected_sha256(response)
            digest = hashlib.sha256()
            try:
                with partial.open("wb") as out:
                    for chunk in response.iter_bytes():
                        digest.update(chunk)
                        out.write(chunk)
                _check_sha256(response, expected, digest.hexdigest())
            except BaseException:
                partial.unlink(missing_ok=True)
                raise
        finally:
            response.close()
        partial.replace(target)
        return target

    def predict(
        self,
        name: str,
        instances: Sequence[Sequence[float]] | Any | None = None,
        version: int | None = None,
        *,
        alias: str | None = None,
        records: Sequence[Mapping[str, Any]] | None = None,
        dataframe_split: Mapping[str, Any] | None = None,
    ) -> PredictResponse:
        """Predictions for encoded ``instances``, or raw rows (``records``: column -> value, or
        MLflow's ``dataframe_split``: columns and data) of a model trained on an uploaded
        dataset. ``version`` or ``alias`` pick the version; by default the champion alias's,
        else the latest."""
        call = _Calls.predict(
            name, instances, version, alias=alias, records=records, dataframe_split=dataframe_split
        )
        return self._run(call)

    # -- aliases

    def model(self, name: str) -> ModelView:
        """The model: its aliases (with ``aliases_version`` for If-Match) and what it serves."""
        return self._run(_Calls.model(name))

    def set_alias(
        self, name: str, alias: str, version: int, *, if_match: int | None = None
    ) -> ModelView:
        """Point ``alias`` at ``version``. With ``if_match`` (a ModelView's aliases_version)
        the move is refused with a 409 ZootrainError if another move landed since."""
        return self._run(_Calls.set_alias(name, alias, version, if_match))

    def delete_alias(self, name: str, alias: str, *, if_match: int | None = None) -> ModelView:
        return self._run(_Calls.delete_alias(name, alias, if_match))

    # -- service

    def workers(self) -> list[WorkerRecord]:
        return self._run(_Calls.workers())

    def drain_worker(self, worker_id: str) -> DrainRecord:
        """Ask a worker to finish what it holds and claim nothing new (admin)."""
        return self._run(_Calls.drain_worker(worker_id))

    def undrain_worker(self, worker_id: str) -> None:
        """Let a drained worker claim work again (admin)."""
        return self._run(_Calls.undrain_worker(worker_id))

    # -- live configuration

    def config(self) -> ConfigView:
        """The live configuration: every setting in effect, the document's version (its ETag)."""
        return self._run(_Calls.config())

    def update_config(
        self, settings: Mapping[str, Any] | None, *, if_match: int | None = None
    ) -> ConfigView:
        """Change live settings (admin): a merge patch, so ``None`` as a value returns that
        setting to the environment's (and ``settings=None`` all of them). ``if_match`` (a
        version from ``config()``): ZootrainError 412 if another change came first."""
        return self._run(_Calls.update_config(settings, if_match))

    def config_history(self, limit: int | None = None) -> list[ConfigChange]:
        """Changes to the configuration, newest first."""
        return self._run(_Calls.config_history(limit))

    def overview(self, failures: int = 10) -> Overview:
        """Jobs per state, the queue depth and the latest failed jobs with their errors."""
        return self._run(_Calls.overview(failures))

    def health(self) -> Status:
        return self._run(_Calls.health())

    def ready(self) -> Status:
        """Status "ready"; ZootrainError(503) while the service has no ZooKeeper session."""
        return self._run(_Calls.ready())

    def openapi(self) -> dict[str, Any]:
        """The service's OpenAPI document (what this server offers)."""
        document: dict[str, Any] = self._run(_Calls.openapi())
        return document

    # -- datasets (only on servers that have /v1/datasets)

    def upload_dataset(self, path: str | os.PathLike[str], name: str | None = None) -> Any:
        """Upload a CSV or Parquet file; the dataset record (JSON) the service made of it."""
        with Path(path).open("rb") as file:
            call = _Calls.upload_dataset(Path(path), file, name)
            return self._datasets("uploading datasets", call)

    def list_datasets(self, limit: int | None = None, cursor: str | None = None) -> Any:
        return self._datasets("listing datasets", _Calls.list_datasets(limit, cursor))

    def get_dataset(self, dataset_id: str) -> Any:
        return self._datasets("datasets", _Calls.get_dataset(dataset_id))

    def _datasets(self, what: str, call: _Call[Any]) -> Any:
        try:
            return self._run(call)
        except ZootrainError as error:
            if error.status not in (404, 405):
                raise
            raise _unavailable(what, error, self.openapi()) from None
