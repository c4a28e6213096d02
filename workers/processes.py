"""Run CPU-bound work in a child process, awaitable and killable from the event loop.

Children are forked from a forkserver that has already imported scikit-learn
(zootrain.forkserver), so a shard starts in milliseconds rather than paying a fresh
interpreter's imports. The result comes back over a pipe whose end the loop watches with
``add_reader``: no thread waits, and cancelling the awaiting task kills the child at once (job
cancelled, session lost, worker stopping).
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import os
import resource
import signal
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from zootrain import forkserver

# Set for the forkserver (which every training child is forked from) before it starts. A
# training child may run under an address-space cap (RLIMIT_AS), which counts reserved address
# space, not memory used: glibc reserves 64 MiB of it for each thread's malloc arena, and
# Arrow's default allocator reserves large regions up front. With these, a child's address
# space follows what it uses (a shard reading its rows of a large dataset, not the dataset).
CHILD_ENVIRONMENT = {"MALLOC_ARENA_MAX": "2", "ARROW_DEFAULT_MEMORY_POOL": "system"}
for _name, _value in CHILD_ENVIRONMENT.items():
    os.environ.setdefault(_name, _value)

_CONTEXT = forkserver.context("workers.training")

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


class TimeLimitExceeded(ChildFailed):
    """The child ran past its time limit and was killed."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"time limit of {_seconds(seconds)} s exceeded")


class MemoryLimitExceeded(ChildFailed):
    """The child ran out of address space under its memory limit (RLIMIT_AS)."""

    def __init__(self, limit: int, detail: str = "") -> None:
        super().__init__(f"memory limit of {format_bytes(limit)} exceeded" + detail)


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def format_bytes(size: int) -> str:
    """1073741824 -> "1 GiB", 1610612736 -> "1.5 GiB": as a person would write the limit."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.3g} {unit}" if unit != "B" else f"{size} B"
        value /= 1024
    raise AssertionError("unreachable")


def default_memory_limit(concurrency: int) -> int:
    """The machine's memory shared between the training processes a worker runs at once."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return max(1 << 30, total // max(1, concurrency))


async def warm_up() -> None:
    """Start the forkserver (and its scikit-learn imports) before the first shard arrives."""
    await forkserver.warm_up()


async def run_in_child(
    function: ChildTarget,
    payload: dict[str, Any],
    *,
    time_limit: float | None = None,
    memory_limit: int | None = None,
) -> dict[str, Any]:
    """Run ``function(payload)`` in a child; its result, or ChildFailed / ChildDied.

    ``time_limit``: seconds before the child is killed (TimeLimitExceeded). ``memory_limit``:
    the child's address-space ceiling in bytes (RLIMIT_AS, set in the child before it runs the
    function); an allocation past it fails, and the child reports MemoryLimitExceeded.
    """
    loop = asyncio.get_running_loop()
    receiver, sender = _CONTEXT.Pipe(duplex=False)
    process = _CONTEXT.Process(
        target=_child_main, args=(function, payload, sender, memory_limit), daemon=True
    )
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
        done, _ = await asyncio.wait({ready}, timeout=time_limit)
        if not done:
            raise TimeLimitExceeded(time_limit or 0.0)
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
        raise ChildDied(_death(process.exitcode, memory_limit))
    if "error" in outcome:
        if outcome.get("memory") and memory_limit is not None:
            raise MemoryLimitExceeded(memory_limit, f" ({outcome['error']})")
        raise ChildFailed(outcome["error"], outcome.get("trace", ""))
    result: dict[str, Any] = outcome["value"]
    return result


def _death(code: int | None, memory_limit: int | None) -> str:
    if code is not None and code < 0:
        name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
        # What a memory ceiling looks like from outside when C code cannot report it: an
        # allocation failure that aborts (SIGABRT) or is not checked (SIGSEGV), or the
        # kernel's OOM killer (SIGKILL) when the machine itself ran out.
        hint = ""
        if name in ("SIGABRT", "SIGSEGV", "SIGBUS") and memory_limit is not None:
            hint = f" (possibly the memory limit of {format_bytes(memory_limit)})"
        elif name == "SIGKILL":
            hint = " (out of memory?)"
        return f"training process was killed by {name}{hint}"
    return f"training process exited with code {code}"


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


def _child_main(
    function: ChildTarget,
    payload: dict[str, Any],
    sender: Connection,
    memory_limit: int | None = None,
) -> None:
    forkserver.become_child()
    if memory_limit is not None:
        # RLIMIT_AS rather than a cgroup: it needs no privileges or delegated hierarchy, and a
        # failing allocation surfaces as MemoryError that we can name, instead of a SIGKILL
        # from the OOM killer that says nothing.
        resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))
    try:
        sender.send({"value": _resolve(function)(payload)})
    except MemoryError as exc:
        gc.collect()  # what the failed step held is garbage now: room to report it
        sender.send({"error": f"MemoryError: {exc}".rstrip(": "), "memory": True})
    except Exception as exc:
        sender.send({"error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()})
    finally:
        sender.close()


class ChildSession:
    """A child that stays up between requests (a shard training in rounds keeps its rows loaded):
    ``function(payload)`` runs once in the child and returns the handler of every request.

    Requests and replies cross a duplex pipe; waiting for a reply watches the pipe with
    ``add_reader`` as run_in_child does, and cancelling the awaiting task kills the child.
    """

    def __init__(self, process: Any, connection: Connection, memory_limit: int | None) -> None:
        self.process = process
        self.connection = connection
        self.memory_limit = memory_limit

    async def request(self, message: dict[str, Any], timeout: float | None) -> dict[str, Any]:
        """Send ``message``; the handler's reply, or ChildFailed / ChildDied /
        TimeLimitExceeded (``timeout``: seconds, the caller's whole budget left)."""
        loop = asyncio.get_running_loop()
        try:
            # A big message fills the pipe until the child reads it: not on the loop.
            await loop.run_in_executor(None, self.connection.send, message)
        except (BrokenPipeError, ConnectionResetError, EOFError):
            await self.close()
            raise ChildDied(_death(self.process.exitcode, self.memory_limit)) from None
        return await self._reply(timeout)

    async def _reply(self, timeout: float | None) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()

        def on_readable() -> None:
            if not ready.done():
                ready.set_result(None)

        fd = self.connection.fileno()
        loop.add_reader(fd, on_readable)
        try:
            done, _ = await asyncio.wait({ready}, timeout=timeout)
            if not done:
                raise TimeLimitExceeded(timeout or 0.0)
            outcome = _receive(self.connection)
        except BaseException:
            self.process.kill()
            raise
        finally:
            loop.remove_reader(fd)
        if outcome is None:
            await self.close()
            raise ChildDied(_death(self.process.exitcode, self.memory_limit))
        if "error" in outcome:
            if outcome.get("memory") and self.memory_limit is not None:
                raise MemoryLimitExceeded(self.memory_limit, f" ({outcome['error']})")
            raise ChildFailed(outcome["error"], outcome.get("trace", ""))
        value: dict[str, Any] = outcome["value"]
        return value

    async def close(self) -> None:
        """Kill the child (it holds nothing worth a goodbye) and reap it, off the loop."""
        self.process.kill()
        self.connection.close()
        loop = asyncio.get_running_loop()
        await asyncio.shield(loop.run_in_executor(None, self.process.join, 5))


async def start_session(
    function: ChildTarget,
    payload: dict[str, Any],
    *,
    timeout: float | None = None,
    memory_limit: int | None = None,
) -> ChildSession:
    """Fork a session child and wait for its setup (``function(payload)``) to finish."""
    loop = asyncio.get_running_loop()
    parent, child = _CONTEXT.Pipe(duplex=True)
    process = _CONTEXT.Process(
        target=_session_main, args=(function, payload, child, memory_limit), daemon=True
    )
    try:
        await loop.run_in_executor(None, process.start)
    finally:
        child.close()
    session = ChildSession(process, parent, memory_limit)
    try:
        await session._reply(timeout)
    except BaseException:
        await session.close()
        raise
    return session


def _session_main(
    function: ChildTarget,
    payload: dict[str, Any],
    connection: Connection,
    memory_limit: int | None = None,
) -> None:
    forkserver.become_child()
    if memory_limit is not None:
        resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))
    handler: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    try:
        handler = _resolve_session(function)(payload)
        connection.send({"value": {}})
    except Exception as exc:
        _send_error(connection, exc)
        return
    while True:
        try:
            message = connection.recv()
        except EOFError:
            return  # the worker is gone or done with us
        try:
            connection.send({"value": handler(message)})
        except Exception as exc:
            _send_error(connection, exc)


def _send_error(connection: Connection, exc: Exception) -> None:
    if isinstance(exc, MemoryError):
        gc.collect()
        connection.send({"error": f"MemoryError: {exc}".rstrip(": "), "memory": True})
    else:
        connection.send({"error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()})


def _resolve_session(target: ChildTarget) -> Callable[[dict[str, Any]], Any]:
    function: Callable[[dict[str, Any]], Any] = _resolve(target)
    return function
