"""API tokens kept in ZooKeeper, so that adding or revoking one needs no restart.

One znode, ``<root>/tokens``, holds a JSON object: ``entries`` (``name:sha256:scopes[:expires]``
lines, the format of ZOOTRAIN_TOKENS: hashes only, never a token) and ``revoked`` (token names
refused whichever source defines them, ZOOTRAIN_TOKENS and ZOOTRAIN_TOKENS_FILE included). It
sits under the installation's ACL like every other znode: only the credentials may read or
change it.

``zootrain token add|revoke|list`` (admin, offline) edit it directly in ZooKeeper with
compare-and-set writes (two admins at once cannot lose each other's change). Every job-service
process keeps a data watch on it (``TokenWatch``): a change reaches each of them in one round
trip, so a revoked token is refused everywhere within milliseconds of the write.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from kazoo.client import KazooClient
from kazoo.exceptions import BadVersionError, NodeExistsError, NoNodeError

from zootrain.auth import TokenConfigError, TokenTable
from zootrain.following import NodeFollower

log = logging.getLogger(__name__)

MAX_TOKENS_BYTES = 900_000  # under ZooKeeper's 1 MB znode limit: about 8,000 entries


@dataclass(frozen=True)
class StoredTokens:
    entries: tuple[str, ...] = ()
    revoked: tuple[str, ...] = ()

    @classmethod
    def load(cls, data: bytes) -> StoredTokens:
        """Parse the znode (empty: nothing stored); TokenConfigError names what is wrong."""
        if not data:
            return cls()
        try:
            raw: Any = json.loads(data)
            entries = tuple(str(e) for e in raw.get("entries", []))
            revoked = tuple(str(r) for r in raw.get("revoked", []))
        except (ValueError, AttributeError, TypeError):
            raise TokenConfigError("the token list in ZooKeeper is not valid JSON") from None
        stored = cls(entries, revoked)
        stored.table()  # every entry must parse, or none is used
        return stored

    def dump(self) -> bytes:
        data = json.dumps({"entries": list(self.entries), "revoked": list(self.revoked)}).encode()
        if len(data) > MAX_TOKENS_BYTES:
            raise TokenConfigError(f"the token list would take {len(data):,} bytes in ZooKeeper")
        return data

    def table(self) -> TokenTable:
        return TokenTable.parse("\n".join(self.entries), origin="the token list in ZooKeeper")

    def names(self) -> list[str]:
        return [entry.split(":", 1)[0] for entry in self.entries]

    def with_entry(self, entry: str) -> StoredTokens:
        """``entry`` added (replacing one of the same name), its name no longer revoked."""
        name = entry.split(":", 1)[0]
        entries = (*tuple(e for e in self.entries if e.split(":", 1)[0] != name), entry)
        return StoredTokens(entries, tuple(r for r in self.revoked if r != name))

    def without(self, name: str) -> StoredTokens:
        """``name``'s entry removed and the name revoked (from every source)."""
        entries = tuple(e for e in self.entries if e.split(":", 1)[0] != name)
        revoked = self.revoked if name in self.revoked else (*self.revoked, name)
        return StoredTokens(entries, revoked)


# -- the admin's side: read and edit, straight against ZooKeeper (the CLI) ---------------------


def read(client: KazooClient, path: str) -> StoredTokens:
    try:
        data, _ = client.get(path)
    except NoNodeError:
        return StoredTokens()
    return StoredTokens.load(data)


def update(
    client: KazooClient, path: str, change: Callable[[StoredTokens], StoredTokens]
) -> StoredTokens:
    """Apply ``change`` with a compare-and-set write, again on a concurrent edit."""
    while True:
        try:
            data, stat = client.get(path)
        except NoNodeError:
            updated = change(StoredTokens())
            try:
                client.create(path, updated.dump(), makepath=True)
                return updated
            except NodeExistsError:
                continue  # another admin created it first: edit theirs
        updated = change(StoredTokens.load(data))
        try:
            client.set(path, updated.dump(), version=stat.version)
            return updated
        except (BadVersionError, NoNodeError):
            continue


# -- the service's side: a watch that keeps the table current ----------------------------------


@dataclass
class TokenWatch(NodeFollower):
    """Keeps ``on_change`` fed with the stored tokens, from a watch on the znode."""

    following: ClassVar[str] = "the token list"
    path: str
    on_change: Callable[[StoredTokens], None]
    _version: int = -2  # the znode's version last applied (-1: absent)

    async def _read_once(self) -> None:
        # exists() sets a watch whether or not the node is there, so its creation is seen too.
        present = await self.zk.retry(lambda: self.zk.exists(self.path, watch=self._changed))
        if present is None:
            self._apply(-1, StoredTokens())
            return
        try:
            data, stat = await self.zk.retry(lambda: self.zk.get(self.path))
        except NoNodeError:
            return  # deleted between the two reads: its watch fired, and will read again
        if stat.version == self._version:
            return
        try:
            stored = StoredTokens.load(data)
        except TokenConfigError as exc:
            # Keep the last good list: a broken edit must not let revoked tokens back in.
            log.error("ignoring the token list in ZooKeeper (version %d): %s", stat.version, exc)
            self.loaded.set()
            return
        self._apply(stat.version, stored)

    def _apply(self, version: int, stored: StoredTokens) -> None:
        if version != self._version:
            self._version = version
            self.on_change(stored)
            log.info(
                "token list from ZooKeeper: %d entries, %d revoked names",
                len(stored.entries),
                len(stored.revoked),
            )
        self.loaded.set()
