"""Uploaded files are parsed in a child process (app/upload_check.py): a file that kills the parser
(memory) ends that upload with a 422 and leaves the job service, and the next upload, unharmed."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from app.upload_check import TableChecker, _resident_bytes
from zootrain.errors import InvalidRequest
from zootrain.ml.tabular import TableError, describe


def write_csv(path: Path, rows: int) -> Path:
    with path.open("w") as f:
        f.write("a,b,label\n")
        for i in range(rows):
            f.write(f"{i},{i * 0.5},{'xy'[i % 2]}\n")
    return path


def test_the_child_describes_as_the_service_would(tmp_path: Path) -> None:
    csv = write_csv(tmp_path / "small.csv", 50)
    checker = TableChecker()
    try:
        table = asyncio.run(checker.describe(csv, "csv", max_rows=1000, max_columns=10))
    finally:
        checker.close()
    assert table == describe(csv, "csv", max_rows=1000, max_columns=10)
    assert table.rows == 50 and [c.name for c in table.columns] == ["a", "b", "label"]


def test_a_refusal_crosses_the_process_boundary_whole(tmp_path: Path) -> None:
    csv = write_csv(tmp_path / "long.csv", 50)
    checker = TableChecker()
    try:
        with pytest.raises(TableError, match="ZOOTRAIN_MAX_DATASET_ROWS") as refused:
            asyncio.run(checker.describe(csv, "csv", max_rows=10, max_columns=10))
    finally:
        checker.close()
    assert refused.value.unsupported is False


def test_a_parser_killed_mid_file_is_a_422_and_the_next_upload_works(tmp_path: Path) -> None:
    big = write_csv(tmp_path / "big.csv", 1_000_000)
    small = write_csv(tmp_path / "small.csv", 10)
    checker = TableChecker()

    async def scenario() -> None:
        reading = asyncio.ensure_future(
            checker.describe(big, "csv", max_rows=10_000_000, max_columns=10)
        )
        # What the kernel's OOM killer would do to the child while it parses.
        # The child starts with the first check; it needs well over a second to start and read
        # a million rows, so a kill this early always lands before its answer.
        await asyncio.sleep(0.05)
        (pid,) = checker._executor()._processes
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(InvalidRequest, match="died while reading it"):
            await reading
        table = await checker.describe(small, "csv", max_rows=100, max_columns=10)
        assert table.rows == 10
        assert os.getpid() != pid

    try:
        asyncio.run(scenario())
    finally:
        checker.close()


def test_a_check_past_its_memory_budget_is_stopped_with_a_422(tmp_path: Path) -> None:
    small = write_csv(tmp_path / "small.csv", 10)
    big = write_csv(tmp_path / "big.csv", 2_000_000)  # 37 MB: pandas needs >100 MB for it
    checker = TableChecker()

    async def scenario() -> None:
        await checker.describe(small, "csv", max_rows=100, max_columns=10)
        pid = checker._pid
        assert pid is not None
        # The budget: what the child holds after its imports, plus a little.
        checker.memory_limit = _resident_bytes(pid) + 32 * 2**20
        with pytest.raises(InvalidRequest, match="ZOOTRAIN_UPLOAD_CHECK_MEMORY_BYTES"):
            await checker.describe(big, "csv", max_rows=10_000_000, max_columns=10)
        # Killed: its exit (freeing the memory it took) may still be under way when the pool
        # has seen its pipe close, so wait for it to be gone rather than catch it mid-exit.
        assert await _gone(pid)
        # A new child checks the next upload, within the budget.
        table = await checker.describe(small, "csv", max_rows=100, max_columns=10)
        assert table.rows == 10 and checker._pid != pid

    try:
        asyncio.run(scenario())
    finally:
        checker.close()


async def _gone(pid: int, within: float = 30.0) -> bool:
    """Whether the process ``pid`` ends (or is a zombie) within ``within`` seconds: its pidfd
    turns readable when it exits, so this waits on the event, not on a sampling loop."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True  # gone and reaped already
    loop = asyncio.get_running_loop()
    exited = asyncio.Event()
    loop.add_reader(fd, exited.set)
    try:
        await asyncio.wait_for(exited.wait(), within)
        return True
    except TimeoutError:
        return False
    finally:
        loop.remove_reader(fd)
        os.close(fd)
