"""zootrain.kazoo_handler: kazoo's handler with a poll-based select and direct completions.
(Every integration test talks to ZooKeeper through it; these pin down its own rules.)"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from zootrain.kazoo_handler import DirectResult, PollingHandler


@pytest.fixture
def handler() -> Iterator[PollingHandler]:
    handler = PollingHandler()
    handler.start()
    try:
        yield handler
    finally:
        handler.stop()


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    try:
        yield a, b
    finally:
        a.close()
        b.close()


def test_select_waits_for_reading_and_says_which(
    handler: PollingHandler, pair: tuple[socket.socket, socket.socket]
) -> None:
    a, b = pair
    assert handler.select([a, b], [], [], 0.01) == ([], [], [])
    b.send(b"x")
    assert handler.select([a, b], [], [], 1.0) == ([a], [], [])
    assert handler.select([b], [a], [], 1.0) == ([], [a], [])  # a socket pair has room


def test_select_accepts_descriptors_and_reports_a_hang_up_as_readable(
    handler: PollingHandler,
) -> None:
    read_fd, write_fd = os.pipe()
    try:
        assert handler.select([read_fd], [], [], 0) == ([], [], [])
        os.close(write_fd)
        assert handler.select([read_fd], [], [], 1.0) == ([read_fd], [], [])  # EOF to read
    finally:
        os.close(read_fd)


def test_select_refuses_a_closed_descriptor_and_a_negative_timeout(
    handler: PollingHandler,
) -> None:
    read_fd, write_fd = os.pipe()
    os.close(read_fd)
    os.close(write_fd)
    with pytest.raises(ValueError):
        handler.select([read_fd], [], [], 0)
    with pytest.raises(ValueError):
        handler.select([], [], [], -1)


def test_a_direct_callback_runs_in_the_setting_thread_others_in_kazoos(
    handler: PollingHandler,
) -> None:
    result = handler.async_result()
    assert isinstance(result, DirectResult)
    seen: dict[str, Any] = {}
    queued = threading.Event()

    def direct(r: DirectResult) -> None:
        seen["direct"] = (threading.current_thread().name, r.value)

    def linked(r: DirectResult) -> None:
        seen["linked"] = (threading.current_thread().name, r.value)
        queued.set()

    result.link_now(direct)
    result.rawlink(linked)
    setter = threading.Thread(target=result.set, args=(42,), name="setter")
    setter.start()
    setter.join()
    assert seen["direct"] == ("setter", 42)
    assert queued.wait(10)
    assert seen["linked"][1] == 42 and seen["linked"][0] != "setter"  # kazoo's completion thread


def test_a_direct_callback_on_a_set_result_runs_at_once(handler: PollingHandler) -> None:
    result = handler.async_result()
    result.set_exception(KeyError("gone"))
    seen: list[BaseException] = []
    result.link_now(lambda r: seen.append(r.exception))
    assert len(seen) == 1 and isinstance(seen[0], KeyError)
    result.set(1)  # set again (kazoo never does): the callback has run once already
    assert len(seen) == 1
