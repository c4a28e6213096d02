"""Run CPU-bound work in a child process, awaitable and killable from the event loop.

Children are forked from a forkserver that has already imported scikit-learn, so a shard starts
in milliseconds rather than paying a fresh interpreter's imports. The result comes back over a
pipe whose end the loop watches with ``add_reader``: no thread waits, and cancelling the awaiting
task kills the child at once (job cancelled, session lost, worker stopping).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import importlib
import multiprocessing
import os
import signal
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

# Set for the forkserver (which every training child is forked from) before it starts. A
# training child may run under an address-space cap (RLIMIT_AS), which counts reserved address
# space, not memory used: glibc reserves 64 MiB of it for each thread's malloc arena, and
# Arrow's default allocator reserves large regions up front. With these, a child's address
# space follows what it uses (a shard reading its rows of a large dataset, not the dataset).
CHILD_ENVIRONMENT = {"MALLOC_ARENA_MAX": "2", "ARROW_DEFAULT_MEMORY_POOL": "system"}
for _name, _value in CHILD_ENVIRONMENT.items():
    os.environ.setdefault(_name, _value)

_CONTEXT = multiprocessing.get_context("forkserver")
_CONTEXT.set_forkserver_preload(["workers.training"])
_PR_SET_PDEATHSIG = 1

ChildFunction = Callable[[dict[str, Any]], dict[str, Any]]
# A child function, or its name as "module:function": imported in the child (the forkserver
# preloads workers.training), so the parent need not import what the function needs.
ChildTarget = ChildFunction | str


class ChildFailed(Exception):
    """The child's function raised; ``detail`` names the exception."""

    def __init__(self, detail: str, trace: str = "") -> None:
        super().__init__(detail)
        self.detail = detail
        self.trace = trace


class ChildDied(Exception):
    """The child exited without a result (killed, out of memory, crashed)."""


async def warm_up() -> None:
    """Start the forkserver (and its scikit-learn imports) before the first shard arrives."""
    from multiprocessing import forkserver

    await asyncio.get_running_loop().run_in_executor(None, forkserver.ensure_running)


async def run_in_child(function: ChildTarget, payload: dict[str, Any]) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    receiver, sender = _CONTEXT.Pipe(duplex=False)
    process = _CONTEXT.Process(target=_child_main, args=(function, payload, sender), daemon=True)
    try:
        await loop.run_in_executor(None, process.start)
    finally:
        sender.close()  # only the child writes; our copy must go so EOF can reach us
    ready: asyncio.Future[None] = loop.create_future()

    def on_readable() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(receiver.fileno(), on_readable)
    try:
        await ready
        outcome = _receive(receiver)
    except BaseException:
        process.kill()
        raise
    finally:
        loop.remove_reader(receiver.fileno())
        receiver.close()
        # The child has answered or been killed: reaping it takes moments, off the loop.
        await asyncio.shield(loop.run_in_executor(None, process.join, 5))
    if outcome is None:
        raise ChildDied(f"training process exited with code {process.exitcode}")
    if "error" in outcome:
        raise ChildFailed(outcome["error"], outcome.get("trace", ""))
    result: dict[str, Any] = outcome["value"]
    return result


def _receive(receiver: Connection) -> dict[str, Any] | None:
    try:
        message: dict[str, Any] = receiver.recv()
        return message
    except EOFError:
        return None


def _resolve(target: ChildTarget) -> ChildFunction:
    if not isinstance(target, str):
        return target
    module, _, name = target.partition(":")
    function: ChildFunction = getattr(importlib.import_module(module), name)
    return function


def _child_main(function: ChildTarget, payload: dict[str, Any], sender: Connection) -> None:
    # Die with the forkserver, which dies with the worker: an orphan would train on unseen.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        sender.send({"value": _resolve(function)(payload)})
    except Exception as exc:
        sender.send({"error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()})
    finally:
        sender.close()
