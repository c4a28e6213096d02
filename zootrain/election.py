"""Leader election recipe: ephemeral sequential candidates, each watching only its predecessor.

The candidate with the lowest sequence number leads. Every other candidate watches the one just
before it (not the leader), so a leader's death wakes exactly one process instead of the whole
herd. Candidates are EPHEMERAL: a dead process withdraws by itself when its session expires.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid

from kazoo.exceptions import NoNodeError, SessionExpiredError

from zootrain.zk import TRANSIENT_ERRORS, KazooState, WatchedEvent, ZooKeeper

log = logging.getLogger(__name__)


def _sequence(name: str) -> int:
    return int(name[-10:])


class Election:
    def __init__(self, zk: ZooKeeper, path: str, identifier: str) -> None:
        self.zk = zk
        self.path = path
        self.identifier = identifier
        # A create whose reply is lost may still have made our node; the unique prefix lets us
        # find it again instead of leaving an orphan candidate ahead of ourselves.
        self._prefix = f"{uuid.uuid4().hex}-n_"
        self._node: str | None = None
        self._create_tried = False  # a create was sent in this session: look before sending one
        self._leading = False
        self._changed = asyncio.Event()
        zk.add_state_listener(self._on_session)

    @property
    def is_leader(self) -> bool:
        return self._leading and self.zk.connected

    def _on_session(self, state: KazooState) -> None:
        if state == KazooState.LOST:
            # Our candidate died with the session; so did our leadership. Stand again.
            self._node = None
            self._create_tried = False
            self._leading = False
        self._changed.set()

    async def lead(self) -> None:
        """Return once this process leads; it leads until its session is lost or it resigns."""
        while True:
            self._changed.clear()
            try:
                if await self._check():
                    self._leading = True
                    return
            except TRANSIENT_ERRORS:
                pass  # the CONNECTED notice sets _changed and we look again
            except SessionExpiredError:
                # The candidate went with the session; the new one stands.
                self._node = None
                self._create_tried = False
            await self._changed.wait()

    async def still_leads(self) -> bool:
        """Whether this process leads right now: its candidate exists and belongs to its
        current session. What a leader checks before each destructive step: a session that
        expired (a long pause, a partition) took the candidate, and the leadership, with it,
        and another process may be leading already."""
        if not self._leading or self._node is None:
            return False
        stat = await self.zk.exists(f"{self.path}/{self._node}")
        if stat is None or stat.ephemeralOwner != self.zk.session_id:
            self._leading = False
            self._node = None
            self._changed.set()
            return False
        return True

    async def wait_lost(self) -> None:
        """Return when leadership is lost (session expired)."""
        while self._leading:
            self._changed.clear()
            await self._changed.wait()

    async def _check(self) -> bool:
        if self._node is None:
            self._node = await self._find_own() if self._create_tried else None
        if self._node is None:
            self._node = await self._stand()
        candidates = sorted(await self.zk.get_children(self.path), key=_sequence)
        if self._node not in candidates:
            self._node = None  # gone with an expired session: stand again next pass
            self._changed.set()
            return False
        position = candidates.index(self._node)
        if position == 0:
            return True
        predecessor = f"{self.path}/{candidates[position - 1]}"

        def gone(event: WatchedEvent) -> None:
            self._changed.set()

        if await self.zk.exists(predecessor, watch=gone) is None:
            self._changed.set()  # it left between the listing and the watch: look again
        return False

    async def _stand(self) -> str:
        # Marked before sending: a create whose reply is lost (ConnectionLoss) may have been
        # applied, and every later pass must look for that node before creating another.
        self._create_tried = True
        created = await self.zk.create(
            f"{self.path}/{self._prefix}",
            self.identifier.encode(),
            ephemeral=True,
            sequence=True,
        )
        return created.rsplit("/", 1)[1]

    async def _find_own(self) -> str | None:
        """Our candidate from an earlier create in this session, if it was applied.

        The ``sync`` first: after a reconnect, our server may be a follower that has not yet
        applied the create the old one accepted, and a listing without it would make us create
        a second candidate, with the first one (an orphan of our own session, alive as long as
        we are) ahead of it: nobody behind it would ever lead. As Curator's protected mode and
        kazoo's Lock recipe do, the unique prefix finds it; should two exist, the later ones
        are withdrawn.
        """
        await self.zk.sync(self.path)
        mine = []
        for name in await self.zk.get_children(self.path):
            if not name.startswith(self._prefix):
                continue
            stat = await self.zk.exists(f"{self.path}/{name}")
            if stat is not None and stat.ephemeralOwner == self.zk.session_id:
                mine.append(name)
        mine.sort(key=_sequence)
        for extra in mine[1:]:
            with contextlib.suppress(NoNodeError):
                await self.zk.delete(f"{self.path}/{extra}")
        return mine[0] if mine else None

    async def resign(self) -> None:
        self._leading = False
        self._create_tried = False
        if self._node is not None:
            with contextlib.suppress(NoNodeError, *TRANSIENT_ERRORS):
                await self.zk.delete(f"{self.path}/{self._node}")
            self._node = None
