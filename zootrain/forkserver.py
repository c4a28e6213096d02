"""Child processes forked from a forkserver that has already imported scikit-learn.

The processes that coordinate (a worker's main process, the job service) never import
scikit-learn themselves: it costs a process about 170 MB and seconds of start-up. The work that
needs it runs in children, and a child forked from a forkserver that preloaded the modules it
needs starts in milliseconds instead of paying a fresh interpreter's imports. The forkserver is
a clean interpreter (not a fork of a process with a running event loop and ZooKeeper threads),
started on first use, or earlier by ``warm_up``.

One forkserver serves a process: every module asked for here is preloaded by it (the list can
only grow, and only until it starts; a child imports whatever was not preloaded itself).
workers.processes starts a worker's training children from it, app.pool the job service's
prediction children.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import multiprocessing
import signal
from multiprocessing.context import ForkServerContext

_PRELOAD: set[str] = set()
_PR_SET_PDEATHSIG = 1


def context(*preload: str) -> ForkServerContext:
    """The forkserver context, with ``preload`` added to the modules its server imports."""
    _PRELOAD.update(preload)
    forkserver = multiprocessing.get_context("forkserver")
    forkserver.set_forkserver_preload(sorted(_PRELOAD))
    return forkserver


async def warm_up() -> None:
    """Start the forkserver (and its imports) before the first child is needed."""
    from multiprocessing import forkserver

    await asyncio.get_running_loop().run_in_executor(None, forkserver.ensure_running)


def become_child() -> None:
    """What every child does first: die with its parent, leave SIGTERM's default and ignore
    SIGINT (a Ctrl-C in a terminal reaches the whole group; the parent decides)."""
    # The forkserver dies with the process that started it, so a child cannot outlive that
    # process: an orphan would train, or hold a model in memory, unseen.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
