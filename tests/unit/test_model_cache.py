"""The prediction cache: bounded by bytes while many models are asked for at once, and a model
asked for by many requests at the same moment read once. Real model files in a real store."""

from __future__ import annotations

import asyncio
import random
import threading
from pathlib import Path
from typing import IO, Any

import pytest
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier

from app.models_cache import ModelCache
from zootrain.artifacts import ArtifactStore
from zootrain.ml import modelfile


class CountingStore(ArtifactStore):
    """The real store, counting reads (and slowing them a little, so that loads overlap)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.reads: dict[str, int] = {}
        self._lock = threading.Lock()

    def _count(self, key: str) -> None:
        with self._lock:
            self.reads[key] = self.reads.get(key, 0) + 1
        threading.Event().wait(0.02)

    def download(self, key: str, sha256: str, out: IO[bytes]) -> int:
        self._count(key)
        return super().download(key, sha256, out)

    def open_checked(self, key: str, sha256: str) -> IO[bytes] | None:
        self._count(key)
        return super().open_checked(key, sha256)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[tuple[str, str, int]]]:
    root = tmp_path_factory.mktemp("store")
    store = ArtifactStore(root)
    X, y = load_iris(return_X_y=True)
    files = []
    for seed in range(10):
        forest = RandomForestClassifier(n_estimators=5 + seed, random_state=seed).fit(X, y)
        data = modelfile.dumps(forest)
        uri, digest = store.put(data)
        files.append((uri, digest, len(data)))
    return root, files


def test_the_cache_stays_under_its_bound_while_many_models_are_predicted(
    models: tuple[Path, list[tuple[str, str, int]]],
) -> None:
    root, files = models
    store = CountingStore(root)
    capacity = sum(size for *_, size in files[:3])  # about three of the ten models
    cache = ModelCache(store, capacity)
    seen: list[int] = []
    X = load_iris(return_X_y=True)[0][:5]

    async def predict(uri: str, digest: str, size: int) -> None:
        model = await cache.get(uri, digest, size)
        seen.append(cache.cached + cache.reserved)
        assert model.predict(X).shape == (5,)

    async def scenario() -> None:
        rng = random.Random(0)
        requests = [rng.choice(files) for _ in range(200)]
        await asyncio.gather(*(predict(*request) for request in requests))

    asyncio.run(scenario())
    assert max(seen) <= capacity, (max(seen), capacity)
    assert cache.cached <= capacity
    assert len(store.reads) == len(files)  # every model was loaded, some more than once


def test_a_model_many_requests_ask_for_at_once_is_loaded_once(
    models: tuple[Path, list[tuple[str, str, int]]],
) -> None:
    root, files = models
    store = CountingStore(root)
    cache = ModelCache(store, 10**9)
    uri, digest, size = files[0]

    async def scenario() -> list[Any]:
        return await asyncio.gather(*(cache.get(uri, digest, size) for _ in range(50)))

    loaded = asyncio.run(scenario())
    assert store.reads == {uri: 1}
    assert all(model is loaded[0] for model in loaded)


def test_a_model_bigger_than_the_cache_is_served_and_not_kept(
    models: tuple[Path, list[tuple[str, str, int]]],
) -> None:
    root, files = models
    store = CountingStore(root)
    uri, digest, size = files[-1]
    cache = ModelCache(store, size - 1)

    async def scenario() -> None:
        first, second = await asyncio.gather(
            cache.get(uri, digest, size), cache.get(uri, digest, size)
        )
        assert first is second
        await cache.get(uri, digest, size)

    asyncio.run(scenario())
    assert store.reads == {uri: 2} and cache.cached == 0


def test_a_failed_load_reaches_every_waiter_and_is_tried_again(
    models: tuple[Path, list[tuple[str, str, int]]],
) -> None:
    root, files = models
    store = CountingStore(root)
    cache = ModelCache(store, 10**9)
    uri, _, size = files[0]

    async def scenario() -> None:
        results = await asyncio.gather(
            *(cache.get(uri, "0" * 64, size) for _ in range(5)), return_exceptions=True
        )
        assert all(isinstance(r, Exception) for r in results)
        assert store.reads == {uri: 1}
        with pytest.raises(Exception):  # noqa: B017 - the store's own error, tried again
            await cache.get(uri, "0" * 64, size)
        assert store.reads == {uri: 2}

    asyncio.run(scenario())
    assert cache.cached == cache.reserved == 0
