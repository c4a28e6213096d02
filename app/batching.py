"""Micro-batching of predictions: concurrent requests for one model become one ``predict`` call.

A forest's ``predict`` of one row and of sixty-four rows cost nearly the same (the time goes to
walking the trees once per call, to scikit-learn's checks and to the trip to the child), so
requests for the same model file that wait at the same moment are stacked into one call and
its answer split back, as BentoML's adaptive batching and Triton's dynamic batcher do.

There is no batching window. A request for a model with no call in flight makes its call at
once, from its own task: a lone request waits for nothing and pays for no hand-over. Otherwise
it queues, and a sender task takes everything queued by the time it runs (up to ``max_rows``
rows; a request is never split) into the next call, and goes on while requests wait; the
model's second call slot (``parallel``, two by default) is used that way, by a sender started
one loop turn later, so that the requests that arrive in the same turn (under load, many
connections' requests are read in one) share it. Only what arrives while the model's calls
are all in flight waits for one of them to end, not for a timer. Under load the batches grow
by themselves to what arrives during a call; with one client there is none.

Each request keeps its own outcome: the child answers a batch with one outcome per request (its
predictions, or the domain error that refused its rows), and a request whose client went away
while it waited is left out of the next call. Only what stops the whole call (the model file
missing, the child dying) fails every request of the batch.

Models are keyed by their file's sha256: two versions with the same bytes are the same model,
and requests for different files never share a call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from zootrain.errors import DomainError

Rows = list[list[float]]
Outcome = list[Any] | DomainError
"""A request's predictions, or the domain error that refused its rows (its status kept)."""

Call = Callable[[list[Rows]], Awaitable[list[Outcome]]]
"""Predicts a batch: one outcome per request, in order."""


@dataclass
class _Waiting:
    rows: Rows
    answer: asyncio.Future[list[Any]]


@dataclass
class _Model:
    """One model's queue: the requests that arrived while its call was in flight."""

    call: Call
    waiting: list[_Waiting] = field(default_factory=list)
    senders: set[asyncio.Task[None]] = field(default_factory=set)
    active: int = 0  # calls in flight: senders' and lone requests' own


class Batcher:
    def __init__(self, max_rows: int, parallel: int = 2) -> None:
        self.max_rows = max_rows
        # Calls in flight per model (BentoML's "outbound semaphore"): two, so that one batch
        # crosses to the child and back while the other is predicted, and big requests of one
        # model use both of a forest's cores' worth of nogil tree walks.
        self.parallel = parallel
        self._models: dict[str, _Model] = {}
        self.calls = 0  # predict calls made, for the tests and the benchmark
        self.requests = 0  # requests they answered

    async def predict(self, key: str, rows: Rows, call: Call) -> list[Any]:
        """``rows``' predictions by the model ``key``, in a call shared with the requests for
        the same key that wait at the same time; ``call`` makes a batch's call."""
        model = self._models.get(key)
        if model is None:
            model = self._models[key] = _Model(call)
        if not model.active:
            # Nothing in flight for this model: its own call at once, from its own task.
            return await self._alone(key, model, rows)
        answer: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        model.waiting.append(_Waiting(rows, answer))
        self._start_sender(key, model)
        return await answer

    async def _alone(self, key: str, model: _Model, rows: Rows) -> list[Any]:
        """This request's own call, made from its own task (no sender to start, and no hop
        through one on the way back)."""
        model.active += 1
        self.calls += 1
        self.requests += 1
        try:
            (outcome,) = await model.call([rows])
        finally:
            model.active -= 1
            # Whatever queued behind this call (all the slots were busy) goes next.
            self._start_sender(key, model)
        if isinstance(outcome, DomainError):
            raise outcome
        return outcome

    def _start_sender(self, key: str, model: _Model) -> None:
        if model.waiting and model.active < self.parallel:
            model.active += 1
            sender = asyncio.create_task(self._send(key, model))
            model.senders.add(sender)
        elif not model.active and not model.waiting:
            self._models.pop(key, None)

    async def _send(self, key: str, model: _Model) -> None:
        try:
            while batch := self._take(model):
                await self._call(model.call, batch)
        finally:
            model.active -= 1
            model.senders.discard(asyncio.current_task())
            if not model.active:
                # Empty unless cancelled (the service stopping): nobody is left to send them.
                for request in model.waiting:
                    request.answer.cancel()
                model.waiting.clear()
                self._models.pop(key, None)

    def _take(self, model: _Model) -> list[_Waiting]:
        """The next batch: the oldest requests still wanted, up to ``max_rows`` rows (at least
        one request, however many rows it has)."""
        batch: list[_Waiting] = []
        rows = 0
        while model.waiting:
            request = model.waiting[0]
            if request.answer.done():  # its client went away while it waited
                model.waiting.pop(0)
                continue
            if batch and rows + len(request.rows) > self.max_rows:
                break
            batch.append(model.waiting.pop(0))
            rows += len(request.rows)
        return batch

    async def _call(self, call: Call, batch: list[_Waiting]) -> None:
        self.calls += 1
        self.requests += len(batch)
        try:
            outcomes = await call([request.rows for request in batch])
        except Exception as exc:  # the whole call failed: every request in it did
            for request in batch:
                if not request.answer.done():
                    request.answer.set_exception(exc)
            return
        except BaseException:  # cancelled: the service is stopping
            for request in batch:
                request.answer.cancel()
            raise
        for request, outcome in zip(batch, outcomes, strict=True):
            if request.answer.done():
                continue
            if isinstance(outcome, DomainError):
                request.answer.set_exception(outcome)
            else:
                request.answer.set_result(outcome)
