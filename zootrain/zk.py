"""A small asyncio bridge over kazoo.

kazoo runs its own connection thread and completes every ``*_async`` call there. We turn those
completions, watch callbacks and session-state changes into asyncio futures and callbacks on the
event loop with ``call_soon_threadsafe``, so nothing here ever blocks the loop.

Why kazoo and not an asyncio-native client: see docs/zookeeper-client.md (measured failover).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import math
from collections.abc import Awaitable, Callable, Iterator
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

from zootrain.kazoo_handler import DirectResult, PollingHandler

__all__ = [
    "KazooState",
    "RequestDeadlineExceeded",
    "TransactionFailed",
    "TransactionRequest",
    "WatchedEvent",
    "WriteOutcomeUnknown",
    "ZnodeStat",
    "ZooKeeper",
    "is_transient",
    "request_deadline",
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


class RequestDeadlineExceeded(TimeoutError):
    """ZooKeeper did not answer within the deadline of the request being served.

    Nothing was written: either the call was never sent (the session was disconnected, and
    kazoo would have queued it until the connection came back), or it was a read.
    """


class WriteOutcomeUnknown(RequestDeadlineExceeded):
    """A write was sent (or is queued in kazoo) and not answered within the deadline.

    kazoo keeps a queued request and sends it when the connection returns, so the write may
    still be applied after the caller gave up: only a later read can tell.
    """


# The deadline (event-loop time) of the request this coroutine serves, if any. A context
# variable rather than a parameter: every ZooKeeper call made on a request's behalf, however
# deep in the core, is bounded without threading a timeout through each function.
_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "zootrain_zk_deadline", default=None
)


@contextlib.contextmanager
def request_deadline(seconds: float | None) -> Iterator[None]:
    """Bound every ZooKeeper call made inside (in this context) to ``seconds`` from now in all.

    ``None`` lifts an enclosing deadline (an event stream, once open, lives on its own).
    """
    limit = None if seconds is None else asyncio.get_running_loop().time() + seconds
    token = _DEADLINE.set(limit)
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def current_deadline() -> float | None:
    """The event-loop time by which the request being served must be answered, if any."""
    return _DEADLINE.get()


def _consume(future: asyncio.Future[Any]) -> None:
    # A call abandoned at its deadline completes later; nobody awaits it any more.
    if not future.cancelled():
        future.exception()


class TransactionFailed(KazooException):  # type: ignore[misc]  # kazoo ships no types
    """A multi was rolled back. ``error`` is the operation's own failure, ``index`` its place."""

    def __init__(self, index: int, error: BaseException) -> None:
        super().__init__(f"transaction op {index} failed: {type(error).__name__}")
        self.index = index
        self.error = error


def transaction_failure(results: list[Any]) -> TransactionFailed | None:
    """The failure of a multi from its results: the first operation that failed on its own
    (the ones before it read RolledBackError, the ones after RuntimeInconsistency)."""
    for index, result in enumerate(results):
        if isinstance(result, Exception) and not isinstance(result, RolledBackError):
            return TransactionFailed(index, result)
    return None


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
            # One poll a socket wait, and replies handed to the loop from kazoo's connection
            # thread (not through its completion thread): zootrain.kazoo_handler says why.
            handler=PollingHandler(),
        )
        self.hosts = hosts
        self.session_timeout = session_timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connected = asyncio.Event()
        self._disconnected = asyncio.Event()  # the complement, for waits on a drop
        self._disconnected.set()  # not connected until start() says so
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
        return bool(self.state == KazooState.CONNECTED)  # kazoo's states are untyped strings

    @property
    def session_id(self) -> int | None:
        client_id = self.client.client_id
        return client_id[0] if client_id else None

    def watch_counts(self) -> dict[str, int]:
        """Watch callbacks kazoo holds for this session, by kind ("data", "child").

        kazoo keeps a callback registered until its node changes (or the connection drops),
        so this is what a leak of watches grows: each one also holds a watch on the server.
        """
        counts = {}
        for kind, table in (
            ("data", self.client._data_watchers),
            ("child", self.client._child_watchers),
        ):
            for _ in range(10):  # kazoo's thread may change the table while we count
                try:
                    counts[kind] = sum(len(callbacks) for callbacks in list(table.values()))
                    break
                except RuntimeError:
                    continue
        return counts

    def add_state_listener(self, listener: StateListener) -> None:
        """``listener`` runs on the event loop for every SUSPENDED / LOST / CONNECTED change."""
        self._listeners.append(listener)

    async def wait_connected(self, timeout: float | None = None) -> None:
        """Wait for a connected session; TimeoutError after ``timeout`` seconds (or at the
        request's deadline, whichever comes first: RequestDeadlineExceeded)."""
        limit = _DEADLINE.get()
        if limit is not None:
            remaining = max(0.0, limit - self._require_loop().time())
            if timeout is None or remaining < timeout:
                try:
                    await asyncio.wait_for(self._connected.wait(), remaining)
                except TimeoutError:
                    raise RequestDeadlineExceeded(
                        f"no ZooKeeper session with {self.hosts} within the request's deadline"
                    ) from None
                return
        await asyncio.wait_for(self._connected.wait(), timeout)

    async def wait_session(self, session_id: int | None) -> bool:
        """Wait, however long it takes, until a session is connected; True if it is
        ``session_id`` (the session survived the disconnection), False if it is a new one
        (that one expired, and its ephemeral nodes, locks included, went with it)."""
        while True:
            await self._connected.wait()
            if self._live():
                return self.session_id == session_id
            if self.connected:
                # kazoo's thread already sees the connection down (a call just failed on it)
                # and its notice is on its way to the loop: wait for that, not for a timer.
                await self._disconnected.wait()
            else:
                await asyncio.sleep(0)  # a stale set event: the state changed again meanwhile

    async def _hear_of_drop(self, timeout: float) -> None:
        """kazoo's thread already sees the connection down (a call just failed on it) and its
        SUSPENDED notice is on its way to the loop: wait for that notice, not for a timer."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                self._disconnected.wait(), max(0.0, timeout) if math.isfinite(timeout) else None
            )

    def _live(self) -> bool:
        # kazoo's own view (set on its thread) leads ours (handed to the loop): checking both
        # keeps a call from being queued behind a disconnection the loop has not heard of yet.
        return self.connected and bool(self.client.connected)

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
            self._disconnected.clear()
            self._connected.set()
        else:
            self._connected.clear()
            self._disconnected.set()
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

        if isinstance(async_result, DirectResult):
            async_result.link_now(on_done)  # on_done only schedules: safe in kazoo's thread
        else:
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

    async def _call(
        self, start: Callable[[], Any], *, write: bool, sent: Callable[[], None] | None = None
    ) -> Any:
        """Send one request (``start`` makes kazoo's async call) and await its answer.

        Inside a request's deadline (``request_deadline``), a call is not sent while the
        session is disconnected (kazoo would queue it and send it whenever the connection came
        back, maybe long after the request was answered): it waits for the connection up to
        the deadline instead. An answer that does not come in time raises
        RequestDeadlineExceeded, or WriteOutcomeUnknown for a write, which may still apply later.
        """
        limit = _DEADLINE.get()
        if limit is None:
            future = self._bridge(start())
            if sent is not None:
                sent()
            return await future
        loop = self._require_loop()
        await self.until_live()
        future = self._bridge(start())
        if sent is not None:
            sent()
        done, _ = await asyncio.wait({future}, timeout=max(0.0, limit - loop.time()))
        if future in done:
            return future.result()
        future.add_done_callback(_consume)
        if write:
            raise WriteOutcomeUnknown(
                "ZooKeeper did not answer a write within the request's deadline; it may "
                "still be applied when the connection comes back"
            )
        raise RequestDeadlineExceeded("ZooKeeper did not answer within the request's deadline")

    async def until_live(self) -> None:
        """Wait until a call sent now goes straight out on a live connection (however long it
        takes, or until the request's deadline: RequestDeadlineExceeded)."""
        limit = _DEADLINE.get()
        while not self._live():
            await self.wait_connected()  # bounded by the deadline
            if not self._live():
                remaining = math.inf if limit is None else limit - self._require_loop().time()
                await self._hear_of_drop(remaining)

    def live(self) -> bool:
        """Whether a call sent now goes straight out (kazoo would otherwise queue it)."""
        return self._live()

    def send_commit(self, transaction: TransactionRequest) -> asyncio.Future[list[Any]]:
        """Send a multi now, with no deadline of its own: the caller bounds its wait for the
        answer (zootrain.group_commit). Its results still need ``transaction_failure``."""
        return self._bridge(transaction.commit_async())

    async def get(self, path: str, watch: Watch | None = None) -> tuple[bytes, ZnodeStat]:
        result: tuple[bytes, ZnodeStat] = await self._call(
            lambda: self.client.get_async(path, self._watch(watch)), write=False
        )
        return result

    async def get_children(self, path: str, watch: Watch | None = None) -> list[str]:
        children: list[str] = await self._call(
            lambda: self.client.get_children_async(path, self._watch(watch)), write=False
        )
        return children

    async def exists(self, path: str, watch: Watch | None = None) -> ZnodeStat | None:
        stat: ZnodeStat | None = await self._call(
            lambda: self.client.exists_async(path, self._watch(watch)), write=False
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
        created: str = await self._call(
            lambda: self.client.create_async(
                path, value, ephemeral=ephemeral, sequence=sequence, makepath=makepath
            ),
            write=True,
        )
        return created

    async def set(self, path: str, value: bytes, version: int = -1) -> ZnodeStat:
        stat: ZnodeStat = await self._call(
            lambda: self.client.set_async(path, value, version), write=True
        )
        return stat

    async def delete(self, path: str, version: int = -1) -> None:
        await self._call(lambda: self.client.delete_async(path, version), write=True)

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
        await self._call(lambda: self.client.sync_async(path), write=False)

    def transaction(self) -> TransactionRequest:
        return self.client.transaction()

    async def commit(
        self, transaction: TransactionRequest, sent: Callable[[], None] | None = None
    ) -> list[Any]:
        """Commit a multi: every operation applies, or none does (raises TransactionFailed).

        ``sent`` is called as soon as the multi is on its way: a request sent after that is
        answered after it, and sees its writes (ZooKeeper answers one session's requests in
        the order they were sent)."""
        results: list[Any] = await self._call(transaction.commit_async, write=True, sent=sent)
        failure = transaction_failure(results)
        if failure is not None:
            raise failure
        return results

    async def retry(
        self,
        operation: Callable[[], Awaitable[T]],
        *,
        deadline: float | None = None,
        session: int | None = None,
    ) -> T:
        """Run an idempotent ``operation``, waiting out disconnections (for reads mostly).

        Retries after ConnectionLoss once the session is back; gives up after ``deadline``
        seconds (default: the session timeout; never, with ``session``) or when the session
        expired. With ``session`` (a session id), it waits as long as that session lives and
        raises SessionExpiredError as soon as a different one connects: what a worker does
        with a claim, which is worth exactly as long as the session holding its lock.
        A request's deadline (``request_deadline``) bounds it too.
        """
        loop = asyncio.get_running_loop()
        if session is not None and deadline is None:
            limit = math.inf
        else:
            limit = loop.time() + (deadline if deadline is not None else self.session_timeout)
        while True:
            try:
                if session is not None and self.session_id != session and self.connected:
                    raise SessionExpiredError("the session that made the claim is gone")
                return await operation()
            except SessionExpiredError:
                raise
            except TRANSIENT_ERRORS:
                remaining = limit - loop.time()
                if remaining <= 0:
                    raise
                if self.connected and not self.client.connected:
                    await self._hear_of_drop(remaining)
                elif self.connected:
                    # Both views say connected: the error did not come with a drop (or the
                    # connection is already back). Back off a little rather than spin.
                    await asyncio.sleep(0.05)
                if session is not None and limit == math.inf:
                    if not await self.wait_session(session):
                        raise SessionExpiredError("the session expired meanwhile") from None
                    continue
                try:
                    await self.wait_connected(remaining)
                except RequestDeadlineExceeded:
                    raise
                except TimeoutError:
                    raise ConnectionLoss("ZooKeeper did not come back in time") from None
