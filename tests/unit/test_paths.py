from __future__ import annotations

from zootrain.paths import (
    Paths,
    parse_queue_entry,
    parse_version_node,
    sorted_queue,
    version_node,
)


def test_queue_orders_by_priority_then_sequence() -> None:
    names = [
        "4-aaaaaaaaaaaaaaaaaaaa-0000000001",  # priority 5, first
        "0-bbbbbbbbbbbbbbbbbbbb-0000000003",  # priority 9
        "4-cccccccccccccccccccc-0000000002",
        "junk",
    ]
    assert [e.job_id[0] for e in sorted_queue(names)] == ["b", "a", "c"]


def test_queue_entry_names_its_job() -> None:
    paths = Paths("/zt")
    prefix = paths.queue_prefix("0123456789abcdef0123", priority=7)
    assert prefix == "/zt/queue/2-0123456789abcdef0123-"
    entry = parse_queue_entry("2-0123456789abcdef0123-0000000042")
    assert entry is not None and (entry.job_id, entry.sequence) == ("0123456789abcdef0123", 42)


def test_versions_count_from_one() -> None:
    assert version_node(1) == "v-0000000000"
    assert parse_version_node(version_node(17)) == 17
    assert parse_version_node("x-1") is None


def test_locks_are_flat() -> None:
    paths = Paths("/zt")
    assert paths.shard_lock("j", 3) == "/zt/locks/j.0003"
    assert paths.merge_lock("j") == "/zt/locks/j.merge"
