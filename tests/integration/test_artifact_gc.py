"""The artifact store does not grow forever: the housekeeping leader removes the files no record
names, and never one a record names or one being written.

50 jobs on real workers, with what leaves files behind: shard models of published jobs,
versions trimmed (ZOOTRAIN_MAX_VERSIONS) and deleted, a deleted dataset, cancelled jobs, a
result nobody recorded, and temporary files of killed processes, one old and one fresh. After
the last collection the store holds exactly the files that ZooKeeper's records name (computed
here from the records themselves), plus the fresh temporary file; every published version not
deleted still serves predictions.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from kazoo.client import KazooClient

from tests.integration.conftest import children, start_api
from tests.support.auth import AUTH
from tests.support.specs import iris_spec
from tests.support.stack import Stack, wait_for
from tests.support.store import referenced, stored, young_temporary

pytestmark = pytest.mark.integration

JOBS = 50
TERMINAL = ("succeeded", "failed", "cancelled")


def aged(path: Path, data: bytes, seconds_ago: float) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    then = time.time() - seconds_ago
    os.utime(path, (then, then))
    return f"{path.parent.name}/{path.name}"


def test_the_store_holds_exactly_the_referenced_files_after_the_last_collection(
    stack: Stack, kazoo: KazooClient, zk_root: str
) -> None:
    store = Path(stack.settings["ZOOTRAIN_ARTIFACTS"])
    stack.settings.update(
        ZOOTRAIN_JOB_RETENTION="3",
        ZOOTRAIN_MAX_VERSIONS="3",
        ZOOTRAIN_HOUSEKEEPING_INTERVAL="0.5",
        ZOOTRAIN_ARTIFACT_GC_INTERVAL="1",
        ZOOTRAIN_ARTIFACT_GC_GRACE="2",
    )
    url = start_api(stack, kazoo)
    for _ in range(2):
        stack.start_worker("worker", ZOOTRAIN_WORKER_CONCURRENCY="2")

    # Left behind by processes that died: a temporary file of an hour and more, a fresh one
    # (a write in progress, for all we know), and a result no record ever named.
    old_tmp = aged(store / "models" / ".tmp-killed-child", b"half a model", 2 * 3600)
    fresh_tmp = aged(store / "models" / ".tmp-being-written", b"a model in progress", 0)
    digest = hashlib.sha256(b"a fenced attempt's result").hexdigest()
    orphan = aged(store / "models" / f"{digest}.skops", b"a fenced attempt's result", 600)

    with httpx.Client(headers=AUTH, base_url=url, timeout=60) as client:
        rows = "length,width,species\n" + "\n".join(
            f"{i % 7 + 1}.{i % 10},{i % 5 + 1}.{i % 3},{'abc'[i % 3]}" for i in range(90)
        )
        datasets = []
        for variant in ("kept", "deleted"):
            body = f"{rows}\n9.{len(variant)},1.0,a\n".encode()
            upload = client.post("/v1/datasets", files={"file": (f"{variant}.csv", body)})
            assert upload.status_code == 201, upload.text
            datasets.append(upload.json()["id"])

        job_ids: list[str] = []
        cancelled: list[str] = []
        for number in range(JOBS):
            if number % 5 == 0:
                dataset: dict[str, Any] = {
                    "kind": "uploaded",
                    "id": datasets[number % 2],
                    "target": "species",
                }
            else:
                dataset = {"kind": "builtin", "name": "iris" if number % 2 else "wine"}
            spec = iris_spec(
                f"gc-model-{number % 4}", dataset=dataset, shards=2, random_state=number
            )
            response = client.post("/v1/jobs", json=spec)
            assert response.status_code == 202, response.text
            job_ids.append(response.json()["id"])
            if number % 7 == 3:
                client.delete(f"/v1/jobs/{job_ids[-1]}")  # 200, or 409 if it finished first
                cancelled.append(job_ids[-1])

        # Every job ends (and is then deleted by the 3-second retention).
        def unfinished() -> list[str]:
            left = []
            for job_id in job_ids:
                response = client.get(f"/v1/jobs/{job_id}")
                if response.status_code == 200 and response.json()["state"] not in TERMINAL:
                    left.append(job_id)
            return left

        wait_for(lambda: not unfinished(), 300, "every job to finish", interval=1.0)
        for job_id in job_ids:
            response = client.get(f"/v1/jobs/{job_id}")
            if response.status_code == 200 and job_id not in cancelled:
                assert response.json()["state"] == "succeeded", response.json()

        # Deletes: a version of each model, and the second dataset (its jobs are finished).
        for number in range(4):
            versions = client.get(f"/v1/models/gc-model-{number}/versions").json()
            live = [v["version"] for v in versions if v.get("deleted_at") is None]
            assert live, versions
            deleted = client.delete(f"/v1/models/gc-model-{number}/versions/{live[0]}")
            assert deleted.status_code == 204, deleted.text
        assert client.delete(f"/v1/datasets/{datasets[1]}").status_code == 204

        # The last collections: the store ends as the records say.
        final: dict[str, set[str]] = {}

        def settled() -> bool:
            # Temporary files younger than an hour stay: writes in progress, for all the
            # collector knows (a cancelled job's child killed mid-write leaves one too).
            final["stored"] = stored(store)
            recent = young_temporary(store, final["stored"])
            final["expected"] = referenced(kazoo, zk_root, store) | recent
            return final["stored"] == final["expected"] and not children(kazoo, f"{zk_root}/jobs")

        try:
            wait_for(settled, 90, "the store to hold only the referenced files", interval=1.0)
        except TimeoutError as exc:
            extra = final["stored"] - final["expected"]
            missing = final["expected"] - final["stored"]
            detail = f"extra {sorted(extra)}, missing {sorted(missing)}"
            raise AssertionError(f"{exc}: {detail}") from None

        assert old_tmp not in final["stored"] and orphan not in final["stored"]
        assert fresh_tmp in final["stored"]
        models_left = [k for k in final["stored"] if k.startswith("models/") and "tmp" not in k]
        print(f"artifact gc: {JOBS} jobs, {len(models_left)} model files left in the store")
        assert models_left  # live versions keep their files
        # Nothing a live record names went: every live version's file is served, intact.
        for number in range(4):
            for version in client.get(f"/v1/models/gc-model-{number}/versions").json():
                if version.get("deleted_at") is not None:
                    continue
                path = f"/v1/models/gc-model-{number}/versions/{version['version']}/artifact"
                artifact = client.get(path)
                assert artifact.status_code == 200, artifact.text
                assert hashlib.sha256(artifact.content).hexdigest() == version["sha256"]
