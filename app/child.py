"""What runs in the job service's child processes (app.pool): predictions and submit checks.

A child serves one socket to the job service, many requests at a time: each request is a task
of the child's own event loop, and the work that holds the CPU (a model's predict of more than a
few rows, a spec's validation) runs in a thread, so a model being read from the store does not
hold up predictions of the models already loaded. Models stay loaded in a ModelCache bounded by
bytes.

Everything that needs scikit-learn or numpy is imported here, in the child (the forkserver
preloads this module), never in the job service.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import socket
import threading
import time
from typing import Any

import numpy as np
from pydantic import ValidationError

from app.models_cache import ModelCache
from app.pool import Reply, read_frame, write_frame
from zootrain import forkserver
from zootrain.artifacts import ArtifactStore
from zootrain.errors import DomainError, InvalidRequest
from zootrain.ml import forest_walk
from zootrain.ml.cost import Cost, job_cost
from zootrain.ml.validation import validate_submission
from zootrain.spec import JobSpec

log = logging.getLogger("zootrain.api")

INLINE_VALUES = 1_000
"""Predictions of at most this many values run on the child's loop; bigger ones in a thread."""


class _Spent:
    """The models' predict calls made in this child, and their seconds (the job service's
    zootrain_predict_seconds_total: the model's share of a prediction's latency)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.calls = 0
        self._lock = threading.Lock()  # big predictions run in threads

    def predict(self, model: Any, X: Any) -> Any:
        started = time.perf_counter()
        try:
            return forest_walk.predict(model, X)
        finally:
            elapsed = time.perf_counter() - started
            with self._lock:
                self.seconds += elapsed
                self.calls += 1

    def mark(self, reply: Reply, cache: ModelCache) -> None:
        reply.loads, reply.cached = cache.loads, cache.cached
        reply.predict_seconds, reply.predict_calls = self.seconds, self.calls


SPENT = _Spent()


def main(sock: socket.socket, artifacts: str, capacity: int) -> None:
    """The child's entry point: serve ``sock`` until the job service closes it."""
    forkserver.become_child()
    # The modules inherited from the forkserver stay shared with it as long as nothing writes
    # their pages: keep the collector from walking (and so dirtying) them.
    gc.freeze()
    asyncio.run(_serve(sock, ModelCache(ArtifactStore(artifacts), capacity)))


async def _serve(sock: socket.socket, cache: ModelCache) -> None:
    reader, writer = await asyncio.open_unix_connection(sock=sock)
    answering: set[asyncio.Task[None]] = set()
    while True:
        request = await read_frame(reader)
        if request is None:
            return  # the job service closed its end: it is stopping
        reply = _answer_at_once(request, cache)
        if reply is not None:
            await _send(writer, reply)
            continue
        task = asyncio.create_task(_answer(request, cache, writer))
        answering.add(task)
        task.add_done_callback(answering.discard)


def _answer_at_once(request: tuple[int, str, Any], cache: ModelCache) -> Reply | None:
    """The reply to a prediction of a few rows by a model already loaded, made here on the
    loop (a task of its own would cost a loop turn more than the predict of one row by a
    small forest); None for everything else."""
    number, operation, argument = request
    if operation != "predict_batch":
        return None
    _, sha256, _, batch = argument
    if sum(len(rows) for rows in batch) * len(batch[0][0] if batch[0] else ()) > INLINE_VALUES:
        return None
    model = cache.loaded(sha256)
    if model is None:
        return None
    try:
        reply = Reply(number, value=_predict_stacked(model, batch))
    except Exception as exc:
        log.exception("prediction process: predict_batch failed")
        reply = Reply(number, failure=f"{type(exc).__name__}: {exc}")
    SPENT.mark(reply, cache)
    return reply


async def _answer(request: tuple[int, str, Any], cache: ModelCache, writer: Any) -> None:
    number, operation, argument = request
    try:
        if operation == "predict":
            value: Any = await _predict(cache, *argument)
        elif operation == "predict_batch":
            value = await _predict_batch(cache, *argument)
        elif operation == "validate":
            value = await asyncio.to_thread(_validate, argument)
        elif operation == "validate_json":
            value = await asyncio.to_thread(_validate_json, argument)
        else:
            raise ValueError(f"unknown operation {operation!r}")
        reply = Reply(number, value=value)
    except DomainError as exc:
        reply = Reply(number, error=exc)  # crosses whole: the job service answers with it
    except Exception as exc:
        log.exception("prediction process: %s failed", operation)
        reply = Reply(number, failure=f"{type(exc).__name__}: {exc}")
    SPENT.mark(reply, cache)
    await _send(writer, reply)


async def _send(writer: Any, reply: Reply) -> None:
    """Write ``reply``; one that cannot be pickled is answered as a failure instead, so that
    its caller is never left waiting for a reply that was lost in a task nobody awaits."""
    try:
        await write_frame(writer, reply)
    except ConnectionError:
        pass  # the job service is gone: _serve ends
    except Exception as exc:
        log.exception("prediction process: reply %s could not be sent", reply.number)
        failed = Reply(reply.number, failure=f"the reply could not be sent: {exc!r}"[:1000])
        with contextlib.suppress(ConnectionError):
            await write_frame(writer, failed)


async def _predict(
    cache: ModelCache, uri: str, sha256: str, size: int, instances: list[list[float]]
) -> list[Any]:
    model = await cache.get(uri, sha256, size)
    X = np.asarray(instances, dtype=np.float64)
    try:
        if X.size <= INLINE_VALUES:
            # A few rows take a millisecond or two: a hop to a thread would cost as much.
            predictions = SPENT.predict(model, X)
        else:
            predictions = await asyncio.to_thread(SPENT.predict, model, X)
    except ValueError as exc:
        # scikit-learn's own check of the rows, e.g. a value past float32 for a forest (JSON
        # numbers are finite already): the client's rows, not the server, are at fault.
        raise InvalidRequest(f"instances: {exc}") from None
    return [v.item() if hasattr(v, "item") else v for v in predictions]


async def _predict_batch(
    cache: ModelCache, uri: str, sha256: str, size: int, batch: list[list[list[float]]]
) -> list[list[Any] | DomainError]:
    """Each request's predictions (or the error that refused its rows) from one ``predict``
    of all their rows stacked (app.batching)."""
    model = await cache.get(uri, sha256, size)
    if sum(len(rows) for rows in batch) * len(batch[0][0] if batch[0] else ()) <= INLINE_VALUES:
        return _predict_stacked(model, batch)
    if len(batch) == 1:
        return await _outcomes(model, batch)
    try:
        X = np.asarray([row for rows in batch for row in rows], dtype=np.float64)
        predictions = await _run(model, X)
    except ValueError:
        # One request's rows refused (ragged, or past what the model takes): the stacked call
        # cannot say whose, so each request is predicted on its own and only that one fails.
        return await _outcomes(model, batch)
    values = _plain(predictions)
    outcomes: list[list[Any] | DomainError] = []
    start = 0
    for rows in batch:
        outcomes.append(values[start : start + len(rows)])
        start += len(rows)
    return outcomes


def _predict_stacked(model: Any, batch: list[list[list[float]]]) -> list[list[Any] | DomainError]:
    """_predict_batch of a few rows, on the loop: one predict of them all, or one a request
    when that is refused."""
    try:
        X = np.asarray([row for rows in batch for row in rows], dtype=np.float64)
        values = _plain(SPENT.predict(model, X))
    except ValueError:
        outcomes: list[list[Any] | DomainError] = []
        for rows in batch:
            try:
                outcomes.append(_plain(SPENT.predict(model, np.asarray(rows, dtype=np.float64))))
            except ValueError as exc:
                outcomes.append(InvalidRequest(f"instances: {exc}"))
        return outcomes
    outcomes = []
    start = 0
    for rows in batch:
        outcomes.append(values[start : start + len(rows)])
        start += len(rows)
    return outcomes


async def _outcomes(model: Any, batch: list[list[list[float]]]) -> list[list[Any] | DomainError]:
    outcomes: list[list[Any] | DomainError] = []
    for rows in batch:
        try:
            outcomes.append(_plain(await _run(model, np.asarray(rows, dtype=np.float64))))
        except ValueError as exc:
            outcomes.append(InvalidRequest(f"instances: {exc}"))
    return outcomes


async def _run(model: Any, X: Any) -> Any:
    if X.size <= INLINE_VALUES:
        # A few rows take a millisecond or two: a hop to a thread would cost as much.
        return SPENT.predict(model, X)
    return await asyncio.to_thread(SPENT.predict, model, X)


def _plain(predictions: Any) -> list[Any]:
    """Predictions as JSON-ready Python values (numpy's scalars become ints, floats, strs)."""
    values: list[Any] = predictions.tolist()
    if predictions.dtype == object:  # tolist leaves the elements as they are
        values = [v.item() if hasattr(v, "item") else v for v in values]
    return values


def _validate_json(
    data: bytes,
) -> tuple[dict[str, Any], Cost] | list[dict[str, Any]]:
    """_validate of a spec sent as JSON; answers with the fields the checks changed (by name:
    their new values) instead of the whole spec, which the job service already has."""
    spec = JobSpec.model_validate_json(data)
    outcome = _validate(spec)
    if isinstance(outcome, list):
        return outcome
    checked, cost = outcome
    changes = {
        name: getattr(checked, name)
        for name in type(checked).model_fields
        if getattr(checked, name) != getattr(spec, name)
    }
    return changes, cost


def _validate(spec: JobSpec) -> tuple[JobSpec, Cost] | list[dict[str, Any]]:
    """The spec as a submit accepts it and its cost, or pydantic's errors as plain data."""
    try:
        checked = validate_submission(spec)
    except ValidationError as exc:
        return [
            {"type": e["type"], "loc": e["loc"], "msg": e["msg"], "input": e["input"]}
            for e in exc.errors(include_url=False, include_context=False)
        ]
    return checked, job_cost(checked)
