"""Model files: a tampered file and a file holding an untrusted type are refused, nothing run."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import httpx
import pytest
import skops.io
from kazoo.client import KazooClient
from sklearn.preprocessing import FunctionTransformer

from testkit.auth import AUTH
from testkit.stack import Stack, wait_job
from tests.support.stores import BACKENDS, corrupt, plant

pytestmark = [
    pytest.mark.integration,
    pytest.mark.parametrize("backend", BACKENDS, indirect=True),
]


def _publish(api: httpx.Client, name: str) -> dict[str, object]:
    submitted = api.post(
        "/v1/jobs",
        json={
            "model_name": name,
            "algorithm": "random_forest_classifier",
            "params": {"n_estimators": 3},
            "dataset": {"kind": "builtin", "name": "iris"},
            "shards": 2,
        },
    )
    assert submitted.status_code == 202, submitted.text
    assert wait_job(api, submitted.json()["id"])["state"] == "succeeded"
    version: dict[str, object] = api.get(f"/v1/models/{name}/versions/1").json()
    return version


def test_tampered_and_untrusted_model_files_are_refused(
    stack: Stack, kazoo: KazooClient, zk_root: str, tmp_path: Path
) -> None:
    stack.start_api()
    stack.start_worker()
    row = {"instances": [[5.1, 3.5, 1.4, 0.2]]}
    with httpx.Client(headers=AUTH, base_url=stack.api_url or "", timeout=30) as api:
        # 1. Flip bytes of a published model: its sha256 no longer matches the record.
        tampered = _publish(api, "tampered")
        corrupt(stack.settings, str(tampered["artifact"]))
        response = api.post("/v1/models/tampered/predict", json=row)
        assert response.status_code == 500
        assert response.headers["content-type"] == "application/problem+json"
        assert "sha256" in response.json()["detail"]
        # The download streams: its status is sent before the bytes are checked, so a wrong
        # file is refused by cutting the body short (the last chunk is never sent).
        with pytest.raises(httpx.RemoteProtocolError):
            api.get("/v1/models/tampered/versions/1/artifact")

        # 2. A file whose checksum matches but which would construct an untrusted type (a
        #    function that a load would call): someone with write access to the store and to
        #    ZooKeeper planted it. Loading it must refuse, and run nothing.
        _publish(api, "planted")
        marker = tmp_path / "executed"
        evil = FunctionTransformer(func=Path.touch, kw_args={"self": marker})
        payload = skops.io.dumps(evil)
        digest = hashlib.sha256(payload).hexdigest()
        plant(stack.settings, f"models/{digest}.skops", payload)
        node = f"{zk_root}/models/planted/v-0000000000"
        record = json.loads(kazoo.get(node)[0])
        record.update(artifact=f"models/{digest}.skops", sha256=digest)
        kazoo.set(node, json.dumps(record).encode())
        response = api.post("/v1/models/planted/predict", json=row)
        assert response.status_code == 500
        assert response.headers["content-type"] == "application/problem+json"
        assert "untrusted" in response.json()["detail"].lower()
        assert not marker.exists()
