"""The worker that settles a job's last shard starts the merging child while its merge claim's
multi is on its way (workers/publishing.py: start_merge_early). A claim that is refused stops
that child and publishes nothing; the merge is claimed again once the lock goes, and the
version is published once.
"""

from __future__ import annotations

import httpx
import pytest
from kazoo.client import KazooClient

from testkit.auth import AUTH
from testkit.stack import Stack, wait_for, wait_job
from tests.integration.conftest import iris_spec, start_api, submit

pytestmark = pytest.mark.integration


def test_a_refused_merge_claim_stops_its_early_child_and_the_version_is_published_once(
    stack: Stack, kazoo: KazooClient, zk_root: str
) -> None:
    api_url = start_api(stack, kazoo)
    worker = stack.start_worker()
    # One worker trains both shards: it settles the last one, and claims the merge.
    spec = iris_spec(model_name="merged-once", params={"n_estimators": 200, "max_depth": 3})
    other = KazooClient(hosts=stack.settings["ZOOTRAIN_ZK_HOSTS"])
    other.start(30)
    try:
        with httpx.Client(headers=AUTH, base_url=api_url, timeout=30) as client:
            job_id = submit(client, spec)["id"]
            # Another worker's merge lock, alive, taken before the last shard settles.
            lock = f"{zk_root}/locks/{job_id}.merge"
            other.create(lock, b"someone-else", ephemeral=True)
            wait_for(
                lambda: f"stopping the early merge of {job_id}" in worker.output(),
                120,
                "the refused claim to stop its early child",
            )
            view = client.get(f"/v1/jobs/{job_id}").json()
            assert all(s["state"] == "done" for s in view["shards"]), view
            assert view["state"] == "running" and view["model"] is None, view
            assert f"merged {job_id}" not in worker.output()

            other.delete(lock)  # its owner lets go: the worker's watch on the lock fires
            view = wait_job(client, job_id)
            assert view["state"] == "succeeded", view
            assert view["model"]["version"] == 1
            listed = client.get("/v1/models/merged-once/versions")
            assert [v["version"] for v in listed.json()] == [1], listed.text
            output = worker.output()
            assert output.count(f"from job {job_id}") == 1
            assert "never retrieved" not in output and "Traceback" not in output, output
    finally:
        other.stop()
        other.close()
