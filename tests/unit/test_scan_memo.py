"""What an idle worker remembers of queued jobs between scans (workers/scan_memo.py)."""

from __future__ import annotations

from workers.scan_memo import ScanMemo
from zootrain.paths import sorted_queue

A = "4-aaaaaaaaaaaaaaaaaaaa-0000000001"
B = "0-bbbbbbbbbbbbbbbbbbbb-0000000003"
C = "4-cccccccccccccccccccc-0000000002"


def test_sorted_queue_is_the_queue_order_and_skips_junk() -> None:
    memo = ScanMemo()
    names = [A, B, C, "junk"]
    assert memo.sorted_queue(names) == sorted_queue(names)
    # Parsed names are remembered: a second scan gives the same order.
    assert memo.sorted_queue(list(reversed(names))) == sorted_queue(names)


def test_a_blocked_job_is_skipped_until_something_forgets_it() -> None:
    memo = ScanMemo()
    queued = memo.sorted_queue([A, B, C])
    assert list(memo.start_scan(queued)) == ["b" * 20, "a" * 20, "c" * 20]
    memo.block("a" * 20, memo.mark)
    assert list(memo.start_scan(queued)) == ["b" * 20, "c" * 20]
    memo.forget("a" * 20)  # its lock was released, say
    assert list(memo.start_scan(queued)) == ["b" * 20, "a" * 20, "c" * 20]
    memo.block("a" * 20, memo.mark)
    memo.block("c" * 20, memo.mark)
    memo.forget_all()  # the session came back
    assert list(memo.start_scan(queued)) == ["b" * 20, "a" * 20, "c" * 20]


def test_a_wake_up_during_the_read_keeps_the_job_unblocked() -> None:
    memo = ScanMemo()
    queued = memo.sorted_queue([A, C])
    memo.start_scan(queued)
    mark = memo.mark  # taken before the read...
    memo.forget("a" * 20)  # ... which a wake-up overtook
    memo.block("a" * 20, mark)
    memo.block("c" * 20, mark)
    assert list(memo.start_scan(queued)) == ["a" * 20]
    mark = memo.mark
    memo.forget_all()
    memo.block("a" * 20, mark)
    assert list(memo.start_scan(queued)) == ["a" * 20, "c" * 20]


def test_a_job_that_left_the_queue_is_forgotten() -> None:
    memo = ScanMemo()
    memo.start_scan(memo.sorted_queue([A, C]))
    memo.block("a" * 20, memo.mark)
    # Gone from the queue, then back (a new entry for the same job id): read again.
    memo.start_scan(memo.sorted_queue([C]))
    assert list(memo.start_scan(memo.sorted_queue([A, C]))) == ["a" * 20, "c" * 20]


def test_a_job_that_found_every_slot_taken_waits_for_one_to_come_free() -> None:
    """A busy worker still scans while its slot for jobs training in rounds is free: a job
    that found the other slots taken is not read again until one of them comes free."""
    memo = ScanMemo()
    queued = memo.sorted_queue([A, B, C])
    memo.start_scan(queued)
    memo.block("a" * 20, memo.mark, frozenset({False}))
    memo.block("c" * 20, memo.mark, frozenset({True}))
    assert list(memo.start_scan(queued)) == ["b" * 20]
    memo.room_freed(False)  # one of our claims ended, or its child answered
    assert list(memo.start_scan(queued)) == ["b" * 20, "a" * 20]
    memo.room_freed(True)
    assert list(memo.start_scan(queued)) == ["b" * 20, "a" * 20, "c" * 20]


def test_a_slot_freed_during_the_read_keeps_the_job_unblocked() -> None:
    memo = ScanMemo()
    queued = memo.sorted_queue([A, C])
    memo.start_scan(queued)
    mark = memo.mark
    memo.room_freed(False)  # while the job was read
    memo.block("a" * 20, mark, frozenset({False}))
    memo.block("c" * 20, mark, frozenset({True}))  # another kind: blocked
    assert list(memo.start_scan(queued)) == ["a" * 20]


def test_the_memo_knows_each_listed_jobs_queue_entry() -> None:
    memo = ScanMemo()
    memo.sorted_queue([A, B])
    assert memo.entry_name("a" * 20) == A
    assert memo.entry_name("b" * 20) == B
    assert memo.entry_name("c" * 20) is None


def test_a_job_whose_kinds_of_slot_are_all_taken_is_not_read() -> None:
    """A busy worker whose round slot is free scans for jobs training in rounds: a job known
    to take training slots only is left unread (blocked or not) until one comes free; a job
    not read yet is read while any slot is free."""
    memo = ScanMemo()
    queued = memo.sorted_queue([A, B, C])
    a, b, c = "a" * 20, "b" * 20, "c" * 20
    memo.learn(a, frozenset({False}))  # plain shards and a merge
    memo.learn(b, frozenset({False, True}))  # shards in rounds, a merge
    rounds_only = {False: False, True: True}
    assert list(memo.start_scan(queued, rounds_only.__getitem__)) == [b, c]  # c: never read
    assert list(memo.start_scan(queued, lambda kind: not kind)) == [b, a, c]
    # No free slot at all (our own tasks took the last one during the scan): nothing to read,
    # known or not; the slot coming free wakes the worker.
    assert list(memo.start_scan(queued, lambda kind: False)) == []
    assert list(memo.start_scan(queued)) == [b, a, c]


def test_a_scan_ends_when_its_last_free_slot_is_taken_meanwhile() -> None:
    """A finished shard's task may claim its job's merge while a scan reads: with no slot left,
    the scan reads no further (it would read every queued job to claim nothing), and a scan
    with a slot free again walks on from where it was."""
    memo = ScanMemo()
    queued = memo.sorted_queue([A, B, C])
    free = {False: True, True: False}
    scan = memo.start_scan(queued, free.__getitem__)
    assert scan.take(1) == ["b" * 20]
    free[False] = False  # our merge claim took the slot
    assert scan.take(4) == []
    free[False] = True
    assert scan.take(4) == ["a" * 20, "c" * 20]


def test_a_job_forgotten_while_a_scan_walks_is_read_by_it() -> None:
    memo = ScanMemo()
    queued = memo.sorted_queue([A, B, C])
    list(memo.start_scan(queued))
    memo.block("a" * 20, memo.mark)
    scan = memo.start_scan(queued)
    assert scan.take(1) == ["b" * 20]
    memo.forget("a" * 20)  # its lock was let go while the scan read b
    assert scan.take(4) == ["a" * 20, "c" * 20]


def test_the_same_listing_is_sorted_once() -> None:
    """A worker reuses its listing while the queue's watch is unfired: sorting it again on
    every wake-up was a tenth of a busy worker's CPU. A new listing is sorted anew."""
    memo = ScanMemo()
    names = [C, A, B]
    first = memo.sorted_queue(names)
    assert memo.sorted_queue(names) is first
    again = memo.sorted_queue([C, A])
    assert again is not first
    assert again == sorted_queue([C, A])


def test_the_memo_knows_which_jobs_are_small_until_they_leave_the_queue() -> None:
    memo = ScanMemo()
    memo.learn("a" * 20, frozenset({False}), 2, small=True)
    memo.learn("c" * 20, frozenset({False}), 2)
    assert memo.small("a" * 20) and not memo.small("c" * 20) and not memo.small("b" * 20)
    for i in range(2000):  # enough jobs come and go for the memo to prune what left
        memo.learn(f"{i:020d}", frozenset({False}), 1)
    memo.start_scan(memo.sorted_queue([C]))
    assert not memo.small("a" * 20)
