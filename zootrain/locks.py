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
    """Take the lock at ``path`` if it is free. Never waits for another holder."""
    try:
        await zk.create(path, owner.encode(), ephemeral=True)
        return True
    except NodeExistsError:
        return await held_by_us(zk, path)
    except TRANSIENT_ERRORS:
        # The create may have been applied before the reply was lost: once reconnected, the
        # node's ephemeralOwner says whether the lock is ours.
        await zk.wait_connected(zk.session_timeout)
        return await held_by_us(zk, path)


async def held_by_us(zk: ZooKeeper, path: str) -> bool:
    stat = await zk.retry(lambda: zk.exists(path))
    return stat is not None and stat.ephemeralOwner == zk.session_id


async def release(zk: ZooKeeper, path: str) -> None:
    """Delete the lock if this session still holds it (never someone else's).

    A delete cut off by a connection drop is tried again once the session is back: a lock left
    behind would keep its shard from everyone for the rest of this worker's session.
    """
    while True:
        try:
            stat = await zk.retry(lambda: zk.exists(path))
            if stat is None or stat.ephemeralOwner != zk.session_id:
                return
            await zk.delete(path, stat.version)
            return
        except NoNodeError:
            return
        except SessionExpiredError:
            return  # the session, and with it the ephemeral lock, is gone
        except TRANSIENT_ERRORS:
            await zk.wait_connected(zk.session_timeout)


async def watch_release(zk: ZooKeeper, path: str, on_free: Callable[[], None]) -> bool:
    """Call ``on_free()`` once the lock at ``path`` is deleted. False if it is already free."""

    def fire(event: WatchedEvent) -> None:
        on_free()

    stat = await zk.exists(path, watch=fire)
    return stat is not None
