"""End to end: the real job service (uvicorn) and two real workers train, merge, publish, serve."""

from __future__ import annotations

import hashlib
import math
import re
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from kazoo.client import KazooClient
from sklearn.ensemble import RandomForestClassifier

from testkit.stack import Stack, wait_for, wait_job
from tests.integration.conftest import (
    children,
    claim_lines,
    iris_spec,
    submit,
)
from workers.train_child import held_out
from zootrain.ml import modelfile
from zootrain.ml.datasets import BuiltinDataset, Split, load_dataset
from zootrain.ml.scoring import evaluate
from zootrain.records import JobSpec

pytestmark = pytest.mark.integration

WORKER_IDS = {"shared-a", "shared-b"}


def _split(spec: dict[str, Any], stack: Stack) -> Split:
    """The job's held-out rows, chosen as its tasks choose them (workers.train_child)."""
    payload = {
        "spec": JobSpec.model_validate(spec).model_dump(mode="json"),
        "artifacts": stack.settings["ZOOTRAIN_ARTIFACTS"],
    }
    return held_out(payload)


def _workers(stack: Stack) -> list[Any]:
    return [p for p in stack.processes if p.name.startswith("worker")]


def _root(stack: Stack) -> str:
    return stack.settings["ZOOTRAIN_ZK_ROOT"]


def _check_clean_after(kazoo: KazooClient, stack: Stack, job_id: str) -> None:
    root = _root(stack)
    # The queue entry goes in the same multi that publishes.
    assert [e for e in children(kazoo, f"{root}/queue") if job_id in e] == []
    # The merge lock is released just after that multi: give it a moment.
    wait_for(
        lambda: [n for n in children(kazoo, f"{root}/locks") if n.startswith(job_id)] == [],
        15,
        f"the locks of {job_id} to go",
    )


def _check_trained_once(stack: Stack, view: dict[str, Any]) -> set[str]:
    job_id = view["id"]
    workers = _workers(stack)
    used = set()
    for shard in view["shards"]:
        assert shard["state"] == "done", shard
        assert shard["attempts"] == 1, shard
        assert shard["worker"] in WORKER_IDS, shard
        assert shard["sha256"] and shard["artifact"] and shard["rows"] > 0, shard
        used.add(shard["worker"])
        lines = [line for w in workers for line in claim_lines(w, job_id, shard["index"])]
        assert len(lines) == 1, (shard["index"], lines)
        assert lines[0].rstrip().endswith("attempt 1"), lines
    return used


def test_forest_classifier_job_end_to_end(
    shared_stack: Stack, shared_http: httpx.Client, kazoo: KazooClient
) -> None:
    trees_per_shard, shards = 25, 4
    spec = iris_spec(
        model_name="digits-forest",
        dataset={"kind": "builtin", "name": "digits"},
        params={"n_estimators": trees_per_shard},
        shards=shards,
        partition="random",  # data shards: each trains on its quarter of the rows
    )
    accepted = shared_http.post("/v1/jobs", json=spec)
    assert accepted.status_code == 202, accepted.text
    job_id = accepted.json()["id"]
    # 1,437 training rows in 4 data shards: the submit warns that they are small.
    assert "359 rows each" in accepted.json()["warnings"][0], accepted.json()["warnings"]
    view = wait_job(shared_http, job_id)
    assert view["state"] == "succeeded", view
    assert view["error"] is None
    assert view["started_at"] and view["finished_at"]
    model = view["model"]
    assert model["name"] == "digits-forest" and model["version"] >= 1

    used = _check_trained_once(shared_stack, view)
    assert used <= WORKER_IDS and used  # both usually take part; never anyone else
    _check_clean_after(kazoo, shared_stack, job_id)

    # The published version.
    response = shared_http.get(f"/v1/models/digits-forest/versions/{model['version']}")
    assert response.status_code == 200, response.text
    version = response.json()
    assert version["job_id"] == job_id
    assert version["version"] == model["version"]
    assert version["algorithm"] == "random_forest_classifier"
    assert version["task"] == "classification"
    assert version["shards"] == shards
    # A sha256 in lowercase hex; it is the artifact's own digest (checked on download below).
    assert re.fullmatch(r"[0-9a-f]{64}", version["sha256"]), version["sha256"]
    assert version["n_features"] == 64
    assert version["classes"] == list(range(10))
    assert {"accuracy", "f1_macro", "log_loss"} <= set(version["metrics"])
    assert sorted(m["index"] for m in version["shard_metrics"]) == list(range(shards))
    for shard_metrics in version["shard_metrics"]:
        assert {"accuracy", "f1_macro"} <= set(shard_metrics["metrics"])
    assert sum(m["rows"] for m in version["shard_metrics"]) == version["train_rows"]
    split = _split(spec, shared_stack)
    X_all, y_all = load_dataset(BuiltinDataset(kind="builtin", name="digits"))
    assert version["train_rows"] + version["test_rows"] == len(X_all)
    assert version["test_rows"] == len(split.X_test) == math.ceil(0.2 * len(X_all))

    # The artifact: bytes, header and record agree.
    artifact = shared_http.get(f"/v1/models/digits-forest/versions/{model['version']}/artifact")
    assert artifact.status_code == 200
    digest = hashlib.sha256(artifact.content).hexdigest()
    assert digest == artifact.headers["x-content-sha256"] == version["sha256"]

    merged = modelfile.loads(artifact.content)
    assert len(merged.estimators_) == shards * trees_per_shard
    # The published metrics are the merged model's score on the held-out split.
    local = evaluate(
        merged, split.X_test, split.y_test, task="classification", classes=split.classes
    )
    assert local["accuracy"] == pytest.approx(version["metrics"]["accuracy"])

    # Close to one forest with as many trees trained on all the training rows.
    single = RandomForestClassifier(n_estimators=shards * trees_per_shard, random_state=0)
    held = {tuple(row) for row in split.X_test}
    train = np.array([tuple(row) not in held for row in X_all])
    single.fit(X_all[train], y_all[train])
    baseline = single.score(split.X_test, split.y_test)
    assert version["metrics"]["accuracy"] >= baseline - 0.05, (version["metrics"], baseline)

    # Predictions through the API equal the artifact's own.
    rows = split.X_test[:40]
    predicted = shared_http.post(
        "/v1/models/digits-forest/predict", json={"instances": rows.tolist()}
    )
    assert predicted.status_code == 200, predicted.text
    body = predicted.json()
    assert body["model"] == "digits-forest" and body["version"] == model["version"]
    assert body["predictions"] == merged.predict(rows).tolist()
    pinned = shared_http.post(
        "/v1/models/digits-forest/predict",
        json={"instances": rows[:3].tolist(), "version": model["version"]},
    )
    assert pinned.status_code == 200 and pinned.json()["predictions"] == body["predictions"][:3]

    # The model is listed, and the job shows up among the succeeded ones.
    models = {m["name"]: m for m in shared_http.get("/v1/models").json()}
    assert models["digits-forest"]["latest_version"] == model["version"]
    listed = shared_http.get("/v1/jobs", params={"state": "succeeded", "limit": 500}).json()
    assert job_id in [j["id"] for j in listed["items"]]
    assert all(j["state"] == "succeeded" for j in listed["items"])


def test_forest_regressor_job_end_to_end(
    shared_stack: Stack, shared_http: httpx.Client, kazoo: KazooClient
) -> None:
    spec = iris_spec(
        model_name="diabetes-forest",
        algorithm="random_forest_regressor",
        dataset={"kind": "builtin", "name": "diabetes"},
        params={"n_estimators": 10, "max_depth": 6},
        shards=3,
    )
    job = submit(shared_http, spec)
    view = wait_job(shared_http, job["id"])
    assert view["state"] == "succeeded", view
    _check_trained_once(shared_stack, view)
    _check_clean_after(kazoo, shared_stack, job["id"])

    version = shared_http.get(
        f"/v1/models/diabetes-forest/versions/{view['model']['version']}"
    ).json()
    assert version["task"] == "regression"
    assert version["classes"] is None
    assert {"r2", "rmse"} <= set(version["metrics"])
    assert version["metrics"]["rmse"] > 0
    assert version["metrics"]["r2"] > 0  # better than predicting the mean
    assert len(version["shard_metrics"]) == 3
    for shard_metrics in version["shard_metrics"]:
        assert {"r2", "rmse"} <= set(shard_metrics["metrics"])

    split = _split(spec, shared_stack)
    artifact = shared_http.get(
        f"/v1/models/diabetes-forest/versions/{view['model']['version']}/artifact"
    )
    assert hashlib.sha256(artifact.content).hexdigest() == version["sha256"]
    merged = modelfile.loads(artifact.content)
    predicted = shared_http.post(
        "/v1/models/diabetes-forest/predict", json={"instances": split.X_test[:10].tolist()}
    ).json()["predictions"]
    np.testing.assert_allclose(predicted, merged.predict(split.X_test[:10]))


def test_workers_are_listed(shared_http: httpx.Client) -> None:
    workers = shared_http.get("/v1/workers")
    assert workers.status_code == 200
    records = {w["id"]: w for w in workers.json()}
    assert set(records) == WORKER_IDS
    for record in records.values():
        assert record["pid"] > 0 and record["host"] and record["capacity"] == 1


def test_job_list_is_newest_first_with_state_filter_and_cursor(
    api: TestClient, zk_root: str
) -> None:
    # No workers on this root: states stay exactly where the test puts them.
    ids = [submit(api, iris_spec(model_name=f"list-{i}"))["id"] for i in range(7)]
    for cancelled in (ids[1], ids[4], ids[5]):
        assert api.delete(f"/v1/jobs/{cancelled}").json()["state"] == "cancelled"
    newest_first = list(reversed(ids))

    def collect(limit: int, **params: Any) -> tuple[list[str], int]:
        seen: list[str] = []
        pages = 0
        cursor = None
        while True:
            query = {"limit": limit, **params}
            if cursor is not None:
                query["cursor"] = cursor
            response = api.get("/v1/jobs", params=query)
            assert response.status_code == 200, response.text
            page = response.json()
            pages += 1
            assert len(page["items"]) <= limit
            seen += [j["id"] for j in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                return seen, pages
            assert pages < 20, "pagination does not end"

    everything = api.get("/v1/jobs").json()
    assert [j["id"] for j in everything["items"]] == newest_first
    assert everything["next_cursor"] is None

    seen, pages = collect(3)
    assert seen == newest_first
    assert pages >= 3

    cancelled, _ = collect(2, state="cancelled")
    assert cancelled == [ids[5], ids[4], ids[1]]
    queued, _ = collect(1, state="queued")
    assert queued == [ids[6], ids[3], ids[2], ids[0]]
    assert collect(5, state="succeeded")[0] == []

    first = api.get("/v1/jobs", params={"limit": 2}).json()
    assert [j["id"] for j in first["items"]] == newest_first[:2]
    assert first["next_cursor"] == newest_first[1]
    second = api.get("/v1/jobs", params={"limit": 2, "cursor": first["next_cursor"]}).json()
    assert [j["id"] for j in second["items"]] == newest_first[2:4]


def test_single_worker_takes_jobs_in_priority_then_submission_order(
    api: TestClient, stack: Stack, kazoo: KazooClient, zk_root: str
) -> None:
    order = [("low", 1), ("mid-a", 5), ("high", 9), ("mid-b", 5)]
    ids = {
        name: submit(api, iris_spec(model_name=name, shards=1, priority=priority))["id"]
        for name, priority in order
    }
    worker = stack.start_worker()  # only now: the whole queue is waiting for it
    for job_id in ids.values():
        assert wait_job(api, job_id)["state"] == "succeeded"
    log = worker.output()
    claimed = sorted(ids, key=lambda name: log.index(f"claim {ids[name]}/0 "))
    assert claimed == ["high", "mid-a", "mid-b", "low"]
    assert children(kazoo, f"{zk_root}/queue") == []
