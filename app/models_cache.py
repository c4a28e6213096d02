"""Loaded models, kept by sha256 so that predictions do not re-read the artifact every time.

It lives in the job service's prediction children (app.child), never in the job service itself.

The cache is bounded by bytes (ZOOTRAIN_MODEL_CACHE_BYTES), not by a count of models: sixteen
forests of 100 MB each are 1.6 GB. A model weighs its file's size, known from its version record
before it is read (skops stores arrays uncompressed, so a loaded model takes about as much memory
as its file). Loads in flight count too: a load starts only once the model fits beside what is
cached and what is being loaded, evicting the least recently used models first, so many
different models predicted at once never take the cache past its bound. A model that many
requests ask for at the same moment is read once (single flight): the first request starts the
load as a task of its own, and every request, the first included, waits for that task.

A model bigger than the whole cache is still served: it is loaded when nothing else is loading
or cached, used by the requests waiting for it, and not kept.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from starlette.concurrency import run_in_threadpool

from app import service_metrics
from zootrain.artifacts import ArtifactStore
from zootrain.errors import ArtifactError
from zootrain.ml import modelfile

log = logging.getLogger("zootrain.api")


@dataclass
class _Entry:
    model: Any
    size: int


class ModelCache:
    def __init__(self, store: ArtifactStore, capacity: int = 1_000_000_000) -> None:
        self.store = store
        self.capacity = capacity
        self._models: OrderedDict[str, _Entry] = OrderedDict()  # least recently used first
        self._loading: dict[str, asyncio.Task[Any]] = {}
        self._room = asyncio.Condition()
        self.cached = 0  # bytes of the models kept
        self.reserved = 0  # bytes of the models being loaded
        self.loads = 0  # model files read, in all

    def loaded(self, sha256: str) -> Any | None:
        """The model if it is loaded already (a use: it becomes the most recently used)."""
        entry = self._models.get(sha256)
        if entry is None:
            return None
        self._models.move_to_end(sha256)
        return entry.model

    async def get(self, uri: str, sha256: str, size: int) -> Any:
        """The loaded model whose file is ``uri`` (checked against ``sha256``; ``size`` bytes)."""
        model = self.loaded(sha256)
        if model is not None:
            return model
        loading = self._loading.get(sha256)
        if loading is None:
            # A task of its own: a request that goes away does not cancel the others' load.
            loading = asyncio.get_running_loop().create_task(self._load(uri, sha256, size))
            self._loading[sha256] = loading
            loading.add_done_callback(self._loaded)
        return await asyncio.shield(loading)

    def _loaded(self, task: asyncio.Task[Any]) -> None:
        self._loading = {k: t for k, t in self._loading.items() if t is not task}
        if not task.cancelled():
            task.exception()  # retrieved here too: every waiter may have gone away

    async def _load(self, uri: str, sha256: str, size: int) -> Any:
        async with self._room:
            await self._room.wait_for(lambda: self._make_room(size))
            self.reserved += size
        try:
            # Reading and checking a model file is blocking work: keep it off the event loop.
            model = await run_in_threadpool(self._read, uri, sha256)
            self.loads += 1
            service_metrics.MODEL_LOADS.inc()
        finally:
            async with self._room:
                self.reserved -= size
                self._room.notify_all()
        if size <= self.capacity:
            self._models[sha256] = _Entry(model, size)
            self.cached += size
        else:
            log.warning(
                "model %s is %d bytes, more than the model cache holds (%d, "
                "ZOOTRAIN_MODEL_CACHE_BYTES): served without being kept",
                uri,
                size,
                self.capacity,
            )
        service_metrics.MODEL_CACHE_BYTES.set(self.cached)
        return model

    def _make_room(self, size: int) -> bool:
        """Evict the least recently used models until ``size`` more bytes fit; whether they do."""
        while self._models and self.cached + self.reserved + size > self.capacity:
            _, evicted = self._models.popitem(last=False)
            self.cached -= evicted.size
        service_metrics.MODEL_CACHE_BYTES.set(self.cached)
        if self.cached + self.reserved + size <= self.capacity:
            return True
        # Too big for the cache at all: load it alone, once nothing else is held or loading.
        return size > self.capacity and self.reserved == 0 and not self._models

    def _read(self, uri: str, sha256: str) -> Any:
        # A local store's file is checked and loaded in place, through one open handle (no
        # copy: a cold load of a 100 MB forest is then about skops' own load time).
        local = self.store.open_checked(uri, sha256)
        if local is not None:
            with local:
                return self._from_file(local, uri)
        # Otherwise streamed from the store into a private temporary file while its sha256 is
        # checked, then loaded from there: the file's bytes are never held in memory next to
        # the model.
        with tempfile.NamedTemporaryFile(prefix="zootrain-model-") as handle:
            self.store.download(uri, sha256, handle)
            handle.flush()
            return self._from_file(Path(handle.name), uri)

    @staticmethod
    def _from_file(file: Path | IO[bytes], uri: str) -> Any:
        try:
            return modelfile.load(file)
        except modelfile.UntrustedModelError as exc:
            raise ArtifactError(str(exc)) from None
        except ValueError as exc:
            raise ArtifactError(f"artifact {uri}: {exc}") from None
