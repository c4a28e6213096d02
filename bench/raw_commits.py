"""The baseline of the submit benchmarks: the very multi a submit commits (job record, shards
node, shard records, sequential queue entry), issued by kazoo itself, one at a time or
pipelined.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kazoo.client import KazooClient, TransactionRequest
from kazoo.exceptions import NodeExistsError

from zootrain.paths import Paths
from zootrain.records import JobRecord, JobSpec, ShardRecord, new_job_id, utcnow


class RawJobs:
    """Builds submit's multi (job record, shards node, shard records, sequential queue entry)
    with the very bytes the job service writes, for jobs of ``spec``."""

    PLACEHOLDER = "f" * 20

    def __init__(
        self,
        paths: Paths,
        spec: dict[str, Any],
        *,
        shard: dict[str, Any] | None = None,
    ) -> None:
        self.paths = paths
        parsed = JobSpec.model_validate(spec)
        now = utcnow()
        record = JobRecord(id=self.PLACEHOLDER, spec=parsed, created_at=now, updated_at=now)
        self.job_bytes = record.dump()
        self.shards = parsed.shards
        self.priority = parsed.priority
        self.shard_bytes = [
            ShardRecord(index=i, **(shard or {})).dump() for i in range(parsed.shards)
        ]

    def transaction(self, client: KazooClient) -> tuple[str, TransactionRequest]:
        job_id = new_job_id()
        tx = client.transaction()
        tx.create(
            self.paths.job(job_id),
            self.job_bytes.replace(self.PLACEHOLDER.encode(), job_id.encode()),
        )
        tx.create(self.paths.shards(job_id))
        for index, data in enumerate(self.shard_bytes):
            tx.create(self.paths.shard(job_id, index), data)
        tx.create(self.paths.queue_prefix(job_id, self.priority), job_id.encode(), sequence=True)
        return job_id, tx


def ensure_bases(client: KazooClient, paths: Paths) -> None:
    for path in (paths.queue, paths.jobs):
        with contextlib.suppress(NodeExistsError):
            client.ensure_path(path)


@dataclass
class Pipelined:
    done: int
    failed: int
    elapsed: float
    latencies: list[float]

    @property
    def rate(self) -> float:
        return self.done / self.elapsed if self.elapsed > 0 else math.nan


def pipelined_commits(
    client: KazooClient,
    jobs: RawJobs,
    *,
    duration: float | None = None,
    count: int | None = None,
    window: int = 64,
) -> Pipelined:
    """Commit submit's multi as fast as kazoo goes, ``window`` commits in flight at once."""
    slots = threading.Semaphore(window)
    lock = threading.Lock()
    latencies: list[float] = []
    failures = 0

    def settle(started: float) -> Callable[[Any], None]:
        def done(result: Any) -> None:
            nonlocal failures
            elapsed = time.perf_counter() - started
            ok = result.successful() and not any(
                isinstance(r, Exception) for r in (result.value or [])
            )
            with lock:
                if ok:
                    latencies.append(elapsed)
                else:
                    failures += 1
            slots.release()

        return done

    started = time.perf_counter()
    stop = started + duration if duration is not None else math.inf
    issued = 0
    while time.perf_counter() < stop and (count is None or issued < count):
        slots.acquire()
        _, tx = jobs.transaction(client)
        tx.commit_async().rawlink(settle(time.perf_counter()))
        issued += 1
    for _ in range(window):
        slots.acquire()
    elapsed = time.perf_counter() - started
    return Pipelined(len(latencies), failures, elapsed, latencies)
