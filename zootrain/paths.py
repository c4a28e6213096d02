"""The znode layout, in one place (see docs/design.md for why each node is shaped as it is)."""

from __future__ import annotations

import re
from dataclasses import dataclass

SHARD_WIDTH = 4  # shard nodes are zero-padded so that children sort in index order
SEQUENCE_WIDTH = 10  # ZooKeeper's own width for sequential suffixes
IDEMPOTENCY_BUCKETS = tuple(f"{b:02x}" for b in range(256))

_QUEUE_ENTRY = re.compile(r"^(?P<prio>\d)-(?P<job>[0-9a-z]+)-(?P<seq>\d{10})$")
_VERSION = re.compile(r"^v-(?P<seq>\d{10})$")


@dataclass(frozen=True)
class Paths:
    root: str = "/zootrain"

    @property
    def queue(self) -> str:
        return f"{self.root}/queue"

    @property
    def jobs(self) -> str:
        return f"{self.root}/jobs"

    @property
    def locks(self) -> str:
        return f"{self.root}/locks"

    @property
    def workers(self) -> str:
        return f"{self.root}/workers"

    @property
    def models(self) -> str:
        return f"{self.root}/models"

    @property
    def idempotency(self) -> str:
        return f"{self.root}/idempotency"

    @property
    def election(self) -> str:
        return f"{self.root}/election"

    @property
    def datasets(self) -> str:
        return f"{self.root}/datasets"

    @property
    def tokens(self) -> str:
        """API token entries managed live (zootrain.tokenstore); made by the first edit."""
        return f"{self.root}/tokens"

    @property
    def config(self) -> str:
        """The live configuration document (zootrain.liveconfig); made empty at layout."""
        return f"{self.root}/config"

    @property
    def config_history(self) -> str:
        return f"{self.config}/history"

    @property
    def drains(self) -> str:
        """One child per worker asked to drain (POST /v1/workers/{id}/drain)."""
        return f"{self.root}/drains"

    @property
    def bases(self) -> tuple[str, ...]:
        """The nodes that must exist before anything else is written."""
        return (
            self.queue,
            self.jobs,
            self.locks,
            self.workers,
            self.models,
            self.idempotency,
            self.election,
            self.datasets,
            self.config,
            self.config_history,
            self.drains,
        )

    def job(self, job_id: str) -> str:
        return f"{self.jobs}/{job_id}"

    def shards(self, job_id: str) -> str:
        return f"{self.jobs}/{job_id}/shards"

    def shard(self, job_id: str, index: int) -> str:
        return f"{self.shards(job_id)}/{index:0{SHARD_WIDTH}d}"

    def queue_prefix(self, job_id: str, priority: int) -> str:
        return f"{self.queue}/{queue_rank(priority)}-{job_id}-"

    def queue_entry(self, name: str) -> str:
        return f"{self.queue}/{name}"

    # Locks are flat children of /locks: a lock exists only while it is held, so /locks never
    # needs per-job parents created or cleaned up, and its size is bounded by live workers.
    def shard_lock(self, job_id: str, index: int) -> str:
        return f"{self.locks}/{job_id}.{index:0{SHARD_WIDTH}d}"

    def merge_lock(self, job_id: str) -> str:
        return f"{self.locks}/{job_id}.merge"

    def dataset(self, dataset_id: str) -> str:
        return f"{self.datasets}/{dataset_id}"

    def worker(self, worker_id: str) -> str:
        return f"{self.workers}/{worker_id}"

    def drain(self, worker_id: str) -> str:
        return f"{self.drains}/{worker_id}"

    def model(self, name: str) -> str:
        return f"{self.models}/{name}"

    def version_prefix(self, name: str) -> str:
        return f"{self.model(name)}/v-"

    def version(self, name: str, version: int) -> str:
        return f"{self.model(name)}/{version_node(version)}"

    # Keys are spread over 256 buckets by their digest's first byte: a day of keyed submits must
    # not grow one node's children towards ZooKeeper's 1 MB getChildren reply.
    def idempotency_bucket(self, digest: str) -> str:
        return f"{self.idempotency}/{digest[:2]}"

    def idempotency_key(self, digest: str) -> str:
        return f"{self.idempotency_bucket(digest)}/{digest}"


def queue_rank(priority: int) -> int:
    """Higher priority sorts first: children are ordered by (rank, sequence)."""
    return 9 - priority


@dataclass(frozen=True, order=True)
class QueueEntry:
    rank: int
    sequence: int
    job_id: str
    name: str


def parse_queue_entry(name: str) -> QueueEntry | None:
    match = _QUEUE_ENTRY.match(name)
    if match is None:
        return None
    return QueueEntry(int(match["prio"]), int(match["seq"]), match["job"], name)


def sorted_queue(names: list[str]) -> list[QueueEntry]:
    entries = [e for e in map(parse_queue_entry, names) if e is not None]
    return sorted(entries)


# Sequential suffixes start at 0; versions are numbered from 1 as users expect.
def version_node(version: int) -> str:
    return f"v-{version - 1:0{SEQUENCE_WIDTH}d}"


def parse_version_node(name: str) -> int | None:
    match = _VERSION.match(name)
    return int(match["seq"]) + 1 if match else None
