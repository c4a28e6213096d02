"""Prometheus metrics, scraped from a live job service and a live worker."""

from __future__ import annotations

import re

import httpx
import pytest

from testkit.auth import AUTH
from testkit.stack import Stack, wait_job
from testkit.zkserver import free_port

pytestmark = pytest.mark.integration


def value(text: str, sample: str) -> float:
    match = re.search(rf"^{re.escape(sample)} (\S+)$", text, re.MULTILINE)
    assert match, f"{sample} not in the scrape"
    return float(match.group(1))


def test_service_and_worker_metrics(stack: Stack) -> None:
    port = free_port()
    stack.start_api()
    with httpx.Client(headers=AUTH, base_url=stack.api_url or "", timeout=30) as api:
        # Cancelled before any worker exists: nobody can claim it first.
        idle = api.post(
            "/v1/jobs",
            json={
                "model_name": "metrics-idle",
                "algorithm": "random_forest_classifier",
                "dataset": {"kind": "builtin", "name": "iris"},
            },
        ).json()
        assert api.delete(f"/v1/jobs/{idle['id']}").status_code == 200
        stack.start_worker(ZOOTRAIN_METRICS_PORT=str(port))
        job = api.post(
            "/v1/jobs",
            json={
                "model_name": "metrics-forest",
                "algorithm": "random_forest_classifier",
                "params": {"n_estimators": 3},
                "dataset": {"kind": "builtin", "name": "iris"},
                "shards": 2,
            },
        ).json()
        assert wait_job(api, job["id"])["state"] == "succeeded"
        scrape = api.get("/metrics")
    assert scrape.status_code == 200
    assert scrape.headers["content-type"].startswith("text/plain")
    text = scrape.text
    assert value(text, "zootrain_jobs_submitted_total") == 2
    assert value(text, "zootrain_jobs_cancelled_total") == 1
    assert value(text, "zootrain_submit_latency_seconds_count") == 2
    assert value(text, "zootrain_zookeeper_connected") == 1
    assert "zootrain_queue_depth" in text

    worker = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    done = 'zootrain_shards_total{algorithm="random_forest_classifier",outcome="done"}'
    assert value(worker, done) == 2
    assert value(worker, 'zootrain_merges_total{outcome="published"}') == 1
    assert value(worker, "zootrain_claim_latency_seconds_count") == 2
    assert value(worker, 'zootrain_jobs_finished_total{state="succeeded"}') == 1
    assert value(worker, "zootrain_zookeeper_connected") == 1
