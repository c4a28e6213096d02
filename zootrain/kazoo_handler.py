"""kazoo's threading handler, with two costs of every request taken out (IHandler is kazoo's
documented extension point: ``KazooClient(handler=...)``).

Every ZooKeeper request and reply passes through kazoo's connection thread, which waits for its
socket with the handler's ``select``. kazoo's own (``selector_select``) builds a new
``selectors.DefaultSelector`` for every wait: on Linux an epoll instance created, registered,
waited on and closed, four system calls and a few dozen lines of Python, and a submit's multi
waits four or five times (the wake-up, the write, the reply's length, the reply). ``select``
here is one ``poll`` call, which, unlike ``select.select``, has no limit on descriptor numbers
(the job service has thousands of connections open under load).

A reply's callbacks (``rawlink``) are queued for kazoo's completion thread, which runs them one
by one. The asyncio bridge's callback (zootrain.zk) only hands the result to the event loop
(``call_soon_threadsafe``), so the hop through a third thread bought nothing and cost a queue,
a condition variable and a contended GIL hand-off per request: ``link_now`` runs such a callback
in the thread that sets the result. Every other callback (kazoo's own recipes, anything that
may block) still goes through the completion thread.
"""

from __future__ import annotations

import select
from collections.abc import Callable, Sequence
from typing import Any

from kazoo.handlers.threading import AsyncResult, SequentialThreadingHandler
from kazoo.handlers.utils import fileobj_to_fd

_READ = select.POLLIN | select.POLLPRI
_WRITE = select.POLLOUT
# A socket in error or hung up is "ready" for both: the read or write that follows raises, as
# with kazoo's selectors (which report EPOLLERR and EPOLLHUP as both readable and writable).
_FAILED = select.POLLERR | select.POLLHUP


class DirectResult(AsyncResult):  # type: ignore[misc]  # kazoo ships no types
    """kazoo's AsyncResult, plus callbacks that run where the result is set."""

    def __init__(self, handler: Any) -> None:
        super().__init__(handler)
        self._now: list[Callable[[Any], None]] = []

    def link_now(self, callback: Callable[[Any], None]) -> None:
        """Call ``callback(self)`` in the thread that sets the result (kazoo's connection
        thread), or at once if it is set. It must never block or raise: it runs inside
        kazoo's reading of the socket."""
        with self._condition:
            if self.ready():
                callback(self)
            else:
                self._now.append(callback)

    def _do_callbacks(self) -> None:
        # Called by set() and set_exception() under self._condition.
        now, self._now = self._now, []
        for callback in now:
            callback(self)
        super()._do_callbacks()


class PollingHandler(SequentialThreadingHandler):  # type: ignore[misc]
    name = "zootrain_polling_handler"

    def async_result(self) -> DirectResult:
        return DirectResult(self)

    def select(
        self,
        rlist: Sequence[Any],
        wlist: Sequence[Any],
        xlist: Sequence[Any],
        timeout: float | None = None,
    ) -> tuple[list[Any], list[Any], list[Any]]:
        if timeout is not None and timeout < 0:
            raise ValueError("timeout must be non-negative")
        masks: dict[int, int] = {}
        for fileobj in rlist:
            fd = fileobj_to_fd(fileobj)
            masks[fd] = masks.get(fd, 0) | _READ
        for fileobj in wlist:
            fd = fileobj_to_fd(fileobj)
            masks[fd] = masks.get(fd, 0) | _WRITE
        poller = select.poll()
        for fd, mask in masks.items():
            poller.register(fd, mask)
        ready = dict(poller.poll(None if timeout is None else timeout * 1000.0))
        if any(events & select.POLLNVAL for events in ready.values()):
            # What kazoo's selectors raise for a closed descriptor (its callers expect it).
            raise ValueError("Invalid event mask or fd")
        readable = [f for f in rlist if ready.get(fileobj_to_fd(f), 0) & (_READ | _FAILED)]
        writable = [f for f in wlist if ready.get(fileobj_to_fd(f), 0) & (_WRITE | _FAILED)]
        return readable, writable, []
