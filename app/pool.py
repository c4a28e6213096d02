"""The job service's pool of child processes: predictions and submit validation, out of process.

The job service never imports scikit-learn, scipy, pandas or numpy: they would cost it about
170 MB and seconds of start-up, and a model that exhausts memory would take every request down
with it. What needs them runs in a few long-lived children (app.child), forked from a forkserver
that has imported them already (zootrain.forkserver, as a worker's training children are), so a
child starts in milliseconds.

Each child keeps the models it has loaded, in a cache bounded by bytes: the pool's bound
(ZOOTRAIN_MODEL_CACHE_BYTES) is shared out equally, and a model is always predicted by the same
child (chosen by its sha256), so it is loaded once and counted once. A submit's validation goes
to the child with the fewest requests in flight, unless a child has accepted the same checked
fields before (app.checked_specs: then no child is asked). Requests and replies cross one
socket per child as length-prefixed pickles, many in flight at a time; the loop reads replies
with asyncio streams, so nothing blocks it.

The children start with the service, in the background (the forkserver's imports take the
seconds the service itself no longer spends on them); /readyz answers 200 once they run. A
child that dies (a model that needs more memory
than the machine has, a crash) fails the requests it was serving with a 503 that says so, and
is started again by the next request.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import pickle
import socket
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fastapi.exceptions import RequestValidationError

from app import service_metrics
from app.batching import Batcher, Outcome, Rows
from app.checked_specs import CheckedSpecs, question
from zootrain import forkserver
from zootrain.errors import DomainError, Unavailable
from zootrain.spec import oversized_search

if TYPE_CHECKING:
    from multiprocessing.context import ForkServerProcess

    from zootrain.ml.cost import Cost
    from zootrain.spec import JobSpec

log = logging.getLogger("zootrain.api")

_CONTEXT = forkserver.context("app.child")
_HEADER = struct.Struct("!Q")


@dataclass
class Reply:
    """A child's answer to request ``number``: a value, a domain error to answer with (it keeps
    its status and detail), or an unexpected failure (a 500). ``loads`` and ``cached``: the
    child's model cache after it, and ``predict_seconds`` and ``predict_calls`` the child's
    predict calls so far, for the job service's metrics."""

    number: int
    value: Any = None
    error: DomainError | None = None
    failure: str | None = None
    loads: int = 0
    cached: int = 0
    predict_seconds: float = 0.0
    predict_calls: int = 0


async def write_frame(writer: asyncio.StreamWriter, message: Any) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    writer.write(_HEADER.pack(len(data)) + data)
    await writer.drain()


async def read_frame(reader: asyncio.StreamReader) -> Any:
    """The next message, or None once the other end has closed."""
    try:
        (size,) = _HEADER.unpack(await reader.readexactly(_HEADER.size))
        return pickle.loads(await reader.readexactly(size))
    except (asyncio.IncompleteReadError, ConnectionError):
        return None


class _Child:
    def __init__(
        self,
        process: ForkServerProcess,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.process = process
        self.writer = writer
        self.pending: dict[int, asyncio.Future[Reply]] = {}
        self.loads = 0  # the child's model loads, as its latest reply said
        self.counted = 0  # the loads added to the job service's metric so far
        self.counted_seconds = 0.0  # and the child's predict seconds and calls
        self.counted_calls = 0
        self.cached = 0
        self._numbers = itertools.count()
        self._reading = asyncio.create_task(self._read(reader))

    @property
    def alive(self) -> bool:
        return not self._reading.done()

    async def call(self, operation: str, argument: Any) -> Reply:
        number = next(self._numbers)
        answer: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self.pending[number] = answer
        try:
            await write_frame(self.writer, (number, operation, argument))
            return await answer
        except ConnectionError:
            raise _died() from None
        finally:
            self.pending.pop(number, None)

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while (reply := await read_frame(reader)) is not None:
                self.loads, self.cached = reply.loads, reply.cached
                answer = self.pending.get(reply.number)
                if answer is not None and not answer.done():
                    answer.set_result(reply)
        finally:
            for answer in self.pending.values():
                if not answer.done():
                    answer.set_exception(_died())

    async def stop(self) -> None:
        self.writer.close()  # the child's loop sees the end of its socket and returns
        with contextlib.suppress(Exception):
            await self._reading
        await asyncio.get_running_loop().run_in_executor(None, self._join)

    def _join(self) -> None:
        self.process.join(5)
        if self.process.exitcode is None:
            self.process.kill()
            self.process.join(5)


class ChildDied(Unavailable):
    title = "Service Unavailable"


def _died() -> ChildDied:
    return ChildDied(
        "the prediction process serving this request stopped (out of memory?); retry shortly"
    )


class ChildPool:
    def __init__(
        self, size: int, *, artifacts: str, cache_bytes: int, batch_rows: int = 1024
    ) -> None:
        self.size = size
        # Concurrent predictions of one model share a call (app.batching); 0: one call each.
        self.batcher = Batcher(batch_rows) if batch_rows > 0 else None
        self.artifacts = artifacts
        self.cache_bytes = max(1, cache_bytes // size)  # each child's share of the bound
        self._children: list[_Child | None] = [None] * size
        self._starting = [asyncio.Lock() for _ in range(size)]
        self.checked = CheckedSpecs()  # specs a child accepted, by what its checks read
        self.ready = False  # every child has run once: the service is ready to serve

    async def start(self) -> None:
        """Start the forkserver (its imports take seconds) and every child."""
        await forkserver.warm_up()
        await asyncio.gather(*(self._child(i) for i in range(self.size)))
        self.ready = True

    async def predict(
        self, uri: str, sha256: str, size: int, instances: list[list[float]]
    ) -> list[Any]:
        """The model's predictions for ``instances`` (its file ``uri``, checked against
        ``sha256``; ``size`` bytes). InvalidRequest when scikit-learn refuses the rows."""
        index = int(sha256[:8], 16) % self.size if sha256 else 0
        if self.batcher is None:
            predictions: list[Any] = await self._call(
                index, "predict", (uri, sha256, size, instances)
            )
            return predictions

        async def call(batch: list[Rows]) -> list[Outcome]:
            outcomes: list[Outcome] = await self._call(
                index, "predict_batch", (uri, sha256, size, batch)
            )
            return outcomes

        return await self.batcher.predict(f"{sha256}:{uri}", instances, call)

    async def validate(self, spec: JobSpec) -> tuple[JobSpec, Cost]:
        """zootrain.ml.validation.validate_submission and the job's cost, in a child (or the
        answer a child gave to a spec that differs only in what they never read); a
        RequestValidationError (a 422 naming the field) when the spec is refused."""
        oversized = oversized_search(spec)
        if oversized is not None:
            # Refused from the lists' lengths at once, without a child (or starting one).
            raise RequestValidationError(
                [{"type": "value_error", "loc": ("body",), "msg": f"Value error, {oversized}"}]
            )
        key = question(spec)
        known = self.checked.get(key)
        if known is not None:
            # Asked and answered: the child would answer the same (app.checked_specs).
            service_metrics.CHECKED_FROM_CACHE.inc()
            changes, cost = known
            return (spec.model_copy(update=changes) if changes else spec), cost
        service_metrics.CHECKED_BY_CHILD.inc()
        busy = [len(c.pending) if c is not None and c.alive else 0 for c in self._children]
        # The spec crosses as its JSON (a fifth of pickling the model's CPU), and comes back
        # as the fields the checks changed (usually none: nothing to decode); the cost is a
        # small dataclass.
        outcome = await self._call(
            busy.index(min(busy)), "validate_json", spec.model_dump_json().encode()
        )
        if isinstance(outcome, list):
            raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in outcome])
        changes, cost = outcome
        self.checked.put(key, (changes, cost))
        return (spec.model_copy(update=changes) if changes else spec), cost

    async def _call(self, index: int, operation: str, argument: Any) -> Any:
        child = await self._child(index)
        reply = await child.call(operation, argument)
        self.ready = True
        service_metrics.MODEL_LOADS.inc(max(0, reply.loads - child.counted))
        child.counted = max(child.counted, reply.loads)
        # Totals since the child started: replies can cross in any order, so add what is new.
        if reply.predict_calls > child.counted_calls:
            service_metrics.PREDICT_CALLS.inc(reply.predict_calls - child.counted_calls)
            child.counted_calls = reply.predict_calls
        if reply.predict_seconds > child.counted_seconds:
            service_metrics.PREDICT_SECONDS.inc(reply.predict_seconds - child.counted_seconds)
            child.counted_seconds = reply.predict_seconds
        service_metrics.MODEL_CACHE_BYTES.set(
            sum(c.cached for c in self._children if c is not None)
        )
        if reply.error is not None:
            raise reply.error
        if reply.failure is not None:
            raise RuntimeError(f"prediction process: {reply.failure}")
        return reply.value

    async def _child(self, index: int) -> _Child:
        child = self._children[index]
        if child is not None and child.alive:
            return child
        async with self._starting[index]:
            child = self._children[index]
            if child is not None and child.alive:
                return child
            if child is not None:
                log.warning("prediction process %d stopped; starting it again", index)
                await child.stop()
            child = await self._spawn()
            self._children[index] = child
            return child

    async def _spawn(self) -> _Child:
        ours, theirs = socket.socketpair()
        process = _CONTEXT.Process(
            target=_child_main,
            args=(theirs, self.artifacts, self.cache_bytes),
            daemon=True,
            name="zootrain-predict",
        )
        try:
            await asyncio.get_running_loop().run_in_executor(None, process.start)
        finally:
            theirs.close()  # the child has its own copy
        reader, writer = await asyncio.open_unix_connection(sock=ours)
        return _Child(process, reader, writer)

    async def close(self) -> None:
        self.ready = False
        children, self._children = self._children, [None] * self.size
        await asyncio.gather(*(c.stop() for c in children if c is not None))


def _child_main(sock: socket.socket, artifacts: str, capacity: int) -> None:
    from app.child import main  # preloaded by the forkserver; never imported in the service

    main(sock, artifacts, capacity)
