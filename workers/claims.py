"""What a worker holds while it works: a claim on a shard or on a job's merge, why a claim's
task was stopped, and what a scan learns from a job it could not claim in."""

from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple

from zootrain.records import JobRecord, ShardRecord, utcnow
from zootrain.zk import ZnodeStat

if TYPE_CHECKING:
    from workers.shard_groups import ShardGroup

Shards = list[tuple[ShardRecord, ZnodeStat]]


class StopReason(enum.StrEnum):
    """Why a claim's task was cancelled: what it must leave behind depends on it."""

    # The job was cancelled (or otherwise finished) under us: release the lock and leave the
    # records to whoever finished the job.
    CANCELLED = "cancelled"
    # The session died and its ephemeral lock with it: another worker may already hold the
    # claim, so the task writes nothing and releases nothing.
    LOST = "lost"
    # A graceful stop ran past its grace period: the shard goes back to pending without
    # spending an attempt, and the lock is released.
    HANDBACK = "handback"


@dataclass
class Claim:
    """A unit of work this worker holds the lock for: a shard, or a job's merge (index None)."""

    job: JobRecord
    lock: str
    index: int | None = None
    shard: ShardRecord | None = None
    stat: ZnodeStat | None = None
    session: int | None = None  # the session whose ephemeral lock makes the claim ours
    reason: StopReason | None = None  # set when the task is cancelled
    # Set once the child has answered: from then on the task only writes its (version-checked)
    # outcome and releases its lock, and cancelling it would leave the lock behind.
    settling: bool = False
    wound_down: bool = False  # _after_cancel ran: a second cancel must not repeat it
    # The lock went in the multi that wrote the claim's outcome (or published its job): no
    # separate release.
    released: bool = False
    task: asyncio.Task[None] | None = field(default=None, repr=False)
    claimed_at: datetime = field(default_factory=utcnow)  # what the worker record's "since" says
    # A merge claim: the job's shard records, all read `done` before it was claimed.
    shards: list[ShardRecord] | None = field(default=None, repr=False)
    # A merge claim: its child, if started before the claim was written (publishing.py:
    # start_merge_early); merge_and_publish takes its result instead of starting one.
    early: asyncio.Future[dict[str, Any]] | None = field(default=None, repr=False)
    # A shard claimed with others of its small job, trained by one child with them
    # (workers/shard_groups.py).
    group: ShardGroup | None = field(default=None, repr=False)

    @property
    def in_rounds(self) -> bool:
        """A shard of a job training in rounds: held for the whole job, on a round slot."""
        return self.index is not None and takes_round_slot(self.job, self.index)

    @property
    def key(self) -> str:
        return f"{self.job.id}/{'merge' if self.index is None else self.index}"


def takes_round_slot(job: JobRecord, index: int) -> bool:
    return job.spec.rounds and job.spec.role(index) == "shard"


def slot_kinds(job: JobRecord) -> frozenset[bool]:
    """The kinds of slot a job's tasks take (True: a round slot), its merge's (never one)
    included: what a scan with no free slot of those kinds would read it for nothing."""
    if not job.spec.rounds:
        return frozenset({False})
    return frozenset({False} | {takes_round_slot(job, i) for i in range(job.spec.tasks)})


class Attempt(NamedTuple):
    """What trying to claim in a job gave: a claim, or none and whether a wake-up is sure to
    come when that may change (a watched lock's release, our own claim's end, a retry's
    timer, a slot coming free). A job with nothing to claim and a wake-up to come is skipped by
    scans until then."""

    claim: Claim | None
    waiting: bool
    # The kinds of slot (for a task of a job training in rounds: True) it needed and found all
    # taken: a slot of that kind coming free is its wake-up.
    full: frozenset[bool] = frozenset()


class QueuedJob(NamedTuple):
    """A queued job as a scan read it: its record and its shards' records (and the job
    record's stat: a claim marks the job `running` at that version without reading it again)."""

    job: JobRecord
    shards: Shards
    stat: ZnodeStat | None = None


class Unclaimable(enum.Enum):
    """A queued job a scan read nothing to claim in, without trying its locks."""

    # Deleted, or terminal: its queue entry is about to go (or housekeeping removes it).
    FINAL = enum.auto()
    # Could not be read now (a connection drop, a record that does not parse): the next scan
    # reads it again.
    UNREADABLE = enum.auto()
    # Its tasks take only the kind of slot this worker has none of free (read without its
    # shards): a slot of that kind coming free reads it again.
    FULL = enum.auto()


def dataset_source(job: JobRecord) -> dict[str, Any] | None:
    """The job's dataset as resolved at submit, as a training child's payload carries it."""
    source = job.dataset_source
    return None if source is None else source.model_dump(mode="json")
