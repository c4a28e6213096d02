"""Merging a job and publishing its model version: the task a merge claim runs.

The child (workers/train_child.py:merge_job) merges the shards' models and evaluates the result;
this process then publishes the version with one multi that checks the job record's version
(what the merge claim wrote): a merger whose claim another worker took over (after its session
expired) can never publish, and one whose claim nobody took over publishes from its new session.
A failed merge is retried after a backoff while the job has attempts left, like a shard.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kazoo.exceptions import BadVersionError, NoNodeError, SessionExpiredError

from workers import processes, worker_metrics
from workers.claims import Claim, dataset_source
from zootrain import locks
from zootrain.errors import ArtifactError, Gone, NotFound
from zootrain.inputs import input_schema
from zootrain.queue import backoff_delay
from zootrain.records import (
    JobRecord,
    JobState,
    ModelRecord,
    Promotion,
    ShardMetrics,
    ShardRecord,
    ShardState,
    TaskAttempt,
    VersionRecord,
    utcnow,
)
from zootrain.zk import TRANSIENT_ERRORS

if TYPE_CHECKING:
    from workers.worker import Worker

log = logging.getLogger("zootrain.worker")
# What the merging child runs, by name: importing workers.train_child here would bring
# scikit-learn into this process; the forkserver has it imported already.
MERGE_JOB = "workers.train_child:merge_job"


def merge_payload(
    worker: Worker, job: JobRecord, shards: list[ShardRecord], holder: dict[str, Any] | None
) -> dict[str, Any]:
    """What the merging child is given: the spec, the shards' files and scores, and the alias
    holder a gated publish competes with."""
    return {
        "spec": job.spec.model_dump(mode="json"),
        "artifacts": worker.store.url,
        "dataset_source": dataset_source(job),
        "holder": holder,
        "shards": [
            {
                "role": s.role,
                "artifact": s.artifact,
                "sha256": s.sha256,
                "rows": s.rows,
                "metrics": s.metrics,
                "class_metrics": None
                if s.class_metrics is None
                else [m.model_dump(mode="json") for m in s.class_metrics],
            }
            for s in shards
        ],
    }


def start_merge(
    worker: Worker,
    job: JobRecord,
    shards: list[ShardRecord],
    holder: dict[str, Any] | None = None,
) -> asyncio.Future[dict[str, Any]]:
    """The merging child, started: its result (or ChildFailed / ChildDied) when it answers.
    Cancelling the future kills the child."""
    return asyncio.ensure_future(
        processes.run_in_child(
            MERGE_JOB,
            merge_payload(worker, job, shards, holder),
            time_limit=worker.time_limit(job),
            memory_limit=worker.memory_limit,
            # The child that trained this worker's last shard of the job: it holds the job's
            # rows and that shard's model already.
            affinity=job.id,
        )
    )


def start_merge_early(
    worker: Worker, job: JobRecord, shards: list[ShardRecord]
) -> asyncio.Future[dict[str, Any]] | None:
    """The merging child started before the merge claim's multi is answered, by the worker
    that settled a job's last shard: the child's work overlaps the claim's round trip. Its
    payload needs nothing the claim writes. A gated publish's child also needs the alias
    holder, read first: such a job's child starts after its claim, as any other's would.
    A claim that fails cancels the child (workers/worker.py); its file, if it wrote one, is
    never named by a record, and the collector takes it (zootrain/store_gc.py)."""
    rule = job.spec.publish
    if rule is not None and rule.if_better:
        return None
    return start_merge(worker, job, shards)


async def merge_and_publish(worker: Worker, claim: Claim) -> None:
    """Merge a job's shard models in a child process and publish the model version, fenced by
    the job record's version that the merge claim wrote."""
    job, stat = claim.job, claim.stat
    assert stat is not None
    # Read `done` by the claim (a done shard never changes): not read again.
    shards = claim.shards or [
        s
        for s, _ in await worker.zk.retry(
            lambda: worker.queue.read_shards(job.id, job.spec.tasks), session=claim.session
        )
    ]
    early, claim.early = claim.early, None
    if any(s.state != ShardState.done for s in shards):
        if early is not None:
            early.cancel()
        return
    # In the background: the training need not wait for ZooKeeper (an outage), and a job
    # found finished already stops the child moments after it started.
    worker.side_task(worker.watch_job(claim))
    started = time.perf_counter()
    # The model's versions, listed while the child merges: the publishing multi numbers the
    # new version from them without a round trip of its own (a number taken meanwhile fails
    # on its node and is numbered again from a fresh listing: Registry.publish).
    listing = asyncio.ensure_future(_versions(worker, job.spec.model_name))
    try:
        if early is None:
            holder = await alias_holder(worker, job)
            early = start_merge(worker, job, shards, holder)
        result = await early
    except (processes.ChildFailed, processes.ChildDied) as exc:
        listing.cancel()
        worker.answered(claim)
        worker_metrics.MERGES.labels(outcome="failed").inc()
        await merge_failed(worker, claim, str(exc))
        return
    except BaseException:
        listing.cancel()
        raise
    worker.answered(claim)
    log.info("merged %s; publishing", job.id)
    version = version_record(job, shards, result)
    if version.class_report is not None and version.class_report.note is None:
        # The job's record says which classes the merge lost, beside the version it names.
        claim.job = job = job.model_copy(update={"recall_drops": version.class_report.recall_drops})
    try:
        published = await publish(
            worker, claim, version, promotion_rule(job, result), await listing
        )
    except (BadVersionError, NoNodeError, SessionExpiredError):
        log.warning("job %s changed while merging; nothing published", job.id)
        return
    except ArtifactError as exc:
        await merge_failed(worker, claim, str(exc))
        return
    assert published.model is not None
    worker_metrics.MERGES.labels(outcome="published").inc()
    worker_metrics.FINISHED.labels(state="succeeded").inc()
    log.info(
        "published %s v%d from job %s (merge %.2fs)",
        published.model.name,
        published.model.version,
        job.id,
        time.perf_counter() - started,
    )


async def _versions(worker: Worker, name: str) -> list[int] | None:
    """The model's version numbers, or None if they could not be listed now (no model yet, a
    connection drop): the publish lists them itself then."""
    try:
        return await worker.registry.versions(name)
    except (NotFound, SessionExpiredError, *TRANSIENT_ERRORS):
        return None


async def publish(
    worker: Worker,
    claim: Claim,
    version: VersionRecord,
    decide: Callable[[ModelRecord], Promotion] | None = None,
    known: list[int] | None = None,
) -> JobRecord:
    """The publishing multi, however long ZooKeeper is away.

    It checks the job record's version (what our merge claim wrote), so trying it again
    after a connection drop is safe: if the first try was applied, the job is `succeeded`
    by our merge claim, and that is the answer. That check alone fences it, so it is tried
    from a new session too if ours expired meanwhile: if another worker re-claimed the
    merge, its claim moved the version on and ZooKeeper refuses ours.
    """
    job, stat = claim.job, claim.stat
    assert stat is not None
    # The merge attempt ends here, its model ready; the publishing multi's time is finished_at.
    job = job.model_copy(update={"merges": TaskAttempt.ended(job.merges, "merged", utcnow())})
    while True:
        if not await worker.touch(version.artifact):
            raise ArtifactError(f"merged artifact {version.artifact} vanished")
        # From the session that took the merge lock, the multi releases it too (see
        # zootrain/locks.py:may_release_in); from a newer one, that lock is gone already.
        release = claim.lock if locks.may_release_in(worker.zk, claim.session) else None
        listed, known = known, None  # a try after this one lists the versions afresh
        try:
            done = await worker.registry.publish(
                worker.queue,
                job,
                stat,
                version,
                decide,
                worker.memo.entry_name(job.id),
                release=release,
                known=listed,
            )
            # Released, or (the multi found no lock to delete) nothing to release.
            claim.released = release is not None
            return done
        except (*TRANSIENT_ERRORS, SessionExpiredError):
            # SessionExpiredError: a request queued in kazoo when the session turned out
            # to be gone. Either way, try again on whatever session connects.
            await worker.zk.wait_session(claim.session)
        except BadVersionError:
            current, _ = await worker.zk.retry(lambda: worker.queue.read_job(job.id))
            if current.state == JobState.succeeded and current.model is not None:
                published = await published_by(worker, current, job, version)
                if published:
                    return current
            worker.fenced("publish", worker.paths.job(job.id))
            raise


async def published_by(
    worker: Worker, job: JobRecord, ours: JobRecord, version: VersionRecord
) -> bool:
    """Whether the succeeded ``job`` was published by our merge claim (``ours``): another
    merger's claim counted one more merge attempt, and merges of the same shards make the
    same file, so the sha256 alone cannot tell."""
    assert job.model is not None
    if job.merge_attempts != ours.merge_attempts:
        return False
    try:
        record = await worker.registry.record(job.model.name, job.model.version)
    except NotFound:
        return False
    return record.job_id == job.id and record.sha256 == version.sha256


async def merge_failed(worker: Worker, claim: Claim, error: str) -> None:
    """A merge attempt failed (the child raised, died, or ran out of time or memory):
    retried after a backoff while the job has attempts left, like a shard."""
    job, stat = claim.job, claim.stat
    assert stat is not None
    log.warning("merge of %s failed: %s", job.id, error)
    try:
        if job.merge_attempts >= job.spec.max_attempts:
            message = f"merge failed after {job.merge_attempts} attempts: {error}"
            await worker.fail_job(job.id, message, claim.session)
            return
        delay = backoff_delay(
            job.merge_attempts, worker.settings.retry_backoff, worker.settings.retry_backoff_max
        )
        retry = job.model_copy(
            update={
                "merge_error": error,
                "merge_not_before": time.time() + delay,
                "updated_at": utcnow(),
            }
        )
        written = await worker.write_versioned(
            worker.paths.job(job.id),
            retry,
            stat.version,
            claim.session,
            outcome="merge",
            releasing=claim,
        )
        if written is not None:
            log.info("merge of %s retries in %.1fs", job.id, delay)
            worker.wake_at(f"{job.id}/merge", time.time() + delay)
    except SessionExpiredError:
        pass


async def alias_holder(worker: Worker, job: JobRecord) -> dict[str, Any] | None:
    """The version a gated publish (spec.publish.if_better) competes with, for the merging
    child to score on the job's own test rows; None if there is none (or no gate)."""
    rule = job.spec.publish
    if rule is None or not rule.if_better:
        return None
    name = job.spec.model_name
    try:
        model, _ = await worker.registry.model(name)
        number = model.aliases.get(rule.alias)
        if number is None:
            return None
        holder = await worker.registry.read(name, number)
    except (NotFound, Gone):
        return None  # no model yet, or the holder went: the publish decides on what it finds
    except TRANSIENT_ERRORS:
        # Not worth holding the merge for: compared with no holder, the publish refuses the
        # alias if one exists by then (it never promotes on a comparison it did not make).
        log.warning("could not read the %r alias of %s before merging", rule.alias, name)
        return None
    return {"version": number, "artifact": holder.artifact, "sha256": holder.sha256}


def promotion_rule(
    job: JobRecord, result: dict[str, Any]
) -> Callable[[ModelRecord], Promotion] | None:
    """How the publishing multi decides whether the new version takes the job's alias, given
    the model's aliases as the multi finds them."""
    rule = job.spec.publish
    if rule is None:
        return None
    gate: dict[str, Any] = result.get("gate") or {}

    def decide(model: ModelRecord) -> Promotion:
        alias = rule.alias
        current = model.aliases.get(alias)
        scores = {
            "metric": gate.get("metric"),
            "score": gate.get("score"),
            "holder_version": gate.get("holder_version"),
            "holder_score": gate.get("holder_score"),
        }
        verdict = functools.partial(Promotion, alias=alias, if_better=rule.if_better, **scores)
        if not rule.if_better:
            return verdict(promoted=True, reason="publish.if_better is false: taken in any case")
        if current is None:
            return verdict(promoted=True, reason=f"the model had no {alias!r} alias")
        compared = gate.get("holder_version")
        if compared != current:
            # Scored against another holder (or none): the alias moved while this job merged.
            # Refused rather than compared on scores from different models; move it by hand.
            return verdict(
                promoted=False,
                reason=f"the alias moved to version {current} while this job merged "
                f"(it was compared with {compared or 'no holder'})",
            )
        if "holder_error" in gate:
            return verdict(
                promoted=False,
                reason=f"version {current} could not be scored on this job's test rows: "
                f"{gate['holder_error']}",
            )
        score, held = gate.get("score"), gate.get("holder_score")
        if score is None or held is None:
            return verdict(
                promoted=False, reason=f"no {gate.get('metric')} score to compare on this task"
            )
        if score >= held:
            return verdict(
                promoted=True,
                reason=f"{gate['metric']} {score:.4g} >= {held:.4g} of version {current}",
            )
        return verdict(
            promoted=False, reason=f"{gate['metric']} {score:.4g} < {held:.4g} of version {current}"
        )

    return decide


def version_record(
    job: JobRecord, shards: list[ShardRecord], result: dict[str, Any]
) -> VersionRecord:
    # The plan travels with the version: a raw-row prediction must not depend on the job
    # record, which housekeeping removes after ZOOTRAIN_JOB_RETENTION.
    plan = job.dataset_source.plan if job.dataset_source is not None else None
    return VersionRecord(
        model=job.spec.model_name,
        job_id=job.id,
        algorithm=job.spec.algorithm,
        task=result["task"],
        shards=job.spec.shards,
        artifact=result["artifact"],
        sha256=result["sha256"],
        size=result["size"],
        n_features=result["n_features"],
        classes=result["classes"],
        metrics=result["metrics"],
        shard_metrics=[
            ShardMetrics(index=s.index, rows=s.rows or 0, metrics=s.metrics or {})
            for s in shards
            if s.role != "baseline"
        ],
        baseline_metrics=result.get("baseline_metrics"),
        baseline_gap=result.get("baseline_gap"),
        search=result.get("search"),
        train_rows=result["train_rows"],
        test_rows=result["test_rows"],
        created_at=utcnow(),
        owner=job.owner,
        encoding=plan,
        input_schema=None if plan is None else input_schema(plan),
        class_report=result.get("class_report"),
    )
