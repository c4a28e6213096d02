"""Try-lock recipe: one EPHEMERAL znode, no waiting line.

kazoo's Lock recipe queues contenders as sequential nodes; a non-blocking acquire that fails or
times out can leave its contender behind and wedge the lock. A worker never wants to wait for a
shard someone else trains, so a lock here is a single ephemeral node: ``NodeExists`` means taken,
and the node vanishes with its owner's session, which is what frees a dead worker's shard.
"""

from __future__ import annotations

from collections.abc import Callable

from kazoo.exceptions import NodeExistsError, NoNodeError, SessionExpiredError

from zootrain.zk import TRANSIENT_ERRORS, WatchedEvent, ZooKeeper


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


async def held_by_us(zk: ZooKeeper, path: str) -> bool:
    stat = await zk.retry(lambda: zk.exists(path))
    return stat is not None and stat.ephemeralOwner == zk.session_id


async def release(zk: ZooKeeper, path: str) -> None:
    """Delete the lock if this session still holds it (never someone else's).

    A delete cut off by a connection drop is tried again once the session is back, however
    long that takes: a lock left behind would keep its shard from everyone for the rest of this
    worker's session. If the session is lost instead, the lock went with it.
    """
    session = zk.session_id
    while True:
        try:
            stat = await zk.retry(lambda: zk.exists(path), session=session)
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


async def watch_release(zk: ZooKeeper, path: str, on_free: Callable[[], None]) -> bool:
    """Call ``on_free()`` once the lock at ``path`` is deleted. False if it is already free."""

    def fire(event: WatchedEvent) -> None:
        on_free()

    stat = await zk.exists(path, watch=fire)
    return stat is not None
