"""A stop that arrives with a claim: the worker's last scan has just marked a shard `running`
and the task that would train it has not started its child yet (it is setting its watch on the
job). A graceful stop must still hand that shard back without consuming an attempt; before the
fix the cancellation landed outside the handler around the child, and the shard stayed
`running` with its one attempt spent until another worker gave it up."""

from __future__ import annotations

import asyncio
import json

import pytest
from kazoo.client import KazooClient

from tests.integration.conftest import iris_spec, settings_from_env
from workers.worker import Worker
from zootrain.queue import JobQueue
from zootrain.records import JobSpec

pytestmark = pytest.mark.integration


def test_a_claim_stopped_before_its_task_ran_is_handed_back(
    settings_env: dict[str, str], kazoo: KazooClient, zk_root: str
) -> None:
    settings = settings_from_env(settings_env, worker_id="racer", worker_grace=0.0)
    spec = JobSpec.model_validate(iris_spec(model_name="raced", shards=1, max_attempts=1))

    async def scenario() -> str:
        worker = Worker(settings)
        await worker.zk.start(30)
        try:
            await worker.queue.ensure_layout()
            submitted = await JobQueue(worker.zk, worker.paths).submit(spec)
            claim = await worker._find_work()  # the real claim: lock taken, record `running`
            assert claim is not None and claim.shard is not None
            assert claim.shard.state == "running" and claim.shard.attempts == 1
            worker._start(claim)  # its task exists but has not run
            worker.stop()
            await worker._drain()  # grace 0: hand back at once
            return submitted.job.id
        finally:
            await worker.zk.stop()

    job_id = asyncio.run(scenario())
    data, _ = kazoo.get(f"{zk_root}/jobs/{job_id}/shards/0000")
    shard = json.loads(data)
    assert shard["state"] == "pending", shard
    assert shard["attempts"] == 0, shard
    assert shard["worker"] is None
    assert kazoo.get_children(f"{zk_root}/locks") == []
