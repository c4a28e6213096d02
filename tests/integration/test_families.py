"""Every model family, a search and a baseline, through real workers and a real ZooKeeper."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.support.auth import AUTH
from tests.support.stack import Stack, wait_job
from zootrain.ml.algorithms import ALGORITHMS

pytestmark = pytest.mark.integration

IRIS = {"kind": "builtin", "name": "iris"}
DIABETES = {"kind": "builtin", "name": "diabetes"}
DIGITS = {"kind": "builtin", "name": "digits"}
BLOBS = {"kind": "synthetic", "task": "blobs", "n_samples": 600, "n_features": 4, "n_classes": 3}

# algorithm -> (dataset, params, the metric its version must carry)
FAMILIES: dict[str, tuple[dict[str, Any], dict[str, Any], str]] = {
    "random_forest_classifier": (IRIS, {"n_estimators": 5}, "accuracy"),
    "extra_trees_classifier": (IRIS, {"n_estimators": 5}, "accuracy"),
    "random_forest_regressor": (DIABETES, {"n_estimators": 5}, "r2"),
    "extra_trees_regressor": (DIABETES, {"n_estimators": 5}, "r2"),
    "sgd_classifier": (IRIS, {}, "accuracy"),
    "sgd_regressor": (DIABETES, {}, "r2"),
    "logistic_regression": (IRIS, {"max_iter": 300}, "accuracy"),
    "linear_regression": (DIABETES, {}, "r2"),
    "ridge": (DIABETES, {"alpha": 0.5}, "r2"),
    "gaussian_nb": (IRIS, {}, "accuracy"),
    "multinomial_nb": (DIGITS, {}, "accuracy"),
    "kmeans": (BLOBS, {"n_clusters": 3, "n_init": 2}, "inertia"),
}


def test_the_family_list_covers_every_algorithm() -> None:
    assert set(FAMILIES) == set(ALGORITHMS)


def test_every_family_search_and_baseline_through_workers(stack: Stack) -> None:
    stack.start_api()
    stack.start_worker(ZOOTRAIN_WORKER_CONCURRENCY="2")
    with httpx.Client(headers=AUTH, base_url=stack.api_url or "", timeout=30) as api:
        jobs: dict[str, str] = {}
        for algorithm, (dataset, params, _) in FAMILIES.items():
            spec = {
                "model_name": algorithm.replace("_", "-"),
                "algorithm": algorithm,
                "params": params,
                "dataset": dataset,
                "shards": 3,
            }
            response = api.post("/v1/jobs", json=spec)
            assert response.status_code == 202, response.text
            jobs[algorithm] = response.json()["id"]
        search = api.post(
            "/v1/jobs",
            json={
                "model_name": "iris-search",
                "algorithm": "logistic_regression",
                "params": {"max_iter": 300},
                "dataset": IRIS,
                "kind": "search",
                "search": {"param_grid": {"C": [0.01, 1.0, 10.0]}, "cv": 3},
            },
        )
        assert search.status_code == 202, search.text
        baseline = api.post(
            "/v1/jobs",
            json={
                "model_name": "ridge-baseline",
                "algorithm": "ridge",
                "dataset": DIABETES,
                "shards": 4,
                "baseline": True,
            },
        )
        assert baseline.status_code == 202, baseline.text

        for algorithm, job_id in jobs.items():
            view = wait_job(api, job_id, timeout=300)
            assert view["state"] == "succeeded", (algorithm, view.get("error"))
            version = api.get(
                f"/v1/models/{view['model']['name']}/versions/{view['model']['version']}"
            ).json()
            assert FAMILIES[algorithm][2] in version["metrics"], (algorithm, version["metrics"])
            assert len(version["shard_metrics"]) == 3

        view = wait_job(api, search.json()["id"], timeout=300)
        assert view["state"] == "succeeded", view.get("error")
        assert [s["role"] for s in view["shards"]] == ["candidate"] * 3
        version = api.get("/v1/models/iris-search/versions/1").json()
        scores = [c["cv_mean"] for c in version["search"]["candidates"]]
        assert version["search"]["best_index"] == scores.index(max(scores))
        assert version["search"]["best_params"]["C"] in (0.01, 1.0, 10.0)

        view = wait_job(api, baseline.json()["id"], timeout=300)
        assert view["state"] == "succeeded", view.get("error")
        assert [s["role"] for s in view["shards"]] == ["shard"] * 4 + ["baseline"]
        version = api.get("/v1/models/ridge-baseline/versions/1").json()
        # Ridge merges exactly: the merged model IS the single model, so the gap is ~0.
        assert abs(version["baseline_gap"]["r2"]) < 1e-8
        assert version["baseline_metrics"]["r2"] == pytest.approx(version["metrics"]["r2"])
