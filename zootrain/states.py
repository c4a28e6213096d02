"""The states a job and each of its tasks move through: plain enums, so that what only names a
state (the CLI's ``--state`` option, the metrics) need not import the records and pydantic."""

from __future__ import annotations

from enum import StrEnum


class JobState(StrEnum):
    """Where a job is in its life: queued, running, merging, then one of the three terminal
    states; failed and cancelled can end it before it reaches merging."""

    queued = "queued"
    """Submitted, with a queue entry; no worker has claimed any of its tasks yet."""
    running = "running"
    """A worker has claimed at least one task; its tasks are being trained."""
    merging = "merging"
    """Every task is done; a worker is merging the shard models and publishing the version."""
    succeeded = "succeeded"
    """Terminal: the merged model is published as a version of ``model_name``."""
    failed = "failed"
    """Terminal: a task, or the merge, failed on every attempt it was allowed."""
    cancelled = "cancelled"
    """Terminal: cancelled (DELETE /v1/jobs/{id}) before it finished."""

    @property
    def terminal(self) -> bool:
        return self in (JobState.succeeded, JobState.failed, JobState.cancelled)


class ShardState(StrEnum):
    """Where one task of a job (a data shard, the baseline, or a search candidate) is."""

    pending = "pending"
    """Waiting to be claimed: never tried, or retried once its backoff (not_before) passes."""
    running = "running"
    """Claimed by a live worker (``worker``), whose training child is fitting it."""
    done = "done"
    """Trained: its model file is in the store (``artifact``, ``sha256``), its metrics kept."""
    failed = "failed"
    """Failed on every attempt the job allows (max_attempts); the job fails with it."""
    cancelled = "cancelled"
    """Its job was cancelled before it finished."""
