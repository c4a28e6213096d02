"""Round recipe: shards of a job compute in lockstep rounds, combined through ZooKeeper.

Layout, under the job's node::

    /jobs/<id>/rounds                  the round record: number, state, the current parameters
    /jobs/<id>/rounds/r-<round>        made by the multi that opens the round
    /jobs/<id>/rounds/r-<round>/<i>    shard i's result for that round

It is Curator's DistributedDoubleBarrier with ZooKeeper doing the counting: a shard enters the
round by creating its result node, and the round is complete when the round node has one child
per shard. Whoever sees it complete right after its own write (or on rejoining) combines the
results and, in one multi, moves the round record on (at the version it read), deletes round
r's nodes and creates round r+1's node. Several may combine the same round; the version lets
exactly one multi through. Everyone else leaves the barrier when the round record changes: a
data watch on it, never a poll.

Fencing: the round node exists only while its round is open, so a result computed from round
r's parameters can only land under round r (a late write finds the node gone: NoNode), and a
round's results all carry the record version that opened it. A round is never combined from
two parameter versions.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from enum import StrEnum

from kazoo.exceptions import BadVersionError, NodeExistsError, NoNodeError
from pydantic import BaseModel, Field

from zootrain.paths import Paths
from zootrain.records import Record
from zootrain.zk import TransactionFailed, WatchedEvent, ZnodeStat, ZooKeeper

ROUND_WIDTH = 10
INLINE_LIMIT = 256 * 1024
"""Bytes of parameters or results kept inline in a znode (base64 adds a third; ZooKeeper's
limit is 1 MB a node): more go to the artifact store, and the record names them."""


class RoundState(StrEnum):
    open = "open"
    """Shards compute round ``round`` from ``blob``."""
    done = "done"
    """Converged (or out of rounds): ``blob`` is the final state, ``model`` the fitted model."""


class Blob(BaseModel):
    """Bytes kept inline (base64) or in the artifact store (``artifact`` with its sha256)."""

    inline: str | None = None
    artifact: str | None = None
    sha256: str | None = None

    @classmethod
    def of(cls, data: bytes) -> Blob:
        return cls(inline=base64.b64encode(data).decode())

    def data(self) -> bytes | None:
        """The inline bytes; None for an artifact (the caller fetches it)."""
        return None if self.inline is None else base64.b64decode(self.inline)


class RoundRecord(Record):
    """/jobs/<id>/rounds."""

    round: int = 0
    state: RoundState = RoundState.open
    blob: Blob
    objective: float | None = None
    """The objective at the parameters of the round before this one."""
    change: float | None = None
    model: Blob | None = Field(None, description="The final model file (state done).")


class RoundResult(Record):
    """/jobs/<id>/rounds/r-<round>/<index>: one shard's result for one round."""

    round: int
    opened: int
    """The round record's version when the round opened: the fencing token."""
    index: int
    blob: Blob


class Rounds:
    """The round nodes of one job, for one shard task (``index``) among ``shards``."""

    def __init__(self, zk: ZooKeeper, paths: Paths, job_id: str, shards: int) -> None:
        self.zk = zk
        self.paths = paths
        self.job_id = job_id
        self.shards = shards
        self.record_path = rounds_path(paths, job_id)

    def round_path(self, number: int) -> str:
        return f"{self.record_path}/r-{number:0{ROUND_WIDTH}d}"

    def result_path(self, number: int, index: int) -> str:
        return f"{self.round_path(number)}/{index:04d}"

    async def read(
        self, watch: Callable[[WatchedEvent], None] | None = None
    ) -> tuple[RoundRecord, ZnodeStat] | None:
        """The round record, or None before round 0 is open (``watch`` then waits for it)."""
        if watch is not None:
            # exists() sets its watch whether or not the node is there: one call covers both
            # "wait for round 0" and "wait for the next round".
            stat = await self.zk.exists(self.record_path, watch=watch)
            if stat is None:
                return None
        try:
            data, stat = await self.zk.get(self.record_path)
        except NoNodeError:
            return None
        return RoundRecord.load(data), stat

    async def open_first(self, record: RoundRecord) -> bool:
        """Open round 0; False if it was open already (shard 0's earlier attempt did it)."""
        tx = self.zk.transaction()
        tx.create(self.record_path, record.dump())
        tx.create(self.round_path(0), b"")
        try:
            await self.zk.commit(tx)
            return True
        except TransactionFailed as failed:
            if isinstance(failed.error, NodeExistsError | NoNodeError):
                return False  # NoNode: the job itself is gone
            raise

    async def post(self, number: int, index: int, opened: int, blob: Blob) -> bool:
        """Enter round ``number`` with this shard's result; False if the round is closed.

        A node already there is this shard's own result from an attempt that died after
        writing it: computed from the same parameters on the same rows, it stands.
        """
        result = RoundResult(round=number, opened=opened, index=index, blob=blob)
        try:
            await self.zk.create(self.result_path(number, index), result.dump())
        except NodeExistsError:
            return True
        except NoNodeError:
            return False
        return True

    async def complete(self, number: int) -> list[RoundResult] | None:
        """Round ``number``'s results if every shard has entered it, else None."""
        try:
            names = await self.zk.get_children(self.round_path(number))
        except NoNodeError:
            return None
        if len(names) < self.shards:
            return None
        results = []
        for name in sorted(names):
            try:
                data, _ = await self.zk.get(f"{self.round_path(number)}/{name}")
            except NoNodeError:
                return None  # the round was combined meanwhile
            results.append(RoundResult.load(data))
        return results

    async def advance(
        self,
        number: int,
        version: int,
        following: RoundRecord,
        job: tuple[str, bytes, int] | None = None,
    ) -> bool:
        """Close round ``number`` and open the next (or finish), in one multi at the round
        record's ``version``; ``job``: (path, data, version) of the job record to update in the
        same multi (its round progress). False if someone else's multi came first or the job
        record moved (the caller reads again)."""
        tx = self.zk.transaction()
        tx.set_data(self.record_path, following.dump(), version)
        for index in range(self.shards):
            tx.delete(self.result_path(number, index))
        tx.delete(self.round_path(number))
        if following.state == RoundState.open:
            tx.create(self.round_path(following.round), b"")
        if job is not None:
            tx.set_data(job[0], job[1], job[2])
        try:
            await self.zk.commit(tx)
            return True
        except TransactionFailed as failed:
            if isinstance(failed.error, BadVersionError | NoNodeError | NodeExistsError):
                return False
            raise


def rounds_path(paths: Paths, job_id: str) -> str:
    return f"{paths.job(job_id)}/rounds"


async def subtree(zk: ZooKeeper, paths: Paths, job_id: str) -> list[str]:
    """Every round node of a job, deepest first: what deleting the job must delete first."""
    base = rounds_path(paths, job_id)
    try:
        rounds = await zk.get_children(base)
    except NoNodeError:
        return []
    found: list[str] = []
    for name in rounds:
        try:
            results = await zk.get_children(f"{base}/{name}")
        except NoNodeError:
            continue
        found.extend(f"{base}/{name}/{result}" for result in results)
        found.append(f"{base}/{name}")
    found.append(base)
    return found
