"""Micro-batching (app.batching): concurrent requests for one model share a call and each gets
its own outcome; a lone request is sent at once; models never share a call. The calls are
gated by events, so which requests share a call is decided by the test, not by timing."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from app.batching import Batcher, Outcome, Rows
from zootrain.errors import InvalidRequest, NotFound


class Model:
    """A fake predict call: answers each row with its first value times ``factor``, records the
    batches it was called with, and waits for ``gate`` before answering."""

    def __init__(self, factor: float = 1.0) -> None:
        self.factor = factor
        self.batches: list[list[Rows]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.failing: dict[int, Exception] = {}  # call number -> what that call raises

    async def __call__(self, batch: list[Rows]) -> list[Outcome]:
        number = len(self.batches)
        self.batches.append(batch)
        await self.gate.wait()
        if number in self.failing:
            raise self.failing[number]
        outcomes: list[Outcome] = []
        for rows in batch:
            if any(row[0] < 0 for row in rows):
                outcomes.append(InvalidRequest("instances: negative"))
            else:
                outcomes.append([row[0] * self.factor for row in rows])
        return outcomes


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> Callable[[], None]:
    """A test that runs ``scenario`` on a fresh event loop."""

    def test() -> None:
        asyncio.run(scenario())

    test.__name__ = scenario.__name__
    return test


async def until(condition: Any) -> None:
    for _ in range(10_000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")


@run
async def test_a_lone_request_is_sent_at_once_in_a_call_of_its_own() -> None:
    batcher, model = Batcher(max_rows=100, parallel=1), Model()
    assert await batcher.predict("m", [[1.0], [2.0]], model) == [1.0, 2.0]
    assert model.batches == [[[[1.0], [2.0]]]]
    assert await batcher.predict("m", [[3.0]], model) == [3.0]
    assert len(model.batches) == 2 and batcher.calls == 2


@run
async def test_requests_waiting_for_a_call_share_the_next_one_and_get_their_own_rows() -> None:
    batcher, model = Batcher(max_rows=1000, parallel=1), Model()
    model.gate.clear()
    first = asyncio.create_task(batcher.predict("m", [[0.0]], model))
    await until(lambda: len(model.batches) == 1)  # the first request is in flight alone
    rest = [
        asyncio.create_task(batcher.predict("m", [[float(i)], [i + 0.5]], model))
        for i in range(1, 31)
    ]
    await until(lambda: all(not t.done() for t in rest))
    model.gate.set()
    assert await first == [0.0]
    for i, task in enumerate(rest, start=1):
        assert await task == [float(i), i + 0.5]
    assert [len(b) for b in model.batches] == [1, 30]
    assert batcher.calls == 2 and batcher.requests == 31


@run
async def test_a_refused_request_fails_alone_in_its_batch() -> None:
    batcher, model = Batcher(max_rows=1000, parallel=1), Model()
    model.gate.clear()
    first = asyncio.create_task(batcher.predict("m", [[1.0]], model))
    await until(lambda: len(model.batches) == 1)
    good = [asyncio.create_task(batcher.predict("m", [[float(i)]], model)) for i in range(5)]
    bad = asyncio.create_task(batcher.predict("m", [[-1.0]], model))
    more = asyncio.create_task(batcher.predict("m", [[7.0]], model))
    model.gate.set()
    await first
    with pytest.raises(InvalidRequest, match="negative"):
        await bad
    assert [await t for t in good] == [[float(i)] for i in range(5)]
    assert await more == [7.0]
    assert len(model.batches) == 2  # the bad request was in the shared call


@run
async def test_a_failed_call_fails_every_request_of_its_batch_and_no_other() -> None:
    batcher, model = Batcher(max_rows=1000, parallel=1), Model()
    model.gate.clear()
    model.failing[0] = NotFound("artifact missing")
    first = asyncio.create_task(batcher.predict("m", [[1.0]], model))
    await until(lambda: len(model.batches) == 1)
    queued = [asyncio.create_task(batcher.predict("m", [[2.0]], model)) for _ in range(3)]
    model.gate.set()
    with pytest.raises(NotFound):
        await first
    assert [await t for t in queued] == [[2.0]] * 3  # the next call, the queued batch
    assert [len(b) for b in model.batches] == [1, 3]


@run
async def test_different_models_never_share_a_call() -> None:
    batcher = Batcher(max_rows=1000, parallel=1)
    one, two = Model(factor=1.0), Model(factor=9.0)
    one.gate.clear()
    two.gate.clear()
    tasks = []
    for i in range(40):
        key, model = ("v1", one) if i % 2 == 0 else ("v2", two)
        tasks.append((key, i, asyncio.create_task(batcher.predict(key, [[float(i)]], model))))
    await until(lambda: len(one.batches) == 1 and len(two.batches) == 1)
    one.gate.set()
    two.gate.set()
    for key, i, task in tasks:
        assert await task == ([float(i)] if key == "v1" else [9.0 * i])
    for batch in one.batches:
        assert all(int(rows[0][0]) % 2 == 0 for rows in batch)
    for batch in two.batches:
        assert all(int(rows[0][0]) % 2 == 1 for rows in batch)
    # Each model's first request found its slot free and went alone; the other nineteen, which
    # arrived while it was in flight, shared the next call: nothing mixed.
    assert [len(b) for b in one.batches] == [1, 19] and [len(b) for b in two.batches] == [1, 19]


@run
async def test_a_batch_holds_at_most_max_rows_and_never_splits_a_request() -> None:
    batcher, model = Batcher(max_rows=10, parallel=1), Model()
    model.gate.clear()
    first = asyncio.create_task(batcher.predict("m", [[0.0]], model))
    await until(lambda: len(model.batches) == 1)
    sizes = [4, 4, 4, 25, 1]
    tasks = [asyncio.create_task(batcher.predict("m", [[1.0]] * n, model)) for n in sizes]
    model.gate.set()
    await first
    for n, task in zip(sizes, tasks, strict=True):
        assert await task == [1.0] * n
    rows = [[len(r) for r in batch] for batch in model.batches]
    assert rows == [[1], [4, 4], [4], [25], [1]]


@run
async def test_a_request_whose_client_went_away_is_left_out_of_the_next_call() -> None:
    batcher, model = Batcher(max_rows=1000, parallel=1), Model()
    model.gate.clear()
    first = asyncio.create_task(batcher.predict("m", [[0.0]], model))
    await until(lambda: len(model.batches) == 1)
    gone = asyncio.create_task(batcher.predict("m", [[1.0]], model))
    kept = asyncio.create_task(batcher.predict("m", [[2.0]], model))
    await until(lambda: not gone.done())
    gone.cancel()
    model.gate.set()
    await first
    assert await kept == [2.0]
    assert model.batches[1] == [[[2.0]]]


@run
async def test_a_lone_request_cancelled_in_its_call_hands_its_slot_to_those_waiting() -> None:
    batcher, model = Batcher(max_rows=1000, parallel=1), Model()
    model.gate.clear()
    lone = asyncio.create_task(batcher.predict("m", [[1.0]], model))
    await until(lambda: len(model.batches) == 1)
    queued = [asyncio.create_task(batcher.predict("m", [[2.0]], model)) for _ in range(3)]
    await until(lambda: all(not t.done() for t in queued))
    lone.cancel()  # its client went away while its own call was in flight
    with pytest.raises(asyncio.CancelledError):
        await lone
    model.gate.set()
    assert [await t for t in queued] == [[2.0]] * 3
    assert [len(b) for b in model.batches] == [1, 3]
    assert batcher._models == {}


@run
async def test_nothing_is_left_behind_once_the_calls_end() -> None:
    batcher, model = Batcher(max_rows=1000, parallel=1), Model()
    await asyncio.gather(*(batcher.predict(f"m{i % 3}", [[1.0]], model) for i in range(30)))
    assert batcher._models == {}


@run
async def test_two_calls_of_one_model_fly_at_once_and_the_rest_wait_for_either() -> None:
    batcher, model = Batcher(max_rows=1000, parallel=2), Model()
    model.gate.clear()
    first = asyncio.create_task(batcher.predict("m", [[1.0]], model))
    await until(lambda: len(model.batches) == 1)
    second = asyncio.create_task(batcher.predict("m", [[2.0]], model))
    await until(lambda: len(model.batches) == 2)  # sent at once: a slot was free
    rest = [asyncio.create_task(batcher.predict("m", [[float(i)]], model)) for i in range(3, 9)]
    await until(lambda: all(not t.done() for t in rest))
    assert len(model.batches) == 2  # both slots busy: the rest wait
    model.gate.set()
    assert [await first, await second] == [[1.0], [2.0]]
    assert [await t for t in rest] == [[float(i)] for i in range(3, 9)]
    assert sorted(len(b) for b in model.batches) == [1, 1, 6]
    assert batcher._models == {}
