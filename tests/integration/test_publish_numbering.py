"""A merger lists the model's versions while its child merges, and the publishing multi numbers
the new version from that listing (Registry.publish's ``known``). A listing gone stale (another
job published meanwhile) must cost a retry, never a lost or doubled version: against a real
ZooKeeper, without processes."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from tests.integration.conftest import iris_spec, settings_from_env
from zootrain.paths import Paths
from zootrain.queue import JobQueue
from zootrain.records import JobSpec, JobState, VersionRecord
from zootrain.registry import Registry
from zootrain.zk import ZooKeeper

pytestmark = pytest.mark.integration


def version_of(job_id: str, name: str) -> VersionRecord:
    return VersionRecord(
        model=name,
        job_id=job_id,
        algorithm="random_forest_classifier",
        task="classification",
        shards=1,
        artifact="models/00/0000.skops",
        sha256="0" * 64,
        size=1,
        n_features=4,
        metrics={},
        shard_metrics=[],
        train_rows=1,
        test_rows=1,
        created_at=datetime.now(UTC),
    )


def test_a_version_numbered_from_a_stale_listing_takes_the_next_free_number(
    settings_env: dict[str, str],
) -> None:
    settings = settings_from_env(settings_env)
    name = "numbered"
    spec = JobSpec.model_validate(iris_spec(model_name=name, shards=1))

    async def scenario() -> None:
        zk = ZooKeeper(settings.zk_hosts)
        await zk.start(30)
        try:
            paths = Paths(settings.zk_root)
            queue = JobQueue(zk, paths)
            await queue.ensure_layout()
            registry = Registry(zk, paths)
            first = (await queue.submit(spec)).job.id
            second = (await queue.submit(spec)).job.id
            job, stat = await queue.read_job(first)
            done = await registry.publish(queue, job, stat, version_of(first, name))
            assert done.model is not None and done.model.version == 1
            stale: list[int] = []  # listed before version 1 was published
            job, stat = await queue.read_job(second)
            done = await registry.publish(queue, job, stat, version_of(second, name), known=stale)
            assert done.state == JobState.succeeded
            assert done.model is not None and done.model.version == 2
            assert await registry.versions(name) == [1, 2]
            assert (await registry.record(name, 1)).job_id == first
            assert (await registry.record(name, 2)).job_id == second
            # A fresh listing is used as it is.
            third = (await queue.submit(spec)).job.id
            job, stat = await queue.read_job(third)
            listed = await registry.versions(name)
            done = await registry.publish(queue, job, stat, version_of(third, name), known=listed)
            assert done.model is not None and done.model.version == 3
        finally:
            await zk.stop()

    asyncio.run(scenario())
