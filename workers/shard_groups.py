"""Small jobs: the shards of a job that trains in milliseconds, claimed together by one worker
and trained one after another by one child.

A shard of iris with two trees trains in 3 ms; its claim's multi, its child's round trip, its
settle's multi and the other worker's reading of its model for the merge cost several times
that, on both workers and on ZooKeeper. Claimed together, such a job pays one claim multi, one
child (which keeps every shard model in memory, so the merge that follows in the same warm child
loads none of them from the store), one watch on the job and one scan's reads.

Each shard keeps its own claim all the same: its own lock (taken in the one multi), its own
record version (fencing), its own outcome and settle, its own attempts. What the group shares
is the child and the slot: a worker with one slot holds one group.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from workers import processes
from zootrain.records import JobRecord, ShardState
from zootrain.spec import BuiltinDataset, SyntheticDataset, dataset_shape

if TYPE_CHECKING:
    from workers.claims import Claim, Shards

# More than this many shards are never claimed by one worker at once, however small: the
# others are left to other workers' scans.
MAX_GROUP = 16


def shard_work(job: JobRecord) -> int | None:
    """Dataset cells (rows x features) times trees a shard of ``job`` grows at most: what
    decides whether its shards are claimed together. None when not known without reading data
    (an uploaded dataset) or for jobs that are never grouped (a search, rounds, a baseline)."""
    spec = job.spec
    if spec.kind != "train" or spec.rounds or spec.baseline:
        return None
    if not isinstance(spec.dataset, BuiltinDataset | SyntheticDataset):
        return None
    rows, features = dataset_shape(spec.dataset)
    trees = spec.params.get("n_estimators", 1)
    return rows * features * max(1, int(trees) if isinstance(trees, int) else 1)


def groupable(job: JobRecord, limit: int) -> bool:
    """Whether ``job``'s pending shards are claimed together (``limit``: the setting
    worker_group_work; 0 never)."""
    if limit <= 0 or job.spec.tasks < 2:
        return False
    work = shard_work(job)
    return work is not None and work <= limit


def pick(shards: Shards, now: float, max_attempts: int, taken: Callable[[int], bool]) -> Shards:
    """The shards a group claim takes: pending, due, with attempts left, not ``taken`` (held by
    one of our own claims), in index order, at most MAX_GROUP. A running shard (its owner may
    have died) is left to a claim of its own, which looks at its lock first."""
    found = [
        (shard, stat)
        for shard, stat in shards
        if shard.state == ShardState.pending
        and (shard.not_before or 0) <= now
        and shard.attempts < max_attempts
        and not taken(shard.index)
    ]
    return found[:MAX_GROUP]


@dataclass(eq=False)
class ShardGroup:
    """The claims of one group (``members``, in index order) and the child they share."""

    members: list[Claim]
    child: asyncio.Future[dict[str, Any]] | None = field(default=None, repr=False)
    # Members still waiting on the child: when the last one stops (each cancelled: the job
    # cancelled, the session lost, a stop's grace run out), the child is killed.
    waiting: set[int] = field(default_factory=set)
    # Members whose outcome is still to be written: the last one to write it checks the job
    # for its merge (the others' outcomes are then all in: one session's writes apply in
    # order).
    unsettled: int = 0

    def __post_init__(self) -> None:
        self.waiting = {id(m) for m in self.members}
        self.unsettled = len(self.members)

    @property
    def whole_job(self) -> bool:
        """Whether the group holds every task of its job: its last member to settle claims the
        merge next (as the worker that settled a job's last shard does)."""
        return len(self.members) == self.lead.job.spec.tasks

    @property
    def lead(self) -> Claim:
        """The member that watches the job for all (a cancel stops every member)."""
        return self.members[0]

    @property
    def indices(self) -> list[int]:
        return [m.index for m in self.members if m.index is not None]

    def start(self, run: Callable[[], asyncio.Future[dict[str, Any]]]) -> None:
        """Start the shared child once (the first member to get there)."""
        if self.child is None:
            self.child = run()
            # Each member reads the outcome; a child cancelled for all is read by none.
            self.child.add_done_callback(lambda done: done.cancelled() or done.exception())

    def leave(self, claim: Claim) -> None:
        """``claim`` no longer waits on the child; the last to leave stops it if unanswered."""
        self.waiting.discard(id(claim))
        if not self.waiting and self.child is not None and not self.child.done():
            self.child.cancel()

    async def result(self, claim: Claim, seconds: float) -> dict[str, Any]:
        """``claim``'s own result from the shared child's answer: raises as a child of its own
        would have (ChildFailed for its shard's failure alone; the child's death, time limit
        or memory limit for every member). ``seconds``: the per-task time limit."""
        assert self.child is not None and claim.index is not None
        try:
            answer = await asyncio.shield(self.child)
        except processes.TimeLimitExceeded:
            # The child had the members' limits added up; each task ran out of its own.
            raise processes.TimeLimitExceeded(seconds) from None
        finally:
            self.leave(claim)
        own: dict[str, Any] = answer["results"][claim.index]
        if "failed" in own:
            raise processes.ChildFailed(own["failed"], own.get("trace", ""))
        return own

    def settled(self) -> bool:
        """One member's outcome is written (or refused): whether it was the group's last."""
        self.unsettled -= 1
        return self.unsettled <= 0
