"""Group commit: multis that are ready at the same moment go to ZooKeeper as one multi.

A submit is one multi (job, shards node, shard records, queue entry, key). Under load, each one
cost the job service a request of its own through kazoo's connection thread (a wake-up, a send,
a reply read and handed to the event loop) and cost ZooKeeper a request and a transaction-log
entry of its own. ``GroupCommit.commit`` sends a multi at once while fewer than
``max_in_flight`` are unanswered, so a lone submit waits for nothing; when that many are, the
multis that arrive meanwhile are combined into one and sent as the next one answers: the batch
grows with the load, as a database's group commit does.

Why this keeps every promise of a multi of one's own:

- A multi is atomic, so the combined one applies every member's operations or none of them.
- When it fails, ZooKeeper's reply names the operation that failed. That member's failure may
  have been caused by an earlier member in the same multi (two submits with one
  Idempotency-Key), which did not apply either. So no member is told of a failure from a
  combined multi: all of them are sent again, in their order, with the failing member alone,
  whose answer is then its own.
- ZooKeeper applies one session's requests in the order they were sent, so a member sent again
  still sees everything that applied before it, as it would have alone.
- A member's wait is bounded by its own request's deadline: a member not yet sent when its
  deadline passes is withdrawn (RequestDeadlineExceeded: nothing was written); one sent and not
  answered gets WriteOutcomeUnknown, as a multi of its own would (``ZooKeeper._call``).
- Nothing is sent while the connection is down (kazoo would queue it and send it whenever the
  connection came back, long after its request was answered).
- A combined multi stays under ``max_bytes``: ZooKeeper refuses a request larger than its
  ``jute.maxbuffer`` (1 MiB by default) and drops the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
from collections import deque
from dataclasses import dataclass
from typing import Any

from kazoo.client import TransactionRequest
from prometheus_client import Counter

from zootrain.zk import (
    RequestDeadlineExceeded,
    TransactionFailed,
    WriteOutcomeUnknown,
    ZooKeeper,
    current_deadline,
    transaction_failure,
)

# Multis in flight at once before new ones are combined: enough to keep ZooKeeper's pipeline
# busy (one multi is logged while the next is on its way), few enough that batches form
# under load. 2, 4 and 8 measured alike within the noise of a loaded 2-core machine (mean
# batch 12-15 submits at 64 clients, all three); Kafka's producer defaults to 5.
MAX_IN_FLIGHT = 4
# Well under ZooKeeper's default jute.maxbuffer (1 MiB) for the request packet.
MAX_BYTES = 256 * 1024
_OP_OVERHEAD = 64  # bytes an operation costs beyond its path and data (header, ACL, flags)

MULTIS = Counter(
    "zootrain_group_commit_multis_total",
    "Multis the job service sent for submits (submits per multi: the members total over this)",
)
MEMBERS = Counter(
    "zootrain_group_commit_members_total", "Submit multis sent within a (possibly combined) multi"
)
RESENT = Counter(
    "zootrain_group_commit_resent_total",
    "Submit multis sent again because a combined multi failed on another member's operation",
)


@dataclass(eq=False)
class _Member:
    operations: list[Any]
    size: int
    future: asyncio.Future[list[Any]]
    sent: bool = False  # in a multi that is unanswered (withdrawing it is too late)
    alone: bool = False  # its last combined multi failed on it: its next answer must be its own
    abandoned: bool = False  # its caller gave up (deadline): never sent again


def _size(operations: list[Any]) -> int:
    total = 0
    for op in operations:
        data = getattr(op, "data", None)
        total += len(op.path) + (len(data) if isinstance(data, bytes) else 0) + _OP_OVERHEAD
    return total


class GroupCommit:
    """Commits multis for one ZooKeeper session, combining those that are ready together."""

    def __init__(
        self,
        zk: ZooKeeper,
        *,
        max_in_flight: int = MAX_IN_FLIGHT,
        max_bytes: int = MAX_BYTES,
        max_members: int = 64,
    ) -> None:
        self.zk = zk
        self.max_in_flight = max_in_flight
        self.max_bytes = max_bytes
        self.max_members = max_members
        self._pending: deque[_Member] = deque()
        self._in_flight = 0
        self._pump_scheduled = False
        self._waiting_for_session: asyncio.Task[None] | None = None
        # For the tests' and the metrics' view of the batching: multis sent, members in them,
        # members sent again after a combined multi failed.
        self.multis = 0
        self.members = 0
        self.resent = 0

    async def commit(self, transaction: TransactionRequest) -> list[Any]:
        """Commit ``transaction`` (not committed itself: its operations are taken): its
        results, or TransactionFailed with the index in ``transaction``, as ZooKeeper.commit."""
        loop = asyncio.get_running_loop()
        member = _Member(list(transaction.operations), 0, loop.create_future())
        member.size = _size(member.operations)
        self._pending.append(member)
        self._schedule(loop)
        limit = current_deadline()
        try:
            if limit is None:
                return await asyncio.shield(member.future)
            done, _ = await asyncio.wait({member.future}, timeout=max(0.0, limit - loop.time()))
        except asyncio.CancelledError:
            self._abandon(member)
            raise
        if member.future in done:
            return member.future.result()
        self._abandon(member)
        if member.sent:
            raise WriteOutcomeUnknown(
                "ZooKeeper did not answer a write within the request's deadline; it may "
                "still be applied when the connection comes back"
            )
        raise RequestDeadlineExceeded("ZooKeeper did not answer within the request's deadline")

    def _abandon(self, member: _Member) -> None:
        member.abandoned = True
        if not member.sent:
            with contextlib.suppress(ValueError):
                self._pending.remove(member)
        # A sent member is answered later; nobody awaits it any more.
        member.future.add_done_callback(_consume)

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        # At the end of this turn of the loop: the submits parsed in the same turn go together.
        if not self._pump_scheduled:
            self._pump_scheduled = True
            loop.call_soon(self._pump, context=contextvars.Context())

    def _pump(self) -> None:
        self._pump_scheduled = False
        while self._pending and self._in_flight < self.max_in_flight:
            if not self.zk.live():
                self._wait_for_session()
                return
            batch = self._take()
            combined = self.zk.transaction()
            for member in batch:
                member.sent = True
                combined.operations.extend(member.operations)
            self._in_flight += 1
            self.multis += 1
            self.members += len(batch)
            MULTIS.inc()
            MEMBERS.inc(len(batch))
            answer = self.zk.send_commit(combined)
            answer.add_done_callback(functools.partial(self._settle, batch))

    def _take(self) -> list[_Member]:
        first = self._pending.popleft()
        batch, size = [first], first.size
        if first.alone:
            return batch
        while self._pending and len(batch) < self.max_members:
            nxt = self._pending[0]
            if nxt.alone or size + nxt.size > self.max_bytes:
                break
            batch.append(self._pending.popleft())
            size += nxt.size
        return batch

    def _wait_for_session(self) -> None:
        if self._waiting_for_session is not None:
            return

        async def wait() -> None:
            try:
                await self.zk.until_live()
            finally:
                self._waiting_for_session = None
                self._schedule(asyncio.get_running_loop())

        # In a fresh context: a request's deadline must not bound the wait for the others.
        self._waiting_for_session = asyncio.get_running_loop().create_task(
            wait(), context=contextvars.Context()
        )

    def _settle(self, batch: list[_Member], answer: asyncio.Future[list[Any]]) -> None:
        self._in_flight -= 1
        loop = asyncio.get_running_loop()
        self._schedule(loop)
        error = answer.exception()
        if error is not None:
            # Connection loss, session expiry, ...: each member's caller tells, from its own
            # job's node, whether the multi applied, as after a multi of its own.
            for member in batch:
                _answer(member, error=error)
            return
        results = answer.result()
        failure = transaction_failure(results)
        if failure is None:
            start = 0
            for member in batch:
                end = start + len(member.operations)
                _answer(member, results=results[start:end])
                start = end
            return
        if len(batch) == 1:
            _answer(batch[0], error=TransactionFailed(failure.index, failure.error))
            return
        # Nothing applied. Send every member again, in order, the failing one alone.
        start = 0
        for member in batch:
            end = start + len(member.operations)
            member.alone = start <= failure.index < end
            member.sent = False
            start = end
        for member in batch:
            if member.abandoned:
                member.future.cancel()  # it did not apply, and nobody waits for it
        again = [m for m in batch if not m.future.done()]
        self.resent += len(again)
        RESENT.inc(len(again))
        self._pending.extendleft(reversed(again))

    async def close(self) -> None:
        """Stop waiting for a session on behalf of members (the process is shutting down)."""
        if self._waiting_for_session is not None:
            self._waiting_for_session.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._waiting_for_session


def _answer(
    member: _Member, *, results: list[Any] | None = None, error: BaseException | None = None
) -> None:
    member.sent = False
    if member.future.done():
        return
    if error is not None:
        member.future.set_exception(error)
    else:
        member.future.set_result(results or [])


def _consume(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
