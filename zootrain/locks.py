"""Try-lock recipe: one EPHEMERAL znode, no waiting line.

kazoo's Lock recipe queues contenders as sequential nodes; a non-blocking acquire that fails or
times out can leave its contender behind and wedge the lock. A worker never wants to wait for a
shard someone else trains, so a lock here is a single ephemeral node: ``NodeExists`` means taken,
and the node vanishes with its owner's session, which is what frees a dead worker's shard.

A lock can also be taken and released inside a multi, beside the record write it guards
(``take_in``, ``release_in``): one round trip fewer each way, and no moment where the lock and
the record disagree (a claim that holds the lock without its record, or an outcome written
while the lock is still held).
"""

from __future__ import annotations

from collections.abc import Callable

from kazoo.exceptions import NodeExistsError, NoNodeError, SessionExpiredError

from zootrain.zk import TRANSIENT_ERRORS, TransactionRequest, WatchedEvent, ZnodeStat, ZooKeeper


async def try_acquire(zk: ZooKeeper, path: str, owner: str) -> bool:
    """Take the lock at ``path`` if it is free. Never waits for another holder.

    A lock this session holds already counts as taken by us: callers that run several claims
    at once must keep their own record of which lock each one holds.
    """
    session = zk.session_id
    try:
        await zk.create(path, owner.encode(), ephemeral=True)
        return True
    except NodeExistsError:
        return await held_by_us(zk, path)
    except TRANSIENT_ERRORS:
        # The create may have been applied before the reply was lost: once reconnected, the
        # node's ephemeralOwner says whether the lock is ours. If the session did not survive,
        # neither did a lock it made.
        if not await zk.wait_session(session):
            return False
        return await held_by_us(zk, path)


def take_in(tx: TransactionRequest, path: str, owner: str) -> None:
    """Take the lock at ``path`` as part of the multi ``tx``: the multi fails with
    NodeExists at this operation if anyone (this session included) holds it."""
    tx.create(path, owner.encode(), ephemeral=True)


def may_release_in(zk: ZooKeeper, session: int | None) -> bool:
    """Whether a multi sent now may carry the release of a lock ``session`` took.

    Only from that very session: while it lives, its ephemeral lock is there and nobody else
    can hold the path, so the delete can only remove our own node. From a newer session the
    lock went with the old one, and a node at the path now is another worker's.
    """
    return session is not None and zk.session_id == session


def release_in(tx: TransactionRequest, path: str) -> None:
    """Release the lock at ``path`` as part of the multi ``tx`` (see ``may_release_in``).

    The delete's watchers (workers waiting for the lock) fire when the multi commits, as for a
    delete of its own; if the multi fails, the lock is still held and must be released apart.
    """
    tx.delete(path)


async def held_by_us(zk: ZooKeeper, path: str) -> bool:
    stat = await _seen(zk, path, None)
    return stat is not None and stat.ephemeralOwner == zk.session_id


async def _seen(zk: ZooKeeper, path: str, session: int | None) -> ZnodeStat | None:
    """The lock's stat, as the leader has it when the node is absent here. After a reply lost
    to a connection drop, the session may have moved to a server that has not yet applied the
    write that took the lock: the session's last-seen zxid, which keeps it off servers behind
    it, never covered a reply it did not get. Read there alone, our own lock would look free,
    and stay held by our session with nobody to release it (a failover test found a job's
    shards held so for good). A node present here is authoritative: no one replaces our lock
    while our session lives. Curator's protected mode syncs before such a look for the same
    reason."""
    stat: ZnodeStat | None = await zk.retry(lambda: zk.exists(path), session=session)
    if stat is not None:
        return stat
    await zk.retry(lambda: zk.sync(path), session=session)
    found: ZnodeStat | None = await zk.retry(lambda: zk.exists(path), session=session)
    return found


async def release(zk: ZooKeeper, path: str) -> None:
    """Delete the lock if this session still holds it (never someone else's).

    A delete cut off by a connection drop is tried again once the session is back, however
    long that takes: a lock left behind would keep its shard from everyone for the rest of this
    worker's session. If the session is lost instead, the lock went with it.
    """
    session = zk.session_id
    while True:
        try:
            stat = await _seen(zk, path, session)
            if stat is None or stat.ephemeralOwner != session:
                return
            await zk.delete(path, stat.version)
            return
        except NoNodeError:
            return
        except SessionExpiredError:
            return  # the session, and with it the ephemeral lock, is gone
        except TRANSIENT_ERRORS:
            if not await zk.wait_session(session):
                return


async def watch_release(zk: ZooKeeper, path: str, on_free: Callable[[], None]) -> ZnodeStat | None:
    """Call ``on_free()`` once the lock at ``path`` is deleted. The lock's stat (its owner:
    ``ephemeralOwner``), or None if it is already free."""

    def fire(event: WatchedEvent) -> None:
        on_free()

    stat: ZnodeStat | None = await zk.exists(path, watch=fire)
    return stat
