"""Following one znode: read it, then read it again whenever its watch fires or a session
reconnects, one read at a time. The live token list and the live configuration both do this.

A subclass says what one read is (``_read_once``, which must pass ``self._changed`` as the
watch) and what it is following (``following``, for the log).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import ClassVar

from kazoo.exceptions import SessionExpiredError

from zootrain.zk import TRANSIENT_ERRORS, KazooState, WatchedEvent, ZooKeeper

log = logging.getLogger("zootrain.following")


@dataclass
class NodeFollower:
    zk: ZooKeeper
    following: ClassVar[str] = "a znode"
    loaded: asyncio.Event = field(default_factory=asyncio.Event, kw_only=True)
    # One read at a time: a read that started later always ends later, so an older state can
    # never be applied over a newer one.
    _reading: asyncio.Lock = field(default_factory=asyncio.Lock, kw_only=True)
    # Held: the loop keeps only weak references to its tasks.
    _rereads: set[asyncio.Task[None]] = field(default_factory=set, kw_only=True)
    _listening: bool = field(default=False, kw_only=True)

    async def start(self) -> None:
        """The first read (callers wait for it before they trust what it gives), then the
        watch. A new session loses its watches: read again on every reconnect, which also
        catches a change made while this process was cut off."""
        if not self._listening:  # start() is called again when its first read failed
            self.zk.add_state_listener(self._on_state)
            self._listening = True
        await self._read()

    async def _read_once(self) -> None:
        raise NotImplementedError

    def _on_state(self, state: KazooState) -> None:
        if state == KazooState.CONNECTED:
            self._spawn_reread()

    def _changed(self, event: WatchedEvent) -> None:
        self._spawn_reread()

    def _spawn_reread(self) -> None:
        task = asyncio.get_running_loop().create_task(self._reread())
        self._rereads.add(task)
        task.add_done_callback(self._rereads.discard)

    async def _reread(self) -> None:
        try:
            await self._read()
        except (*TRANSIENT_ERRORS, SessionExpiredError):
            # An expired session's watch went with it; the new session's CONNECTED reads again.
            log.warning("lost the watch on %s; it is read again on reconnect", self.following)

    async def _read(self) -> None:
        async with self._reading:
            await self._read_once()
