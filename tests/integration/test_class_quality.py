"""Per-class metrics, partition "auto" and the submit's warning, through the real job service,
real workers and a real ZooKeeper (issue 15: "when data shards lose: show it, and choose
better")."""

from __future__ import annotations

import io
import subprocess
import sys
from typing import Any

import httpx
import numpy as np
import pytest
from sklearn.datasets import make_blobs

from testkit.auth import AUTH, SUBMIT_TOKEN
from testkit.stack import ROOT, Stack, environment, wait_job
from zootrain.shard_plan import MIN_FOREST_SHARD_ROWS

pytestmark = pytest.mark.integration

LABELS = ("common", "middle", "minor", "rare")


def skewed_csv() -> bytes:
    """4 classes of 2,400, 1,000, 480 and 120 rows (2.5 % rare), in label order: range shards
    of it hold one or two classes each, and the rare class sits in the last shard alone."""
    X, y = make_blobs(
        n_samples=[2_400, 1_000, 480, 120], n_features=4, cluster_std=1.5, random_state=3
    )
    order = np.argsort(y, kind="stable")
    out = io.StringIO()
    out.write("f0,f1,f2,f3,label\n")
    for row, label in zip(X[order], y[order], strict=True):
        out.write(",".join(f"{v:.6f}" for v in row) + f",{LABELS[label]}\n")
    return out.getvalue().encode()


def cli(url: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "zootrain.cli", *args, "--url", url],
        cwd=ROOT,
        env=environment({"ZOOTRAIN_TOKEN": SUBMIT_TOKEN}),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, (done.stdout, done.stderr)
    return done.stdout


def test_a_skewed_range_sharded_forest_flags_its_rare_class(stack: Stack) -> None:
    stack.start_api()
    stack.start_worker(ZOOTRAIN_WORKER_CONCURRENCY="2")
    assert stack.api_url is not None
    with httpx.Client(headers=AUTH, base_url=stack.api_url, timeout=60) as api:
        upload = api.post("/v1/datasets", files={"file": ("skewed.csv", skewed_csv())})
        assert upload.status_code == 201, upload.text
        spec = {
            "model_name": "skewed-forest",
            "algorithm": "random_forest_classifier",
            "params": {"n_estimators": 5},
            "dataset": {"kind": "uploaded", "id": upload.json()["id"], "target": "label"},
            "shards": 8,
            "partition": "range",
            "baseline": True,
        }
        submitted = api.post("/v1/jobs", json=spec)
        assert submitted.status_code == 202, submitted.text
        accepted = submitted.json()
        # 3,200 training rows in 8 data shards: 400 a shard, under the threshold.
        (warning,) = accepted["warnings"]
        assert "400 rows each" in warning and f"{MIN_FOREST_SHARD_ROWS:,}" in warning
        assert accepted["spec"]["partition"] == "range"  # explicit: kept as it is
        assert accepted["partition_choice"] is None

        job = wait_job(api, accepted["id"], timeout=300)
        assert job["state"] == "succeeded", job.get("error")
        assert job["warnings"] == [warning]
        flagged = {(d["label"], d["against"]) for d in job["recall_drops"]}
        assert ("rare", "baseline") in flagged, job["recall_drops"]
        rare = next(d for d in job["recall_drops"] if d["label"] == "rare")
        assert rare["reference_recall"] - rare["recall"] > 0.10
        assert rare["support"] > 0

        model = job["model"]
        version = api.get(f"/v1/models/{model['name']}/versions/{model['version']}").json()
        report = version["class_report"]
        assert report["note"] is None
        assert [m["label"] for m in report["merged"]] == list(LABELS)
        assert [m["label"] for m in report["baseline"]] == list(LABELS)
        assert len(report["shards"]) == 8 and report["best_shard"] in range(8)
        # Every model on the same held-out rows: the supports agree, and add up to them.
        supports = [m["support"] for m in report["merged"]]
        assert [m["support"] for m in report["baseline"]] == supports
        assert all([m["support"] for m in shard] == supports for shard in report["shards"])
        assert sum(supports) == version["test_rows"]
        assert report["recall_drops"] == job["recall_drops"]
        by_label = {m["label"]: m for m in report["baseline"]}
        assert by_label["rare"]["recall"] > 0.8  # one forest on all rows knows the rare class

        # The CLI shows the flag, on the job and on the version.
        shown = cli(stack.api_url, "status", accepted["id"])
        assert "recall" in shown and "rare" in shown, shown
        assert "warning" in shown, shown
        detail = cli(stack.api_url, "models", "skewed-forest", "--version", "1")
        assert "per-class metrics" in detail and "recall drop" in detail, detail
        assert "rare" in detail, detail
        listing = cli(stack.api_url, "models", "skewed-forest")
        assert "recall drops" in listing and "rare" in listing, listing


def test_auto_records_replicate_and_why_and_a_regression_has_no_per_class(stack: Stack) -> None:
    stack.start_api()
    stack.start_worker(ZOOTRAIN_WORKER_CONCURRENCY="2")
    with httpx.Client(headers=AUTH, base_url=stack.api_url or "", timeout=60) as api:
        jobs: dict[str, dict[str, Any]] = {}
        for name, algorithm, dataset in (
            ("auto-iris", "random_forest_classifier", {"kind": "builtin", "name": "iris"}),
            ("auto-diabetes", "random_forest_regressor", {"kind": "builtin", "name": "diabetes"}),
        ):
            spec = {
                "model_name": name,
                "algorithm": algorithm,
                "params": {"n_estimators": 4},
                "dataset": dataset,
                "shards": 3,
            }  # no partition: "auto", the default
            response = api.post("/v1/jobs", json=spec)
            assert response.status_code == 202, response.text
            jobs[name] = response.json()
        iris = jobs["auto-iris"]
        assert iris["spec"]["partition"] == "replicate"
        choice = iris["partition_choice"]
        assert choice["requested"] == "auto" and choice["strategy"] == "replicate"
        assert choice["train_rows"] == 120 and choice["budget_bytes"] == 1 << 30
        assert "within the shard memory budget" in choice["reason"]
        # Replicated: no small data shards to warn of, although 40 rows a shard would be.
        assert iris["warnings"] == []

        for name, submitted in jobs.items():
            job = wait_job(api, submitted["id"], timeout=300)
            assert job["state"] == "succeeded", (name, job.get("error"))
            assert job["partition_choice"] == submitted["partition_choice"]
            # Every shard trained on all 120 (iris) or 353 (diabetes) training rows.
            rows = {s["rows"] for s in job["shards"]}
            assert rows == {choice["train_rows"] if name == "auto-iris" else 353}, rows
            version = api.get(f"/v1/models/{name}/versions/1").json()
            report = version["class_report"]
            if name == "auto-iris":
                assert job["recall_drops"] is not None
                assert [m["label"] for m in report["merged"]] == [0, 1, 2]
                assert len(report["shards"]) == 3 and report["baseline"] is None
            else:
                assert job["recall_drops"] is None
                assert report["merged"] == [] and "no per-class metrics" in report["note"]


def test_a_small_budget_makes_auto_take_data_shards_and_warn(stack: Stack) -> None:
    # No worker: what is checked is the submit's answer and the record it wrote.
    stack.settings["ZOOTRAIN_SHARD_MEMORY"] = "10KiB"
    stack.start_api()
    with httpx.Client(headers=AUTH, base_url=stack.api_url or "", timeout=60) as api:
        spec = {
            "model_name": "small-budget",
            "algorithm": "extra_trees_classifier",
            "dataset": {"kind": "builtin", "name": "digits"},
            "shards": 4,
        }
        response = api.post("/v1/jobs", json=spec)
        assert response.status_code == 202, response.text
        accepted = response.json()
        assert accepted["spec"]["partition"] == "random"
        assert "over the shard memory budget of 10.0 KiB" in accepted["partition_choice"]["reason"]
        (warning,) = accepted["warnings"]
        assert "4 random data shards" in warning
        stored = api.get(f"/v1/jobs/{accepted['id']}").json()
        assert stored["warnings"] == accepted["warnings"]
        assert stored["partition_choice"] == accepted["partition_choice"]
        # A replay with the same key and body answers the same job, choice and warnings.
        key = {"Idempotency-Key": "small-budget-1"}
        first = api.post("/v1/jobs", json=spec, headers=key)
        again = api.post("/v1/jobs", json=spec, headers=key)
        assert (first.status_code, again.status_code) == (202, 200)
        assert again.json()["warnings"] == first.json()["warnings"] == accepted["warnings"]
