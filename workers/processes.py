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

import threadpoolctl

from zootrain import forkserver

# Set for the forkserver (which every training child is forked from) before it starts. A
# training child may run under an address-space cap (RLIMIT_AS), which counts reserved address
# space, not memory used: glibc reserves 64 MiB of it for each thread's malloc arena, and
# Arrow's default allocator reserves large regions up front. With these, a child's address
# space follows what it uses (a shard reading its rows of a large dataset, not the dataset).
CHILD_ENVIRONMENT = {"MALLOC_ARENA_MAX": "2", "ARROW_DEFAULT_MEMORY_POOL": "system"}
for _name, _value in CHILD_ENVIRONMENT.items():
    os.environ.setdefault(_name, _value)

_CONTEXT = forkserver.context("workers.train_child")

ChildFunction = Callable[[dict[str, Any]], dict[str, Any]]
# A child function, or its name as "module:function": imported in the child (the forkserver
# preloads workers.train_child), so the parent need not import what the function needs.
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


# A child that finished a task successfully waits for the next one instead of exiting (a
# warm child): the next shard or merge skips the fork and the child's start-up, and a child
# keeps what it loaded for a job (zootrain's dataset, the models it trained) for that job's
# next task (workers/train_child.py). Only a child whose task succeeded is kept, and only while its
# peak memory stayed close to what it started with: memory a large task freed may stay mapped
# in the child (malloc's arenas) and count against the next task's RLIMIT_AS. So a failed,
# killed or grown child is never reused, and a task's memory limit and its failures behave as
# in a fresh child. Small tasks are the ones a fork and start-up weigh on; a large one's data
# would not fit beside the next task's anyway (tests/integration/test_larger_than_memory.py).
_max_idle = 2  # ZOOTRAIN_WORKER_WARM_CHILDREN, set by the worker at start (configure)
# Threads a child's native libraries (OpenBLAS, OpenMP) may use. Each starts a thread per core
# in every process, and a worker runs a child per task slot: two children of two threads each
# on two cores spin against each other (a 200,000-row logistic regression's rounds took 3.4x
# longer, docs/performance.md). One thread a child, as Dask's nanny and Ray set for their
# workers by default; 0 keeps the libraries' own default.
_child_threads = 1  # ZOOTRAIN_WORKER_CHILD_THREADS, set by the worker at start (configure)
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
IDLE_SECONDS = 60.0  # an idle warm child exits after this (its memory goes back)
WARM_MAX_GROWTH = 64 << 20  # peak RSS above the child's RSS at its start: small tasks only


class _Child:
    """A training child and the parent's end of its (duplex) pipe."""

    def __init__(self, memory_limit: int | None, keep_warm: bool) -> None:
        self.memory_limit = memory_limit
        self.connection, child_end = _CONTEXT.Pipe(duplex=True)
        self.process = _CONTEXT.Process(
            target=_child_main,
            args=(child_end, memory_limit, keep_warm, _child_threads),
            daemon=True,
        )
        self._child_end: Connection | None = child_end
        self.affinity: str | None = None
        self.retire: asyncio.TimerHandle | None = None

    def start(self) -> None:
        try:
            self.process.start()
        finally:
            assert self._child_end is not None
            self._child_end.close()  # only the child holds it now: its exit reaches us as EOF
            self._child_end = None

    def close(self) -> None:
        """Let an idle child exit: EOF on its pipe ends its loop."""
        if self.retire is not None:
            self.retire.cancel()
        self.connection.close()


_IDLE: list[_Child] = []


def idle_children() -> int:
    """How many warm children wait for a task (for tests and metrics)."""
    return len(_IDLE)


def configure(warm_children: int, child_threads: int = 1) -> None:
    """How many warm children to keep (0: none; every child exits once it has answered), and
    how many threads a child's native libraries may use (0: their own default)."""
    global _max_idle, _child_threads
    _max_idle = warm_children
    _child_threads = child_threads


def limit_threads(threads: int) -> None:
    """Hold this process's BLAS and OpenMP pools to ``threads`` (0: leave them as they are).

    threadpoolctl (scikit-learn's own dependency, which its estimators use for the same) finds
    the libraries actually loaded and sets each through its API: the environment variables
    would come too late, numpy having been imported by the forkserver before the fork.
    """
    if threads > 0:
        threadpoolctl.threadpool_limits(limits=threads)
        # A library this child loads later reads its limit from the environment as it loads.
        for name in THREAD_VARIABLES:
            os.environ[name] = str(threads)


def close_idle() -> None:
    """Let every idle warm child exit (a stopping worker; tests)."""
    while _IDLE:
        _IDLE.pop().close()


def _take_idle(memory_limit: int | None, affinity: str | None) -> _Child | None:
    """An idle child with this memory limit, preferring one last used for ``affinity`` (it
    holds that job's data and models), else the least recently used: the most recent one holds
    the job whose merge is likeliest to come next (a worker claims its next task while it
    records the last one: workers/worker.py)."""
    usable = [c for c in _IDLE if c.memory_limit == memory_limit]
    if not usable:
        return None
    chosen = next((c for c in reversed(usable) if affinity and c.affinity == affinity), usable[0])
    _IDLE.remove(chosen)
    if chosen.retire is not None:
        chosen.retire.cancel()
        chosen.retire = None
    if not chosen.process.is_alive():  # died while idle (e.g. the OOM killer): never handed out
        chosen.connection.close()
        return _take_idle(memory_limit, affinity)
    return chosen


def _keep_idle(child: _Child, loop: asyncio.AbstractEventLoop) -> None:
    _IDLE.append(child)
    while len(_IDLE) > _max_idle:
        _IDLE.pop(0).close()

    def retire() -> None:
        if child in _IDLE:
            _IDLE.remove(child)
            child.close()

    child.retire = loop.call_later(IDLE_SECONDS, retire)


async def run_in_child(
    function: ChildTarget,
    payload: dict[str, Any],
    *,
    time_limit: float | None = None,
    memory_limit: int | None = None,
    affinity: str | None = None,
) -> dict[str, Any]:
    """Run ``function(payload)`` in a child; its result, or ChildFailed / ChildDied.

    ``time_limit``: seconds before the child is killed (TimeLimitExceeded). ``memory_limit``:
    the child's address-space ceiling in bytes (RLIMIT_AS, set in the child before it runs the
    function); an allocation past it fails, and the child reports MemoryLimitExceeded.
    ``affinity`` (a job id): prefer a warm child that last ran a task with the same affinity.
    """
    loop = asyncio.get_running_loop()
    child = _take_idle(memory_limit, affinity)
    if child is None:
        child = _Child(memory_limit, keep_warm=_max_idle > 0)
        await loop.run_in_executor(None, child.start)
    receiver = child.connection
    ready: asyncio.Future[None] = loop.create_future()

    def on_readable() -> None:
        if not ready.done():
            ready.set_result(None)

    keep = False
    loop.add_reader(receiver.fileno(), on_readable)
    try:
        try:
            # A few hundred bytes (the spec, artifact names): the socket's buffer takes them
            # without blocking the loop.
            receiver.send((function, payload))
        except OSError:
            outcome = None  # the child is gone: reported as its death below
        else:
            done, _ = await asyncio.wait({ready}, timeout=time_limit)
            if not done:
                raise TimeLimitExceeded(time_limit or 0.0)
            outcome = _receive(receiver)
        keep = (
            outcome is not None
            and "value" in outcome
            and outcome.get("growth", WARM_MAX_GROWTH) < WARM_MAX_GROWTH
            and _max_idle > 0
        )
    except BaseException:
        child.process.kill()
        raise
    finally:
        loop.remove_reader(receiver.fileno())
        if not keep:
            receiver.close()
            # The child has answered (and exits), or has been killed: reaping it takes
            # moments, off the loop.
            await asyncio.shield(loop.run_in_executor(None, child.process.join, 5))
    if keep:
        child.affinity = affinity
        _keep_idle(child, loop)
    if outcome is None:
        raise ChildDied(_death(child.process.exitcode, memory_limit))
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
    except (EOFError, ConnectionResetError):
        # A child killed before it read what we sent leaves unread bytes in its socket, so the
        # kernel resets the connection rather than closing it: a death all the same.
        return None


def _resolve(target: ChildTarget) -> ChildFunction:
    if not isinstance(target, str):
        return target
    module, _, name = target.partition(":")
    function: ChildFunction = getattr(importlib.import_module(module), name)
    return function


def _child_main(
    connection: Connection,
    memory_limit: int | None = None,
    keep_warm: bool = True,
    threads: int = 1,
) -> None:
    forkserver.become_child()
    limit_threads(threads)
    start = _peak_rss()  # a forked child's high-water mark starts at its RSS at the fork
    if memory_limit is not None:
        # RLIMIT_AS rather than a cgroup: it needs no privileges or delegated hierarchy, and a
        # failing allocation surfaces as MemoryError that we can name, instead of a SIGKILL
        # from the OOM killer that says nothing.
        resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))
    try:
        while True:
            try:
                function, payload = connection.recv()
            except EOFError:
                return  # the parent let us go (idle too long, or it stopped)
            # A failed task's child is never reused; with warm children off, no child is, and
            # it leaves at once rather than wait for the parent's word, which a frozen parent
            # never sends. (A grown child waits for the parent's EOF: the parent decides.)
            if not _run_one(connection, function, payload, start) or not keep_warm:
                return
    finally:
        connection.close()


def _peak_rss() -> int:
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _run_one(
    connection: Connection, function: ChildTarget, payload: dict[str, Any], start: int
) -> bool:
    """Run one task and send its outcome; whether it succeeded."""
    try:
        value = _resolve(function)(payload)
    except MemoryError as exc:
        gc.collect()  # what the failed step held is garbage now: room to report it
        connection.send({"error": f"MemoryError: {exc}".rstrip(": "), "memory": True})
        return False
    except Exception as exc:
        connection.send({"error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()})
        return False
    # The parent keeps only a child that stayed small.
    connection.send({"value": value, "growth": _peak_rss() - start})
    return True


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
        target=_session_main,
        args=(function, payload, child, memory_limit, _child_threads),
        daemon=True,
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
    threads: int = 1,
) -> None:
    forkserver.become_child()
    limit_threads(threads)
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
