"""Uploaded files are read and described in a child process, never in the job service itself.

pandas needs several times a file's size to parse it: a 200 MB CSV can take 1-2 GB. In the job
service that peak would sit next to every other request, and a file that exhausts memory would
take the service down with it. In a child, the peak is returned to the system when the check
ends. One child per job service process: uploads are checked one at a time, which also bounds
the memory they use.

The child has a memory budget (ZOOTRAIN_UPLOAD_CHECK_MEMORY_BYTES): while it checks a file, its
resident size is sampled, and past the budget it is stopped and the upload refused with a 422
that says so, instead of the kernel's OOM killer choosing a victim. Why sampling and not an
rlimit: RLIMIT_AS and RLIMIT_DATA count address space, not memory (OpenBLAS and pyarrow reserve
far more than they touch), and under either limit OpenBLAS's thread start-up and pyarrow's
Parquet reader hang instead of failing; a cgroup would need privileges the service does not
have. A sample every 50 ms lets the child overshoot by what it allocates in that time.

pandas and pyarrow (zootrain.ml.tabular) are imported by the child alone: the job service itself
sends it the functions below, which import them there, and reads back a Table, a Manifest or a
TableError, none of which needs them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import multiprocessing
import os
import signal
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, TypeVar

from zootrain.errors import InvalidRequest
from zootrain.ml.encoding import Table
from zootrain.ml.manifest import Manifest
from zootrain.spec import Format

log = logging.getLogger("zootrain.api")

T = TypeVar("T")

SAMPLE_SECONDS = 0.05
_PAGE = os.sysconf("SC_PAGE_SIZE")


class TableChecker:
    def __init__(self, memory_limit: int | None = None) -> None:
        """``memory_limit``: bytes of resident memory the child may use (None: unbounded)."""
        self.memory_limit = memory_limit
        self._pool: ProcessPoolExecutor | None = None
        self._pid: int | None = None
        self._one_at_a_time = asyncio.Lock()

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # spawn: the child starts from a clean interpreter, not a fork of a process with a
            # running event loop and ZooKeeper threads, nor of the service's forkserver (app.pool),
            # whose scikit-learn pages would count against the child's memory budget.
            context = multiprocessing.get_context("spawn")
            self._pool = ProcessPoolExecutor(max_workers=1, mp_context=context)
        return self._pool

    async def _child(self) -> tuple[ProcessPoolExecutor, int]:
        """The pool and its one process's pid (asked of the child itself: a public way)."""
        pool = self._executor()
        if self._pid is None:
            self._pid = await asyncio.get_running_loop().run_in_executor(pool, os.getpid)
        return pool, self._pid

    async def describe(self, path: Path, fmt: Format, *, max_rows: int, max_columns: int) -> Table:
        """zootrain.ml.tabular.describe in the child; TableError comes back as itself."""
        check = functools.partial(_describe, path, fmt, max_rows=max_rows, max_columns=max_columns)
        return await self._run(check)

    async def ingest(
        self,
        path: Path,
        fmt: Format,
        directory: Path,
        *,
        sha256: str,
        max_rows: int,
        max_columns: int,
    ) -> tuple[Table, Manifest, list[Path]]:
        """zootrain.ml.tabular.ingest in the child: describe the file and write its stored
        form (two Parquet files) into ``directory``."""
        work = functools.partial(
            _ingest,
            path,
            fmt,
            directory,
            sha256=sha256,
            max_rows=max_rows,
            max_columns=max_columns,
        )
        return await self._run(work)

    async def _run(self, work: functools.partial[T]) -> T:
        # One check at a time, so that the memory sampled is this check's own.
        async with self._one_at_a_time:
            watchdog: asyncio.Task[bool] | None = None
            try:
                pool, pid = await self._child()
                running = asyncio.get_running_loop().run_in_executor(pool, work)
                watchdog = asyncio.create_task(self._watch(pid, running))
                try:
                    return await running
                finally:
                    watchdog.cancel()
            except BrokenProcessPool:
                self._discard()
                killed = watchdog is not None and watchdog.done() and not watchdog.cancelled()
                if killed and watchdog is not None and watchdog.result():
                    log.warning(
                        "stopped the table-checking process: an upload needed more than %d "
                        "bytes of memory",
                        self.memory_limit,
                    )
                    raise InvalidRequest(
                        f"file: checking it needs more than the {self.memory_limit:,} bytes of "
                        "memory this server gives it (ZOOTRAIN_UPLOAD_CHECK_MEMORY_BYTES); "
                        "upload a smaller file or fewer columns"
                    ) from None
                log.warning("the table-checking process died reading an upload (out of memory?)")
                raise InvalidRequest(
                    "file: the process checking it died while reading it (most likely it needs "
                    "more memory than this server has); upload a smaller file or fewer columns"
                ) from None

    async def _watch(self, pid: int, running: asyncio.Future[Any]) -> bool:
        """Stop the child if its resident size passes the limit; whether it did."""
        if self.memory_limit is None:
            return False
        while not running.done():
            if _resident_bytes(pid) > self.memory_limit:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                return True
            await asyncio.sleep(SAMPLE_SECONDS)
        return False

    def _discard(self) -> None:
        pool, self._pool, self._pid = self._pool, None, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        self._discard()


def _describe(path: Path, fmt: Format, *, max_rows: int, max_columns: int) -> Table:
    from zootrain.ml.tabular import describe  # in the child

    return describe(path, fmt, max_rows=max_rows, max_columns=max_columns)


def _ingest(
    path: Path, fmt: Format, directory: Path, *, sha256: str, max_rows: int, max_columns: int
) -> tuple[Table, Manifest, list[Path]]:
    from zootrain.ml.tabular import ingest  # in the child

    return ingest(path, fmt, directory, sha256=sha256, max_rows=max_rows, max_columns=max_columns)


def _resident_bytes(pid: int) -> int:
    try:
        # statm: size resident shared text lib data dt, in pages.
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return 0  # gone, or no /proc: nothing to stop
