"""A worker's shard task when its job trains in rounds (the recipe: zootrain/rounds.py).

The shard is claimed for the whole job, as any shard is (its lock, its record's version), and
its child (workers/round_child.py) keeps the shard's rows loaded between rounds. Each round
the task reads the round record with a watch, computes its result in the child, enters the
round by writing it, and, if the round is then complete, combines it in its child and opens the
next round. Otherwise it waits for the watch: the worker never polls.

A worker that dies mid-job loses its lock with its session; the shard is claimed again (by any
worker), reloads its rows and joins the round that is open then. Its result for that round may
be there already (written just before the death): it stands, being computed from the same
parameters on the same rows.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from kazoo.exceptions import NoNodeError

from workers import processes
from zootrain.errors import ArtifactError
from zootrain.records import ROUND_HISTORY, JobRecord, RoundPoint, RoundProgress, utcnow
from zootrain.rounds import INLINE_LIMIT, Blob, RoundRecord, Rounds, RoundState

if TYPE_CHECKING:
    from workers.claims import Claim
    from workers.worker import Worker

log = logging.getLogger("zootrain.worker")

SHARD_SESSION = "workers.round_child:shard_session"
T = TypeVar("T")


class RoundTask:
    def __init__(self, worker: Worker, claim: Claim, payload: dict[str, Any]) -> None:
        assert claim.index is not None
        self.worker = worker
        self.claim = claim
        self.index = claim.index
        self.payload = payload
        self.job_id = claim.job.id
        self.rounds = Rounds(worker.zk, worker.paths, claim.job.id, claim.job.spec.shards)
        loop = asyncio.get_running_loop()
        self.deadline = loop.time() + worker.time_limit(claim.job)
        self.compute = 0.0

    def remaining(self) -> float:
        left = self.deadline - asyncio.get_running_loop().time()
        if left <= 0:
            raise processes.TimeLimitExceeded(self.worker.time_limit(self.claim.job))
        return left

    async def _zk(self, operation: Any) -> Any:
        # A claim is worth as long as the session holding its lock: wait out a disconnection,
        # give up (SessionExpiredError) once another session connects.
        return await self.worker.zk.retry(operation, session=self.claim.session)

    async def run(self) -> dict[str, Any]:
        started = time.perf_counter()
        try:
            child = await processes.start_session(
                SHARD_SESSION,
                self.payload,
                timeout=self.remaining(),
                memory_limit=self.worker.memory_limit,
            )
        except processes.TimeLimitExceeded:
            raise self._over_time() from None
        try:
            return await self._rounds(child, started)
        finally:
            await child.close()

    def _over_time(self) -> processes.TimeLimitExceeded:
        # The child's wait was given what was left of the task's time: the error names the
        # task's limit, as every other way of running out of it does, not that remainder.
        return processes.TimeLimitExceeded(self.worker.time_limit(self.claim.job))

    async def _ask(self, child: processes.ChildSession, message: dict[str, Any]) -> dict[str, Any]:
        try:
            reply = await child.request(message, self.remaining())
        except processes.TimeLimitExceeded:
            raise self._over_time() from None
        self.compute += float(reply.get("seconds", 0.0))
        return reply

    async def _rounds(self, child: processes.ChildSession, started: float) -> dict[str, Any]:
        while True:
            changed = asyncio.Event()
            # The watch is set by the read itself: a change after the read wakes the wait below.
            got = await self._zk(partial(self.rounds.read, watch=_setter(changed)))
            if got is None:
                if self.index == 0:
                    reply = await self._ask(child, {"op": "start"})
                    first = RoundRecord(round=0, blob=await self._put(reply["state"]))
                    open_first = partial(self.rounds.open_first, first)
                    if await self._zk(self._naming([(first.blob, reply["state"])], open_first)):
                        log.info("rounds of %s: round 0 open", self.job_id)
                    continue
                await self._wait(changed)  # shard 0 opens round 0
                continue
            record, stat = got
            if record.state == RoundState.done:
                return await self._finish(child, record, started)
            number = record.round
            mine = self.rounds.result_path(number, self.index)
            if await self._zk(partial(self.worker.zk.exists, mine)) is None:
                state = await self._get(record.blob)
                reply = await self._ask(child, {"op": "local", "state": state, "round": number})
                blob = await self._put(reply["result"])
                post = partial(self.rounds.post, number, self.index, stat.version, blob)
                if not await self._zk(self._naming([(blob, reply["result"])], post)):
                    continue  # the round was combined without us (our earlier attempt's result)
            results = await self._zk(partial(self.rounds.complete, number))
            if results is None:
                await self._wait(changed)
                continue
            if any(r.opened != stat.version for r in results):
                # Cannot happen while round nodes are only made by the opening multi; if it
                # did, combining would mix two parameter versions: never.
                raise RuntimeError(f"round {number} holds results of another version")
            await self._combine(child, record, stat.version, results)

    async def _combine(
        self,
        child: processes.ChildSession,
        record: RoundRecord,
        version: int,
        results: list[Any],
    ) -> None:
        state = await self._get(record.blob)
        reply = await self._ask(
            child,
            {
                "op": "combine",
                "state": state,
                "results": [await self._get(r.blob) for r in results],
            },
        )
        done = bool(reply["done"])
        following = RoundRecord(
            round=record.round + (0 if done else 1),
            state=RoundState.done if done else RoundState.open,
            blob=await self._put(reply["state"]),
            objective=reply["objective"],
            change=reply["change"],
            model=Blob(**reply["model"]) if done else None,
        )
        try:
            data, job_stat = await self._zk(
                lambda: self.worker.zk.get(self.worker.paths.job(self.job_id))
            )
        except NoNodeError:
            return  # deleted: the job watch stops us
        job = JobRecord.load(data)
        if job.state.terminal:
            return  # cancelled (or failed): the job watch stops this task
        updated = job.model_copy(
            update={"rounds": _progress(job, following), "updated_at": utcnow()}
        )
        advance = partial(
            self.rounds.advance,
            record.round,
            version,
            following,
            (self.worker.paths.job(self.job_id), updated.dump(), job_stat.version),
        )
        named = [(following.blob, reply["state"])]
        if following.model is not None:
            named.append((following.model, None))
        advanced = await self._zk(self._naming(named, advance))
        if advanced:
            log.info(
                "rounds of %s: round %d combined (objective %.6g, change %.3g)%s",
                self.job_id,
                record.round,
                reply["objective"],
                reply["change"],
                "; done" if done else "",
            )

    async def _finish(
        self, child: processes.ChildSession, record: RoundRecord, started: float
    ) -> dict[str, Any]:
        assert record.model is not None
        reply = await self._ask(
            child,
            {"op": "finish", "artifact": record.model.artifact, "sha256": record.model.sha256},
        )
        return {
            "artifact": record.model.artifact,
            "sha256": record.model.sha256,
            "rows": reply["rows"],
            "metrics": {**reply["metrics"], "rounds": float(record.round + 1)},
            "train_seconds": time.perf_counter() - started,
            "compute_seconds": self.compute,
        }

    async def _wait(self, changed: asyncio.Event) -> None:
        try:
            await asyncio.wait_for(changed.wait(), self.remaining())
        except TimeoutError:
            raise processes.TimeLimitExceeded(self.worker.time_limit(self.claim.job)) from None

    async def _put(self, data: bytes) -> Blob:
        if len(data) <= INLINE_LIMIT:
            return Blob.of(data)
        loop = asyncio.get_running_loop()
        artifact, sha256 = await loop.run_in_executor(
            None, lambda: self.worker.store.put(data, kind="rounds", suffix="npz")
        )
        return Blob(artifact=artifact, sha256=sha256)

    def _naming(
        self, named: list[tuple[Blob, bytes | None]], write: Callable[[], Awaitable[T]]
    ) -> Callable[[], Awaitable[T]]:
        """``write``, a record naming these blobs, each attempt of it preceded by ``_keep``."""

        async def attempt() -> T:
            await self._keep(named)
            return await write()

        return attempt

    async def _keep(self, named: list[tuple[Blob, bytes | None]]) -> None:
        """Right before a record naming these blobs is written: keep the collector off their
        files however long ago they were put (an outage between), as a shard's model is kept
        (zootrain/store_gc.py). A file it took meanwhile is put again from its bytes (same
        bytes, same key); a file whose bytes we no longer hold (the final model, written by
        the child) fails the attempt, and the shard is trained again."""
        for blob, data in named:
            if blob.artifact is None or await self.worker.touch(blob.artifact):
                continue
            if data is None:
                raise ArtifactError(f"artifact {blob.artifact} was collected before its record")
            await self._put(data)

    async def _get(self, blob: Blob) -> bytes:
        inline = blob.data()
        if inline is not None:
            return inline
        assert blob.artifact is not None and blob.sha256 is not None
        artifact, sha256 = blob.artifact, blob.sha256
        loop = asyncio.get_running_loop()
        data: bytes = await loop.run_in_executor(None, self.worker.store.get, artifact, sha256)
        return data


def _setter(event: asyncio.Event) -> Callable[[object], None]:
    """A watch callback that sets ``event`` (the zk bridge runs it on the loop)."""
    return lambda _: event.set()


def _progress(job: JobRecord, following: RoundRecord) -> RoundProgress:
    """The job record's round progress once ``following`` is the round record."""
    history = list(job.rounds.history) if job.rounds is not None else []
    combined = following.round - (0 if following.state == RoundState.done else 1)
    if following.objective is not None:
        history.append(
            RoundPoint(round=combined, objective=following.objective, change=following.change)
        )
    return RoundProgress(
        round=following.round,
        objective=following.objective,
        change=following.change,
        history=history[-ROUND_HISTORY:],
    )


async def run(worker: Worker, claim: Claim, payload: dict[str, Any]) -> dict[str, Any]:
    """Train ``claim``'s shard in rounds: the result a one-shot shard's child returns."""
    return await RoundTask(worker, claim, payload).run()
