"""Loaded models, kept by sha256 so that predictions do not re-read the artifact every time."""

from __future__ import annotations

import tempfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool

from zootrain.artifacts import ArtifactStore
from zootrain.errors import ArtifactError
from zootrain.ml import modelfile


class ModelCache:
    def __init__(self, store: ArtifactStore, size: int = 16) -> None:
        self.store = store
        self.size = size
        self._models: OrderedDict[str, Any] = OrderedDict()

    async def get(self, uri: str, sha256: str) -> Any:
        model = self._models.get(sha256)
        if model is None:
            # Reading and checking a model file is blocking work: keep it off the event loop.
            model = await run_in_threadpool(self._load, uri, sha256)
            self._models[sha256] = model
            while len(self._models) > self.size:
                self._models.popitem(last=False)
        else:
            self._models.move_to_end(sha256)
        return model

    def _load(self, uri: str, sha256: str) -> Any:
        # Streamed from the store into a private temporary file while its sha256 is checked,
        # then loaded from there: the file's bytes are never held in memory next to the model.
        with tempfile.NamedTemporaryFile(prefix="zootrain-model-") as handle:
            self.store.download(uri, sha256, handle)
            handle.flush()
            try:
                return modelfile.load(Path(handle.name))
            except modelfile.UntrustedModelError as exc:
                raise ArtifactError(str(exc)) from None
