"""A followed znode's read cut by its session's expiry: the follower waits for the new session,
whose CONNECTED notice reads again, instead of leaving an exception no task retrieves."""

from __future__ import annotations

import asyncio
from typing import cast

from kazoo.exceptions import ConnectionLoss, SessionExpiredError

from zootrain.following import NodeFollower
from zootrain.zk import ZooKeeper


class Failing(NodeFollower):
    following = "a test node"

    def __init__(self, error: Exception) -> None:
        super().__init__(cast(ZooKeeper, None))
        self.error = error
        self.reads = 0

    async def _read_once(self) -> None:
        self.reads += 1
        raise self.error


def reread_raises(error: Exception) -> list[BaseException | None]:
    """What the follower's reread tasks ended with when their read failed with ``error``:
    nothing awaits them, so an exception there is one no task retrieves."""

    async def scenario() -> list[BaseException | None]:
        follower = Failing(error)
        follower._spawn_reread()
        tasks = list(follower._rereads)
        await asyncio.wait(tasks)
        assert follower.reads == 1
        return [task.exception() for task in tasks]

    return asyncio.run(scenario())


def test_a_reread_cut_by_an_expired_session_leaves_nothing_unretrieved() -> None:
    assert reread_raises(SessionExpiredError()) == [None]


def test_a_reread_cut_by_a_lost_connection_leaves_nothing_unretrieved() -> None:
    assert reread_raises(ConnectionLoss()) == [None]
