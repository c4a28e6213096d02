"""What an idle worker remembers about queued jobs between scans of the queue.

Each wake-up of the claim loop scans the queue in order. Most queued jobs have nothing to claim
for a reason a wake-up covers: a lock someone else holds (its release watch), a retry's backoff
(its timer), our own claim (its end), a terminal job (its entry is going), no free slot of the
kind its tasks take (one of our claims ending or settling: ``room_freed``). The memo keeps those
jobs blocked until such a wake-up forgets them, so that a worker re-reads only what may have
changed; and it keeps the queue's entry names parsed. (A worker whose training slot is busy
still scans while its slot for jobs training in rounds is free: without the last reason, each
such scan read every queued job again, every time the queue changed.)

A job's kinds of slot (a shard of a job training in rounds takes a round slot, every other task
a training slot) never change: once read, a job whose kinds of slot are all taken is skipped
unread, blocked or not. A busy worker whose round slot is free scans whenever the queue changes,
and a slot coming free unblocks every job that found it taken: without this, each of those
scans read every queued job again (with 500 tiny jobs queued, hundreds of reads a job).

A scan reads a batch of jobs concurrently, and a wake-up may forget a job while its read is in
flight: the read then says nothing of the change. Every forgetting is therefore numbered, and a
job is blocked only if nothing forgot it after the scan's ``mark`` taken before its read.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterator

from zootrain.paths import QueueEntry, parse_queue_entry

_QUEUE_ORDER = operator.attrgetter("rank", "sequence")  # zootrain.paths.sorted_queue's order


class ScanMemo:
    def __init__(self) -> None:
        self._blocked: set[str] = set()
        self._events = 0  # counts the wake-ups that forget a job ...
        self._touched: dict[str, int] = {}  # ... the latest one for each job, this scan
        self._reset_at = 0  # ... and the latest one that forgot every job
        # Jobs blocked (also) for want of a slot, by the kind of slot (rounds or not), and the
        # latest wake-up that freed a slot of each kind.
        self._full: dict[bool, set[str]] = {False: set(), True: set()}
        self._freed_at: dict[bool, int] = {False: 0, True: 0}
        self._entries: dict[str, QueueEntry] = {}  # queue entry names, parsed
        self._names: dict[str, str] = {}  # job id -> its queue entry's name, as last listed
        # job id -> the kinds of slot its tasks take (True: a round slot), once read.
        self._kinds: dict[str, frozenset[bool]] = {}
        self._tasks: dict[str, int] = {}  # job id -> its number of tasks, once read
        self._small: set[str] = set()  # jobs whose shards are claimed together, once read
        self._sorted_from: list[str] | None = None  # the listing sorted_queue last sorted ...
        self._sorted: list[QueueEntry] | None = None  # ... and its entries, in queue order
        self._pruned_for: list[QueueEntry] | None = None  # the entries start_scan pruned by

    def forget(self, job_id: str) -> None:
        """Something about ``job_id`` changed: the next scan reads it again."""
        self._blocked.discard(job_id)
        self._events += 1
        self._touched[job_id] = self._events

    def forget_all(self) -> None:
        self._blocked.clear()
        for jobs in self._full.values():
            jobs.clear()
        self._events += 1
        self._reset_at = self._events

    def room_freed(self, rounds: bool) -> None:
        """A slot of this kind (for tasks of jobs training in rounds, or any other) is free:
        the jobs that found them all taken are read again."""
        self._blocked -= self._full[rounds]
        self._full[rounds].clear()
        self._events += 1
        self._freed_at[rounds] = self._events

    def learn(
        self, job_id: str, kinds: frozenset[bool], tasks: int = 0, small: bool = False
    ) -> None:
        """The kinds of slot ``job_id``'s tasks take (its merge too), how many tasks it has,
        and whether its shards are claimed together (workers/shard_groups.py), as its spec
        says (none of them ever changes)."""
        self._kinds[job_id] = kinds
        if tasks:
            self._tasks[job_id] = tasks
        if small:
            self._small.add(job_id)

    def small(self, job_id: str) -> bool:
        """Whether a scan read ``job_id`` and found its shards claimed together."""
        return job_id in self._small

    def tasks(self, job_id: str) -> int:
        """How many tasks ``job_id`` has, if a scan read it (0 if not)."""
        return self._tasks.get(job_id, 0)

    def start_scan(
        self, queued: list[QueueEntry], room: Callable[[bool], bool] | None = None
    ) -> Scan:
        """The jobs of ``queued`` (in order) the scan must read, taken a batch at a time: a scan
        mostly claims at the head of the queue, and reads no further. Forgets jobs that left the
        queue, and from here only wake-ups during this scan count.

        ``room(kind)``: whether a slot of that kind is free, asked before each batch: a job known
        to need only kinds without one is left out, and with no free slot at all the scan is
        over. A claim made during the scan (the merge a finished shard's task claims) may take
        the last free slot; a scan that read on would read every queued job to claim nothing,
        and the slot coming free wakes the worker for a new scan anyway."""
        if queued is not self._pruned_for:
            # A listing the last scan had already pruned by is the same queue: not walked again.
            self._prune({e.job_id for e in queued})
            self._pruned_for = queued
        self._touched.clear()
        return Scan(self, queued, room)

    @property
    def blocked(self) -> set[str]:
        return self._blocked

    @property
    def kinds(self) -> dict[str, frozenset[bool]]:
        return self._kinds

    def _prune(self, queued_ids: set[str]) -> None:
        self._blocked &= queued_ids
        for jobs in self._full.values():
            jobs &= queued_ids
        if len(self._kinds) > 2 * len(queued_ids) + 1000:
            self._kinds = {k: v for k, v in self._kinds.items() if k in queued_ids}
            self._tasks = {k: v for k, v in self._tasks.items() if k in queued_ids}
            self._small &= queued_ids

    @property
    def mark(self) -> int:
        """Taken before reading a job: ``block`` after the read holds only if nothing forgot
        the job since."""
        return self._events

    def block(self, job_id: str, mark: int, full: frozenset[bool] = frozenset()) -> None:
        """Skip ``job_id`` until a wake-up forgets it, unless one already did since ``mark``.
        ``full``: the kinds of slot it found all taken (``room_freed`` forgets it too)."""
        if self._reset_at > mark or self._touched.get(job_id, 0) > mark:
            return
        if any(self._freed_at[kind] > mark for kind in full):
            return
        self._blocked.add(job_id)
        for kind in full:
            self._full[kind].add(job_id)

    def entry_name(self, job_id: str) -> str | None:
        """The name of ``job_id``'s queue entry, if a scan listed it (a name never changes:
        the publishing multi deletes it without listing the queue again)."""
        return self._names.get(job_id)

    def sorted_queue(self, names: list[str]) -> list[QueueEntry]:
        """zootrain.paths.sorted_queue, parsing only names not seen before: at 10,000 waiting
        jobs, parsing and sorting them all (dataclass comparisons) took 30 ms per wake-up. The
        same listing (the very list: a worker reuses it while the queue's watch is unfired)
        gives the same list back, unsorted again: with 500 tiny jobs queued, sorting on every
        wake-up was a tenth of a worker's CPU."""
        if names is self._sorted_from and self._sorted is not None:
            return self._sorted
        known = self._entries
        entries = []
        for name in names:
            entry = known.get(name)
            if entry is None:
                entry = parse_queue_entry(name)
                if entry is None:
                    continue
                known[name] = entry
                self._names[entry.job_id] = name
            entries.append(entry)
        if len(known) > 2 * len(entries) + 1000:
            self._entries = {e.name: e for e in entries}
            self._names = {e.job_id: e.name for e in entries}
        entries.sort(key=_QUEUE_ORDER)
        self._sorted_from, self._sorted = names, entries
        return entries


class Scan:
    """One scan's walk through the queue (ScanMemo.start_scan)."""

    def __init__(
        self, memo: ScanMemo, queued: list[QueueEntry], room: Callable[[bool], bool] | None
    ) -> None:
        self._memo = memo
        self._entries = iter(queued)
        self._room = room

    def take(self, count: int) -> list[str]:
        """The next ``count`` jobs to read (fewer at the end of the queue; none once no slot is
        free). Blocked jobs are skipped as the walk reaches them: one forgotten meanwhile is
        read."""
        room = self._room
        free = [False, True] if room is None else [k for k in (False, True) if room(k)]
        if not free:
            return []
        blocked, kinds = self._memo.blocked, self._memo.kinds
        found: list[str] = []
        for entry in self._entries:
            job_id = entry.job_id
            if job_id in blocked:
                continue
            known = kinds.get(job_id)
            if known is not None and known.isdisjoint(free):
                continue
            found.append(job_id)
            if len(found) == count:
                break
        return found

    def __iter__(self) -> Iterator[str]:
        while batch := self.take(64):
            yield from batch
