"""Deleting models is an admin's act: a version deleted is no longer served, its file leaves
the store, and its number is never given to another model."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest

from testkit.auth import ADMIN_TOKEN, READ_TOKEN, SUBMIT_TOKEN, bearer
from testkit.stack import Stack, environment, wait_job
from tests.support.stores import BACKENDS, open_store

pytestmark = [
    pytest.mark.integration,
    pytest.mark.parametrize("backend", BACKENDS, indirect=True),
]

PROBLEM = "application/problem+json"


def spec(seed: int) -> dict[str, object]:
    return {
        "model_name": "deletable",
        "algorithm": "random_forest_classifier",
        "params": {"n_estimators": 3, "max_depth": 3},
        "dataset": {"kind": "builtin", "name": "iris"},
        "shards": 2,
        "random_state": seed,
    }


def publish(client: httpx.Client, seed: int) -> int:
    response = client.post("/v1/jobs", json=spec(seed), headers=bearer(SUBMIT_TOKEN))
    assert response.status_code == 202, response.text
    job = wait_job(client, response.json()["id"])
    assert job["state"] == "succeeded", job
    version: int = job["model"]["version"]
    return version


def test_an_admin_deletes_a_version_and_then_the_model(stack: Stack) -> None:
    stack.start_api()
    stack.start_worker()
    store = open_store(stack.settings)
    instance = {"instances": [[5.1, 3.5, 1.4, 0.2]]}
    with httpx.Client(base_url=stack.api_url or "", headers=bearer(READ_TOKEN), timeout=30) as api:
        assert [publish(api, 1), publish(api, 2)] == [1, 2]
        second = api.get("/v1/models/deletable/versions/2").json()
        assert store.size(second["artifact"]) is not None

        for token in (READ_TOKEN, SUBMIT_TOKEN):
            refused = api.delete("/v1/models/deletable/versions/2", headers=bearer(token))
            assert refused.status_code == 403 and refused.headers["content-type"] == PROBLEM
        assert api.post("/v1/models/deletable/predict", json=instance).json()["version"] == 2

        admin = bearer(ADMIN_TOKEN)
        assert api.delete("/v1/models/deletable/versions/2", headers=admin).status_code == 204
        record = api.get("/v1/models/deletable/versions/2").json()
        assert record["deleted_at"] is not None
        assert store.size(second["artifact"]) is None
        for gone in (
            api.post("/v1/models/deletable/predict", json={**instance, "version": 2}),
            api.get("/v1/models/deletable/versions/2/artifact"),
            api.delete("/v1/models/deletable/versions/2", headers=admin),
        ):
            assert gone.status_code == 410 and gone.headers["content-type"] == PROBLEM, gone.text
        # Predictions fall back to the newest version left; the list says so.
        assert api.post("/v1/models/deletable/predict", json=instance).json()["version"] == 1
        (summary,) = [m for m in api.get("/v1/models").json() if m["name"] == "deletable"]
        assert summary == {
            "name": "deletable",
            "latest_version": 1,
            "versions": 2,
            "aliases": {},
            "serving_version": 1,
            "serving": "latest",
        }

        # A new version takes the next number: 2 is never reused for other bytes.
        assert publish(api, 3) == 3
        # The CLI: refused without the admin scope, done with it.
        cli = [sys.executable, "-m", "zootrain.cli", "delete-model", "deletable", "--yes"]
        env = {**environment({}), "ZOOTRAIN_URL": stack.api_url or ""}
        refused = subprocess.run(
            cli, env={**env, "ZOOTRAIN_TOKEN": SUBMIT_TOKEN}, capture_output=True, text=True
        )
        assert refused.returncode == 1 and "'admin'" in refused.stderr, refused.stderr
        done = subprocess.run(
            cli, env={**env, "ZOOTRAIN_TOKEN": ADMIN_TOKEN}, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        assert api.post("/v1/models/deletable/predict", json=instance).status_code == 404
        records = api.get("/v1/models/deletable/versions").json()
        assert [r["deleted_at"] is not None for r in records] == [True, True, True]
        assert all(store.size(r["artifact"]) is None for r in records)
        assert api.delete("/v1/models/nothing-here", headers=admin).status_code == 404
