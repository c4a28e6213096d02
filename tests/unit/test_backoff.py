"""The retry backoff's arithmetic (the integration test reads it back from ZooKeeper)."""

from __future__ import annotations

import pytest

from zootrain.queue import backoff_delay


@pytest.mark.parametrize(
    ("attempts", "expected"), [(1, 1.5), (2, 3.0), (3, 6.0), (4, 10.0), (5, 10.0), (40, 10.0)]
)
def test_backoff_doubles_per_attempt_up_to_the_cap(attempts: int, expected: float) -> None:
    assert backoff_delay(attempts, 1.5, 10.0) == expected


def test_no_base_no_wait() -> None:
    assert backoff_delay(3, 0.0, 60.0) == 0.0
    assert backoff_delay(0, 1.0, 60.0) == 1.0  # a shard handed back before any attempt
