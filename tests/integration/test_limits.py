"""Runaway tasks end: a job's ``time_limit`` (seconds per attempt) and the worker's memory ceiling
(ZOOTRAIN_TASK_MEMORY_LIMIT, RLIMIT_AS in each training process), against real workers.

A task past its time limit is killed, a task past the memory ceiling fails its allocation, and
either way the attempt fails with a reason that names the limit: in the shard record, the job's
error (out of attempts), the CLI and the dashboard. A job that fails this way cancels its other
unfinished shards in the same multi: no failed job shows a shard still pending or running.
"""

from __future__ import annotations

import re
import shutil
from typing import Any

import httpx
import pytest
from kazoo.client import KazooClient
from playwright.sync_api import expect, sync_playwright

from tests.integration.conftest import shard_records
from tests.integration.test_cli import zootrain
from tests.integration.test_dashboard import CHROMIUM_FLAGS
from tests.support.auth import AUTH, SUBMIT_TOKEN
from tests.support.specs import iris_spec
from tests.support.stack import Stack, wait_job

pytestmark = pytest.mark.integration

MEMORY_LIMIT = "900MiB"  # what the worker's training processes get (about 0.7 GB is libraries)


def synthetic(n_samples: int, n_features: int = 20, **overrides: Any) -> dict[str, Any]:
    dataset = {"kind": "synthetic", "task": "classification", "n_samples": n_samples}
    return iris_spec(
        dataset={**dataset, "n_features": n_features},
        params={"n_estimators": 80, "max_depth": 12},
        **overrides,
    )


def submit(client: httpx.Client, spec: dict[str, Any]) -> str:
    response = client.post("/v1/jobs", json=spec)
    assert response.status_code == 202, response.text
    job_id: str = response.json()["id"]
    return job_id


def test_time_and_memory_limits_fail_the_attempt_with_a_reason_that_names_the_limit(
    stack: Stack, kazoo: KazooClient, zk_root: str
) -> None:
    # Room for a synthetic dataset larger than the memory ceiling (the default ceiling on
    # cells keeps every synthetic dataset well inside it).
    stack.start_api(ZOOTRAIN_MAX_SYNTHETIC_CELLS="100000000")
    worker = stack.start_worker("worker", ZOOTRAIN_TASK_MEMORY_LIMIT=MEMORY_LIMIT)
    assert "900 MiB" in worker.output()  # the worker says what its children get
    assert stack.api_url is not None
    with httpx.Client(headers=AUTH, base_url=stack.api_url, timeout=60) as client:
        # Two shards of several seconds each, one second allowed; one worker, one at a time.
        slow = submit(
            client, synthetic(80_000, model_name="too-slow", time_limit=1, max_attempts=1)
        )
        view = wait_job(client, slow, timeout=120)
        assert view["state"] == "failed", view
        reason = "time limit of 1 s exceeded"
        assert re.fullmatch(rf"shard (\d) failed after 1 attempts: {reason}", view["error"]), view
        failed = int(view["error"].split()[1])
        shards = {s["index"]: s for s in view["shards"]}
        assert shards[failed]["state"] == "failed" and shards[failed]["error"] == reason
        other = shards[1 - failed]
        assert other["state"] == "cancelled", other  # not left pending
        # One multi failed the job, its shard, and cancelled the other shard.
        zxids = {
            kazoo.exists(f"{zk_root}/jobs/{slow}").mzxid,
            kazoo.exists(f"{zk_root}/jobs/{slow}/shards/0000").mzxid,
            kazoo.exists(f"{zk_root}/jobs/{slow}/shards/0001").mzxid,
        }
        assert len(zxids) == 1, zxids

        # A million rows of 100 features (800 MB as float64) do not fit in the memory ceiling.
        big = submit(
            client, synthetic(1_000_000, 100, model_name="too-big", shards=1, max_attempts=1)
        )
        view = wait_job(client, big, timeout=120)
        assert view["state"] == "failed", view
        assert "memory limit of 900 MiB exceeded" in view["error"], view
        assert "memory limit of 900 MiB exceeded" in view["shards"][0]["error"]
        assert shard_records(kazoo, zk_root, big)[0]["state"] == "failed"

        # The same worker trains what fits, within the limits.
        fits = submit(client, iris_spec("fits", time_limit=60, max_attempts=1))
        assert wait_job(client, fits, timeout=60)["state"] == "succeeded"

    # The CLI shows the reasons.
    shown = zootrain(stack.api_url, "status", slow)
    assert shown.returncode == 0, shown.stderr
    assert reason in shown.stdout and "cancelled" in shown.stdout, shown.stdout
    shown = zootrain(stack.api_url, "status", big)
    assert "memory limit of 900 MiB exceeded" in " ".join(shown.stdout.split()), shown.stdout

    # So does the dashboard: the job's error, and the shard's row.
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is needed: `make test` installs it"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        page = browser.new_page()
        page.goto(f"{stack.api_url}/ui/#jobs")
        page.fill("#token-input", SUBMIT_TOKEN)
        page.press("#token-input", "Enter")
        page.goto(f"{stack.api_url}/ui/#job/{slow}")
        expect(page.locator("#job-error")).to_contain_text(reason)
        expect(page.locator(f'.shard[data-index="{failed}"] .info')).to_contain_text(reason)
        expect(page.locator(f'.shard[data-index="{1 - failed}"]')).to_have_attribute(
            "data-state", "cancelled"
        )
        browser.close()
