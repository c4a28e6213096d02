"""The async client, ``AsyncClient``: the same API as ``Client``, with ``await``."""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import anyio
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


class AsyncClient(_Base):
    """The same API as ``Client``, with ``await`` (and ``async for`` over ``events``)."""

    def __init__(
        self,
        base_url: str | None = None,
        *,
        token: str | None = None,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(base_url, timeout, retry, token)
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            headers=self.headers,
            auth=self._auth,
            transport=transport,
            timeout=self.timeout,
        )

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- plumbing

    async def _send(
        self, call: _Call[Any], *, stream: bool = False, deadline: float | None = None
    ) -> httpx.Response:
        attempt = 0
        while True:
            request = self._http.build_request(**self._request_kwargs(call, deadline, stream))
            try:
                response = await self._http.send(request, stream=stream)
            except httpx.TransportError as exc:
                delay = self._delay(call, attempt, error=exc)
                if delay is None:
                    raise
            else:
                if response.is_success:
                    return response
                if stream:
                    await response.aread()
                await response.aclose()
                delay = self._delay(call, attempt, response=response)
                if delay is None:
                    raise ZootrainError.from_response(response)
            _check_deadline(deadline, delay, f"{call.method} {call.path}")
            await anyio.sleep(delay)
            attempt += 1

    async def _run(self, call: _Call[T]) -> T:
        return call.parse(await self._send(call))

    # -- jobs

    async def submit(
        self, spec: JobSpec | Mapping[str, Any], idempotency_key: str | None = None
    ) -> JobView:
        """Submit a job; retried safely under one Idempotency-Key (a fresh uuid4 by default)."""
        return await self._run(_Calls.submit(spec, idempotency_key))

    async def get_job(self, job_id: str) -> JobView:
        return await self._run(_Calls.get_job(job_id))

    async def list_jobs(
        self,
        state: JobState | str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> JobList:
        return await self._run(_Calls.list_jobs(state, limit, cursor))

    async def iter_jobs(
        self, state: JobState | str | None = None, page_size: int | None = None
    ) -> AsyncIterator[JobRecord]:
        cursor: str | None = None
        while True:
            page = await self.list_jobs(state, page_size, cursor)
            for item in page.items:
                yield item
            if page.next_cursor is None or not page.items:
                return
            cursor = page.next_cursor

    async def cancel(self, job_id: str) -> JobView:
        return await self._run(_Calls.cancel(job_id))

    async def delete_model(self, name: str, version: int | None = None) -> None:
        """See ``Client.delete_model``."""
        await self._run(_Calls.delete_model(name, version))

    def events(
        self, job_id: str, *, last_event_id: str | None = None, timeout: float | None = None
    ) -> AsyncIterator[Event]:
        """See ``Client.events``."""
        return self._events(job_id, _EventCursor(last_event_id), _deadline(timeout))

    async def _events(
        self, job_id: str, cursor: _EventCursor, deadline: float | None
    ) -> AsyncGenerator[Event, None]:
        failures = 0
        while not cursor.done:
            call = _Calls.events(job_id, cursor)
            received = False
            error: BaseException | None = None
            response = await self._send(call, stream=True, deadline=deadline)
            try:
                decoder = _SSEDecoder()
                async for line in response.aiter_lines():
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
                await response.aclose()
            if not received and error is None and (await self.get_job(job_id)).state.terminal:
                return
            delay = self.retry.delay(failures, idempotent=True, error=error or httpx.ReadError(""))
            if delay is None:
                raise error or _stream_ended(job_id, failures + 1)
            _check_deadline(deadline, delay, f"events of job {job_id}")
            await anyio.sleep(delay)
            failures += 1

    async def wait(self, job_id: str, timeout: float | None = None) -> JobView:
        """See ``Client.wait``."""
        events = self._events(job_id, _EventCursor(), _deadline(timeout))
        try:
            async for _ in events:
                pass
        finally:
            await events.aclose()
        return await self.get_job(job_id)

    # -- models

    async def models(self) -> list[ModelSummary]:
        return await self._run(_Calls.models())

    async def versions(self, name: str) -> list[VersionRecord]:
        return await self._run(_Calls.versions(name))

    async def version(self, name: str, version: int) -> VersionRecord:
        return await self._run(_Calls.version(name, version))

    async def download_artifact(
        self,
        name: str,
        version: int | None,
        path: str | os.PathLike[str],
        *,
        alias: str | None = None,
    ) -> Path:
        """See ``Client.download_artifact``."""
        call = (
            _Calls.artifact(name, version)
            if version is not None
            else _Calls.artifact_by_alias(name, alias)
        )
        response = await self._send(call, stream=True)
        try:
            served = version or int(response.headers.get("X-Model-Version", "0"))
            target = _download_target(path, name, served)
            partial = target.with_name(target.name + ".part")
            expected = _expected_sha256(response)
            digest = hashlib.sha256()
            try:
                with partial.open("wb") as out:
                    async for chunk in response.aiter_bytes():
                        digest.update(chunk)
                        out.write(chunk)
                _check_sha256(response, expected, digest.hexdigest())
            except BaseException:
                partial.unlink(missing_ok=True)
                raise
        finally:
            await response.aclose()
        partial.replace(target)
        return target

    async def predict(
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
        return await self._run(call)

    # -- aliases

    async def model(self, name: str) -> ModelView:
        """The model: its aliases (with ``aliases_version`` for If-Match) and what it serves."""
        return await self._run(_Calls.model(name))

    async def set_alias(
        self, name: str, alias: str, version: int, *, if_match: int | None = None
    ) -> ModelView:
        """Point ``alias`` at ``version``. With ``if_match`` (a ModelView's aliases_version)
        the move is refused with a 409 ZootrainError if another move landed since."""
        return await self._run(_Calls.set_alias(name, alias, version, if_match))

    async def delete_alias(
        self, name: str, alias: str, *, if_match: int | None = None
    ) -> ModelView:
        return await self._run(_Calls.delete_alias(name, alias, if_match))

    # -- service

    async def workers(self) -> list[WorkerRecord]:
        return await self._run(_Calls.workers())

    async def drain_worker(self, worker_id: str) -> DrainRecord:
        """Ask a worker to finish what it holds and claim nothing new (admin)."""
        return await self._run(_Calls.drain_worker(worker_id))

    async def undrain_worker(self, worker_id: str) -> None:
        """Let a drained worker claim work again (admin)."""
        return await self._run(_Calls.undrain_worker(worker_id))

    # -- live configuration

    async def config(self) -> ConfigView:
        """The live configuration: every setting in effect, the document's version (its ETag)."""
        return await self._run(_Calls.config())

    async def update_config(
        self, settings: Mapping[str, Any] | None, *, if_match: int | None = None
    ) -> ConfigView:
        """Change live settings (admin): a merge patch, so ``None`` as a value returns that
        setting to the environment's (and ``settings=None`` all of them). ``if_match`` (a
        version from ``config()``): ZootrainError 412 if another change came first."""
        return await self._run(_Calls.update_config(settings, if_match))

    async def config_history(self, limit: int | None = None) -> list[ConfigChange]:
        """Changes to the configuration, newest first."""
        return await self._run(_Calls.config_history(limit))

    async def overview(self, failures: int = 10) -> Overview:
        """Jobs per state, the queue depth and the latest failed jobs with their errors."""
        return await self._run(_Calls.overview(failures))

    async def health(self) -> Status:
        return await self._run(_Calls.health())

    async def ready(self) -> Status:
        return await self._run(_Calls.ready())

    async def openapi(self) -> dict[str, Any]:
        document: dict[str, Any] = await self._run(_Calls.openapi())
        return document

    # -- datasets

    async def upload_dataset(self, path: str | os.PathLike[str], name: str | None = None) -> Any:
        # Read off the event loop; httpx would read a file object with blocking calls.
        data = await anyio.Path(path).read_bytes()
        call = _Calls.upload_dataset(Path(path), io.BytesIO(data), name)
        return await self._datasets("uploading datasets", call)

    async def list_datasets(self, limit: int | None = None, cursor: str | None = None) -> Any:
        return await self._datasets("listing datasets", _Calls.list_datasets(limit, cursor))

    async def get_dataset(self, dataset_id: str) -> Any:
        return await self._datasets("datasets", _Calls.get_dataset(dataset_id))

    async def _datasets(self, what: str, call: _Call[Any]) -> Any:
        try:
            return await self._run(call)
        except ZootrainError as error:
            if error.status not in (404, 405):
                raise
            raise _unavailable(what, error, await self.openapi()) from None
