"""Uploaded files are read and described in a child process, never in the job service itself.

pandas needs several times a file's size to parse it: a 200 MB CSV can take 1-2 GB. In the job
service that peak would sit next to every other request, and a file that exhausts memory would
take the service down with it. In a child, the peak is returned to the system when the check
ends, and an out-of-memory kill ends that upload with a 422, nothing else. One child per job
service process: uploads are checked one at a time, which also bounds the memory they use.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from zootrain.errors import InvalidRequest
from zootrain.ml.tabular import Format, Table, describe

log = logging.getLogger("zootrain.api")


class TableChecker:
    def __init__(self) -> None:
        self._pool: ProcessPoolExecutor | None = None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # forkserver: the child starts from a clean interpreter, not a fork of a process
            # with a running event loop and ZooKeeper threads.
            context = multiprocessing.get_context("forkserver")
            self._pool = ProcessPoolExecutor(max_workers=1, mp_context=context)
        return self._pool

    async def describe(self, path: Path, fmt: Format, *, max_rows: int, max_columns: int) -> Table:
        """zootrain.ml.tabular.describe in the child; TableError comes back as itself."""
        check = functools.partial(describe, path, fmt, max_rows=max_rows, max_columns=max_columns)
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor(), check)
        except BrokenProcessPool:
            log.warning("the table-checking process died reading an upload (out of memory?)")
            self._discard()
            raise InvalidRequest(
                "file: the process checking it died while reading it (most likely it needs "
                "more memory than this server has); upload a smaller file or fewer columns"
            ) from None

    def _discard(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        self._discard()
