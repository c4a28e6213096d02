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
from typing import Any

from zootrain.errors import InvalidRequest
from zootrain.ml.columnar import Manifest
from zootrain.ml.tabular import Format, Table, describe, ingest

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
            ingest,
            path,
            fmt,
            directory,
            sha256=sha256,
            max_rows=max_rows,
            max_columns=max_columns,
        )
        return await self._run(work)

    async def _run(self, work: functools.partial[Any]) -> Any:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor(), work)
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
