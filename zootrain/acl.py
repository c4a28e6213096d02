"""ZooKeeper digest ACLs: who may read and change zootrain's znodes.

With ``ZOOTRAIN_ZK_AUTH=user:password`` every process authenticates its session with those
credentials and creates every znode with a digest ACL naming them alone (zootrain.zk), so a
client without them (another application on a shared ensemble, a bare ``zkCli.sh``) can neither
read nor change nor delete anything of zootrain's. ZooKeeper checks a delete against the
*parent's* ACL and a read against the node's own, so both have to be closed, all the way down.

An ACL is fixed when a node is created: turning credentials on later leaves the nodes made
before with the open ACL they were made with. ``secure`` closes them: it sets the digest ACL on
the root and every node under it (nodes already closed are left alone, so running it again
changes nothing). It needs ADMIN permission on each node, which an open node grants anyone and a
closed one grants the credentials. A process still running without the credentials keeps making
open nodes: stop them all first.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from kazoo.client import KazooClient
from kazoo.exceptions import NoAuthError, NoNodeError
from kazoo.security import ACL, make_digest_acl

log = logging.getLogger(__name__)

BATCH = 256  # requests in flight at once: a tree of 100,000 nodes is secured in seconds

OPEN_WARNING = (
    "ZOOKEEPER ACLS ARE OFF (ZOOTRAIN_ZK_AUTH is not set): every client that can reach "
    "ZooKeeper can read, change and delete every job, model record and token entry of this "
    "installation. Set ZOOTRAIN_ZK_AUTH=user:password on every process (make up does), then "
    "run `zootrain zk secure` once to close the nodes made before."
)


def digest_acl(credentials: str) -> ACL:
    """All permissions for ``user:password``, for no one else."""
    user, _, password = credentials.partition(":")
    return make_digest_acl(user, password, all=True)


def warn_if_open(credentials: str | None, logger: logging.Logger) -> None:
    """The loud start-up warning of a process that runs without ZooKeeper credentials."""
    if credentials is None:
        logger.warning(OPEN_WARNING)


@dataclass(frozen=True)
class Secured:
    changed: int  # nodes whose ACL was set
    already: int  # nodes that had the digest ACL already
    refused: list[str]  # nodes these credentials may not administer (another owner's)


def secure(client: KazooClient, root: str, credentials: str) -> Secured:
    """Set the digest ACL of ``credentials`` on ``root`` and every node under it."""
    wanted = [digest_acl(credentials)]
    changed = already = 0
    refused: list[str] = []
    level = [root]
    while level:
        below: list[str] = []
        for start in range(0, len(level), BATCH):
            batch = level[start : start + BATCH]
            # Children first: a node whose ACL is closed by another owner can not be listed.
            listings = [client.get_children_async(path) for path in batch]
            acls = [client.get_acls_async(path) for path in batch]
            updates = []
            for path, listing, current in zip(batch, listings, acls, strict=True):
                try:
                    below.extend(f"{path.rstrip('/')}/{child}" for child in listing.get())
                    found, _ = current.get()
                except NoNodeError:
                    continue  # deleted while we walked (an ephemeral, a finished job)
                except NoAuthError:
                    refused.append(path)
                    continue
                if list(found) == wanted:
                    already += 1
                else:
                    updates.append((path, client.set_acls_async(path, wanted)))
            for path, update in updates:
                try:
                    update.get()
                    changed += 1
                except NoNodeError:
                    continue
                except NoAuthError:
                    refused.append(path)
        level = below
    return Secured(changed, already, refused)
