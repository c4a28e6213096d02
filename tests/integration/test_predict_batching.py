"""Micro-batching in the real prediction pool (app.pool, app.child; real forests in a real store)
and through the API: requests that share a predict call get exactly their own predictions, a
request whose rows scikit-learn refuses fails alone, and different model files never mix.

Which requests share a call is made certain by holding the first call until the others have
queued behind it (a gate around the pool's own call), not by timing."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

from app import service_metrics
from app.batching import Outcome, Rows
from app.pool import ChildPool
from testkit.stack import Stack, wait_job
from tests.integration.conftest import iris_spec, submit
from zootrain.artifacts import ArtifactStore
from zootrain.errors import InvalidRequest
from zootrain.ml import modelfile

pytestmark = pytest.mark.integration

TOO_BIG = 1e300  # finite JSON, but past float32: a forest refuses the row


def stored(root: Path, model: Any) -> tuple[tuple[str, str, int], Any]:
    data = modelfile.dumps(model)
    uri, sha256 = ArtifactStore(root).put(data)
    return (uri, sha256, len(data)), modelfile.loads(data)


@pytest.fixture(scope="module")
def forests(
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, tuple[tuple[str, str, int], Any]]:
    root = tmp_path_factory.mktemp("store")
    X, y = load_iris(return_X_y=True)
    return {
        "root": (str(root), 0, 0),  # type: ignore[dict-item]
        "classifier": stored(
            root, RandomForestClassifier(n_estimators=10, random_state=0).fit(X, y)
        ),
        "regressor": stored(root, RandomForestRegressor(n_estimators=10, random_state=0).fit(X, y)),
    }


def rows_for(i: int) -> Rows:
    rows: Rows = np.random.default_rng(i).uniform(0, 8, size=(1 + i % 3, 4)).round(2).tolist()
    return rows


async def gated_batch(
    pool: ChildPool, model: tuple[str, str, int], requests: list[Rows]
) -> tuple[list[Any], list[int]]:
    """``requests`` predicted by ``pool``: the first alone, the rest queued behind it and so in
    the next call(s); each request's outcome (predictions or exception), and the calls' sizes."""
    uri, sha256, size = model
    index = int(sha256[:8], 16) % pool.size
    gate, called = asyncio.Event(), asyncio.Event()
    sizes: list[int] = []

    async def call(batch: list[Rows]) -> list[Outcome]:
        sizes.append(len(batch))
        called.set()
        await gate.wait()
        outcomes: list[Outcome] = await pool._call(
            index, "predict_batch", (uri, sha256, size, batch)
        )
        return outcomes

    assert pool.batcher is not None
    key = f"{sha256}:{uri}"
    tasks = [asyncio.create_task(pool.batcher.predict(key, requests[0], call))]
    await called.wait()
    tasks += [asyncio.create_task(pool.batcher.predict(key, rows, call)) for rows in requests[1:]]
    for _ in range(100):
        await asyncio.sleep(0)  # every request queued behind the first call
    gate.set()
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    return outcomes, sizes


def test_requests_in_one_batch_get_exactly_their_own_predictions(forests: dict[str, Any]) -> None:
    model, local = forests["classifier"]
    requests = [rows_for(i) for i in range(40)]

    async def scenario() -> tuple[list[Any], list[int]]:
        pool = ChildPool(1, artifacts=forests["root"][0], cache_bytes=1 << 30)
        await pool.start()
        try:
            return await gated_batch(pool, model, requests)
        finally:
            await pool.close()

    outcomes, sizes = asyncio.run(scenario())
    assert sizes == [1, 39]  # the 39 requests were one stacked predict
    for rows, outcome in zip(requests, outcomes, strict=True):
        assert outcome == local.predict(np.asarray(rows)).tolist()


def test_the_models_own_predict_time_is_counted_once_a_call(forests: dict[str, Any]) -> None:
    """zootrain_predict_calls_total / _seconds_total: one call a batch, whatever its size, and
    the seconds the child spent in the model's predict (a request's latency less them is the
    service's share; bench/predict.py reports the split)."""
    model, _ = forests["classifier"]
    calls, seconds = service_metrics.PREDICT_CALLS, service_metrics.PREDICT_SECONDS
    before = calls._value.get(), seconds._value.get()

    async def scenario() -> list[int]:
        pool = ChildPool(1, artifacts=forests["root"][0], cache_bytes=1 << 30)
        await pool.start()
        try:
            _, sizes = await gated_batch(pool, model, [rows_for(i) for i in range(10)])
            return sizes
        finally:
            await pool.close()

    assert asyncio.run(scenario()) == [1, 9]
    assert calls._value.get() - before[0] == 2
    assert seconds._value.get() > before[1]


def test_a_request_refused_by_scikit_learn_fails_alone_in_its_batch(
    forests: dict[str, Any],
) -> None:
    model, local = forests["regressor"]
    requests = [rows_for(i) for i in range(12)]
    requests[5] = [[5.0, 3.0, TOO_BIG, 0.2]]
    requests[9] = [[5.0, 3.0], [1.0, 2.0, 3.0, 4.0]]  # ragged: cannot even be stacked

    async def scenario() -> tuple[list[Any], list[int]]:
        pool = ChildPool(1, artifacts=forests["root"][0], cache_bytes=1 << 30)
        await pool.start()
        try:
            return await gated_batch(pool, model, requests)
        finally:
            await pool.close()

    outcomes, sizes = asyncio.run(scenario())
    assert sizes == [1, 11]
    for i, (rows, outcome) in enumerate(zip(requests, outcomes, strict=True)):
        if i in (5, 9):
            assert isinstance(outcome, InvalidRequest) and "instances" in str(outcome)
        else:
            np.testing.assert_allclose(outcome, local.predict(np.asarray(rows)))


def test_concurrent_requests_for_different_models_never_mix(forests: dict[str, Any]) -> None:
    names = ["classifier", "regressor"]

    async def scenario() -> list[Any]:
        pool = ChildPool(2, artifacts=forests["root"][0], cache_bytes=1 << 30)
        await pool.start()
        try:
            return await asyncio.gather(
                *(pool.predict(*forests[names[i % 2]][0], rows_for(i)) for i in range(60))  # type: ignore[call-arg]
            )
        finally:
            await pool.close()

    answers = asyncio.run(scenario())
    for i, answer in enumerate(answers):
        local = forests[names[i % 2]][1]
        np.testing.assert_allclose(answer, local.predict(np.asarray(rows_for(i))))


def test_concurrent_predictions_through_the_api_each_get_their_own(
    shared_stack: Stack, shared_http: httpx.Client
) -> None:
    name = f"batching-{uuid.uuid4().hex[:8]}"
    job = submit(shared_http, iris_spec(name))
    assert wait_job(shared_http, job["id"])["state"] == "succeeded"
    requests: list[dict[str, Any]] = [{"instances": rows_for(i)} for i in range(48)]
    requests[7] = {"instances": [[5.0, 3.0, TOO_BIG, 0.2]]}  # scikit-learn refuses it
    requests[20] = {"instances": [[5.0, 3.0, 1.0]]}  # the wrong width: refused before batching

    async def scenario() -> list[httpx.Response]:
        async with httpx.AsyncClient(
            base_url=str(shared_http.base_url), headers=dict(shared_http.headers), timeout=60
        ) as client:
            return await asyncio.gather(
                *(client.post(f"/v1/models/{name}/predict", json=body) for body in requests)
            )

    answers = asyncio.run(scenario())
    alone = [
        shared_http.post(f"/v1/models/{name}/predict", json=body) for body in requests
    ]  # one at a time: never batched
    for i, (answer, reference) in enumerate(zip(answers, alone, strict=True)):
        if i in (7, 20):
            assert answer.status_code == 422, answer.text
            assert answer.headers["content-type"].startswith("application/problem+json")
            assert "instances" in answer.json()["detail"]
        else:
            assert answer.status_code == 200, answer.text
            assert answer.json() == reference.json()
