"""A small asyncio bridge over kazoo.

kazoo runs its own connection thread and completes every ``*_async`` call there. We turn those
completions, watch callbacks and session-state changes into asyncio futures and callbacks on the
event loop with ``call_soon_threadsafe``, so nothing here ever blocks the loop.

Why kazoo and not an asyncio-native client: see docs/zookeeper-client.md (measured failover).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from kazoo.client import KazooClient, TransactionRequest
from kazoo.exceptions import (
    ConnectionClosedError,
    ConnectionLoss,
    KazooException,
    NodeExistsError,
    OperationTimeoutError,
    RolledBackError,
    SessionExpiredError,
)
from kazoo.protocol.states import KazooState, WatchedEvent, ZnodeStat
from kazoo.retry import KazooRetry
from kazoo.security import make_digest_acl

__all__ = [
    "KazooState",
    "TransactionFailed",
    "TransactionRequest",
    "WatchedEvent",
    "ZnodeStat",
    "ZooKeeper",
    "is_transient",
]

log = logging.getLogger(__name__)

T = TypeVar("T")
Watch = Callable[[WatchedEvent], None]
StateListener = Callable[[KazooState], None]

# Errors after which the same request may succeed once the session reconnects. A write that
# failed this way may nevertheless have been applied: callers re-read before they retry it.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    ConnectionLoss,
    OperationTimeoutError,
    ConnectionClosedError,
)


def is_transient(exc: BaseException) -> bool:
    return isinstance(exc, TRANSIENT_ERRORS)


class TransactionFailed(KazooException):
    """A multi was rolled back. ``error`` is the operation's own failure, ``index`` its place."""

    def __init__(self, index: int, error: BaseException) -> None:
        super().__init__(f"transaction op {index} failed: {type(error).__name__}")
        self.index = index
        self.error = error


class ZooKeeper:
    """One ZooKeeper session for the whole process, used from one asyncio loop."""

    def __init__(
        self,
        hosts: str,
        *,
        session_timeout: float = 10.0,
        digest: str | None = None,
    ) -> None:
        """``digest`` ("user:password") turns on ZooKeeper ACLs: the session authenticates with
        it, and every node this process creates is readable and writable by it alone."""
        # kazoo's default connection backoff grows to 60 s, which turns a one-second leader
        # failover into a minute of downtime: cap it near the one-second mark.
        retry = KazooRetry(max_tries=-1, delay=0.05, backoff=2, max_delay=1.0, max_jitter=0.1)
        acl = None
        if digest is not None:
            user, _, password = digest.partition(":")
            acl = [make_digest_acl(user, password, all=True)]
        self.client = KazooClient(
            hosts=hosts,
            timeout=session_timeout,
            connection_retry=retry,
            auth_data=[("digest", digest)] if digest is not None else None,
            default_acl=acl,
        )
        self.hosts = hosts
        self.session_timeout = session_timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connected = asyncio.Event()
        self._listeners: list[StateListener] = []
        self.state: KazooState = KazooState.LOST
        self.client.add_listener(self._on_state_thread)

    # -- session ------------------------------------------------------------------------------

    def start_background(self) -> None:
        """Begin connecting; kazoo keeps retrying in its thread until a session is made."""
        self._loop = asyncio.get_running_loop()
        self.client.start_async()

    async def start(self, timeout: float = 15.0) -> None:
        """Connect, waiting at most ``timeout`` seconds for the first session."""
        self.start_background()
        try:
            await self.wait_connected(timeout)
        except TimeoutError:
            await self.stop()
            raise TimeoutError(
                f"no ZooKeeper session with {self.hosts} within {timeout}s"
            ) from None

    async def stop(self) -> None:
        """Close the session: its ephemeral nodes (locks, registrations) vanish at once."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._stop_blocking)

    def _stop_blocking(self) -> None:
        try:
            self.client.stop()
        finally:
            self.client.close()

    @property
    def connected(self) -> bool:
        return self.state == KazooState.CONNECTED

    @property
    def session_id(self) -> int | None:
        client_id = self.client.client_id
        return client_id[0] if client_id else None

    def add_state_listener(self, listener: StateListener) -> None:
        """``listener`` runs on the event loop for every SUSPENDED / LOST / CONNECTED change."""
        self._listeners.append(listener)

    async def wait_connected(self, timeout: float | None = None) -> None:
        await asyncio.wait_for(self._connected.wait(), timeout)

    def _on_state_thread(self, state: KazooState) -> None:
        # Runs in kazoo's thread, which must never block: hand over to the loop.
        loop = self._loop
        if loop is not None and not loop.is_closed():
            # The loop may close between the check and the call.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._set_state, state)

    def _set_state(self, state: KazooState) -> None:
        if state == self.state:
            return
        self.state = state
        log.log(
            logging.INFO if state == KazooState.CONNECTED else logging.WARNING,
            "zookeeper session %s",
            state,
        )
        if state == KazooState.CONNECTED:
            self._connected.set()
        else:
            self._connected.clear()
        for listener in list(self._listeners):
            listener(state)

    # -- bridge -------------------------------------------------------------------------------

    def _bridge(self, async_result: Any) -> asyncio.Future[Any]:
        loop = self._require_loop()
        future: asyncio.Future[Any] = loop.create_future()

        def settle(result: Any) -> None:
            if future.done():
                return
            if result.successful():
                future.set_result(result.value)
            else:
                future.set_exception(result.exception)

        def on_done(result: Any) -> None:  # kazoo's thread
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(settle, result)

        async_result.rawlink(on_done)
        return future

    def _watch(self, watch: Watch | None) -> Callable[[WatchedEvent], None] | None:
        if watch is None:
            return None
        loop = self._require_loop()

        def fire(event: WatchedEvent) -> None:  # kazoo's thread
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(watch, event)

        return fire

    def _require_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise RuntimeError("ZooKeeper.start() has not been awaited")
        return self._loop

    # -- operations ---------------------------------------------------------------------------

    async def get(self, path: str, watch: Watch | None = None) -> tuple[bytes, ZnodeStat]:
        result: tuple[bytes, ZnodeStat] = await self._bridge(
            self.client.get_async(path, self._watch(watch))
        )
        return result

    async def get_children(self, path: str, watch: Watch | None = None) -> list[str]:
        children: list[str] = await self._bridge(
            self.client.get_children_async(path, self._watch(watch))
        )
        return children

    async def exists(self, path: str, watch: Watch | None = None) -> ZnodeStat | None:
        stat: ZnodeStat | None = await self._bridge(
            self.client.exists_async(path, self._watch(watch))
        )
        return stat

    async def create(
        self,
        path: str,
        value: bytes = b"",
        *,
        ephemeral: bool = False,
        sequence: bool = False,
        makepath: bool = False,
    ) -> str:
        created: str = await self._bridge(
            self.client.create_async(
                path, value, ephemeral=ephemeral, sequence=sequence, makepath=makepath
            )
        )
        return created

    async def set(self, path: str, value: bytes, version: int = -1) -> ZnodeStat:
        stat: ZnodeStat = await self._bridge(self.client.set_async(path, value, version))
        return stat

    async def delete(self, path: str, version: int = -1) -> None:
        await self._bridge(self.client.delete_async(path, version))

    async def ensure_path(self, path: str) -> None:
        """Create ``path`` and its parents if missing; concurrent creators are fine."""
        parts = [p for p in path.split("/") if p]
        current = ""
        for part in parts:
            current = f"{current}/{part}"
            if await self.exists(current) is None:
                with contextlib.suppress(NodeExistsError):
                    await self.create(current)

    async def sync(self, path: str) -> None:
        """Make this session's server catch up with the leader before the next read."""
        await self._bridge(self.client.sync_async(path))

    def transaction(self) -> TransactionRequest:
        return self.client.transaction()

    async def commit(self, transaction: TransactionRequest) -> list[Any]:
        """Commit a multi: every operation applies, or none does (raises TransactionFailed)."""
        results: list[Any] = await self._bridge(transaction.commit_async())
        for index, result in enumerate(results):
            if isinstance(result, Exception) and not isinstance(result, RolledBackError):
                raise TransactionFailed(index, result)
        return results

    async def retry(
        self,
        operation: Callable[[], Awaitable[T]],
        *,
        deadline: float | None = None,
    ) -> T:
        """Run an idempotent ``operation``, waiting out disconnections (for reads mostly).

        Retries after ConnectionLoss once the session is back; gives up after ``deadline``
        seconds (default: the session timeout) or when the session expired.
        """
        loop = asyncio.get_running_loop()
        limit = loop.time() + (deadline if deadline is not None else self.session_timeout)
        while True:
            try:
                return await operation()
            except SessionExpiredError:
                raise
            except TRANSIENT_ERRORS:
                remaining = limit - loop.time()
                if remaining <= 0:
                    raise
                # The SUSPENDED notice may reach the loop after the error does: a short pause
                # keeps this from spinning while the state still reads CONNECTED.
                await asyncio.sleep(0.05)
                try:
                    await self.wait_connected(remaining)
                except TimeoutError:
                    raise ConnectionLoss("ZooKeeper did not come back in time") from None
