"""The predict operation's direct handler (app.predict_route) answers exactly as FastAPI's
generic one: the real job service in-process, on a real ZooKeeper and store, a real forest.

Every request is sent twice: as ``application/json``, which the direct handler serves, and as
``application/vnd.api+json``, a JSON type it leaves to FastAPI's generic handler (which parses
any ``+json`` type as JSON). Status, content type and body must be the same; which handler
made the answer is checked too, so the comparison cannot pass by both going the same way."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from kazoo.client import KazooClient
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier

import app.predict_route
from testkit.auth import READ_TOKEN, bearer
from tests.integration.conftest import api_client
from zootrain.artifacts import ArtifactStore
from zootrain.ml import modelfile
from zootrain.paths import Paths
from zootrain.records import ModelRecord, VersionRecord
from zootrain.settings import Settings

pytestmark = pytest.mark.integration

NAME = "direct"
ROW = [5.1, 3.5, 1.4, 0.2]
GENERIC = "application/vnd.api+json"


@pytest.fixture
def served(api_settings: Settings, kazoo: KazooClient) -> Iterator[TestClient]:
    x, y = load_iris(return_X_y=True)
    data = modelfile.dumps(RandomForestClassifier(n_estimators=3, random_state=0).fit(x, y))
    uri, sha256 = ArtifactStore(api_settings.artifacts).put(data)
    paths = Paths(api_settings.zk_root)
    kazoo.ensure_path(paths.models)
    kazoo.create(paths.model(NAME), ModelRecord(aliases={"champion": 1}).dump())
    for number in (1, 2):
        record = VersionRecord(
            model=NAME,
            version=number,
            job_id=f"job-{number}",
            algorithm="random_forest_classifier",
            task="classification",
            shards=1,
            artifact=uri,
            sha256=sha256,
            size=len(data),
            n_features=4,
            classes=[0, 1, 2],
            metrics={},
            shard_metrics=[],
            train_rows=1,
            test_rows=1,
            created_at=datetime.now(UTC),
        )
        kazoo.create(paths.version(NAME, number), record.dump())
    with api_client(api_settings, kazoo) as client:
        yield client


class Taken:
    """Counts the requests the direct handler answered (a wrapper around it)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        original = app.predict_route.direct

        async def counting(request: Any) -> Any:
            answer = await original(request)
            self.count += answer is not None
            return answer

        monkeypatch.setattr(app.predict_route, "direct", counting)


def both(
    client: TestClient, path: str, body: bytes | str, headers: dict[str, str] | None = None
) -> tuple[Any, Any]:
    content = body.encode() if isinstance(body, str) else body
    answers = []
    for kind in ("application/json", GENERIC):
        answers.append(
            client.post(path, content=content, headers={**(headers or {}), "content-type": kind})
        )
    return answers[0], answers[1]


def same(direct: Any, generic: Any) -> None:
    assert direct.status_code == generic.status_code, (direct.text, generic.text)
    assert direct.headers["content-type"] == generic.headers["content-type"]
    assert direct.content == generic.content
    assert direct.headers.get("x-content-type-options") == "nosniff"


PREDICT = f"/v1/models/{NAME}/predict"

SUCCESSES: list[dict[str, Any]] = [
    {"instances": [ROW]},
    {"instances": [ROW, [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]},
    {"instances": [ROW], "version": 2},
    {"instances": [ROW], "alias": "champion"},
    {"instances": [[5, 3, 1, 0]]},  # integers are numbers too
]


def test_a_prediction_answers_the_same_bytes_by_either_handler(
    served: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    taken = Taken(monkeypatch)
    for body in SUCCESSES:
        direct, generic = both(served, PREDICT, json.dumps(body))
        assert direct.status_code == 200, (body, direct.text)
        same(direct, generic)
        assert direct.json()["model"] == NAME
        assert len(direct.json()["predictions"]) == len(body["instances"])
    # The direct handler made every first answer, and none of the second ones.
    assert taken.count == len(SUCCESSES)
    # The same principal for both: a read token is enough.
    direct, generic = both(served, PREDICT, json.dumps(SUCCESSES[0]), bearer(READ_TOKEN))
    assert direct.status_code == 200, direct.text
    same(direct, generic)


PROBLEMS: list[tuple[str, str | bytes, dict[str, str] | None, int]] = [
    ("unknown model", json.dumps({"instances": [ROW]}), None, 404),
    ("unknown version", json.dumps({"instances": [ROW], "version": 9}), None, 404),
    ("unknown alias", json.dumps({"instances": [ROW], "alias": "nope"}), None, 404),
    ("wrong width", json.dumps({"instances": [ROW, [1.0, 2.0]]}), None, 422),
    ("past float32", json.dumps({"instances": [[1e300, 1, 1, 1]]}), None, 422),
    ("no raw-row schema", json.dumps({"records": [{"a": 1}]}), None, 422),
    ("empty instances", json.dumps({"instances": []}), None, 422),
    ("a string value", json.dumps({"instances": [["a", 1, 2, 3]]}), None, 422),
    ("an unknown field", json.dumps({"instances": [ROW], "extra": 1}), None, 422),
    ("version and alias", json.dumps({"instances": [ROW], "version": 1, "alias": "a"}), None, 422),
    ("NaN", '{"instances": [[NaN, 1, 2, 3]]}', None, 422),
    ("malformed JSON", '{"instances": [[1, 2', None, 400),
    ("an empty body", b"", None, 422),
    ("a JSON array", "[1, 2]", None, 422),
    ("no token", json.dumps({"instances": [ROW]}), {"authorization": ""}, 401),
    ("a bad token", json.dumps({"instances": [ROW]}), bearer("zt_nobody-" + "0" * 32), 401),
    ("malformed JSON and no token", "{", {"authorization": ""}, 400),
]


def test_a_refused_prediction_answers_the_same_problem_by_either_handler(
    served: TestClient,
) -> None:
    for what, body, headers, status in PROBLEMS:
        path = "/v1/models/nowhere/predict" if what == "unknown model" else PREDICT
        direct, generic = both(served, path, body, headers)
        assert direct.status_code == status, (what, direct.text)
        assert direct.headers["content-type"] == "application/problem+json", what
        same(direct, generic)


def test_a_model_name_the_path_refuses_is_left_to_fastapi(
    served: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    taken = Taken(monkeypatch)
    direct, generic = both(
        served, "/v1/models/Bad%20Name/predict", json.dumps({"instances": [ROW]})
    )
    assert direct.status_code == 422, direct.text
    same(direct, generic)
    assert taken.count == 0


def test_a_well_formed_prediction_takes_the_lane_past_the_middlewares(
    served: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """app.predict_route.PredictLane answers a JSON body of a declared length before the app's
    middlewares (their ZooKeeper deadline is never entered); a body without a declared length
    (chunked) still takes the generic path, to FastAPI's route, whose direct handler answers
    the same bytes."""
    import app.limits

    entered = 0
    original = app.limits.request_deadline

    def counting(seconds: float | None) -> Any:
        nonlocal entered
        entered += 1
        return original(seconds)

    monkeypatch.setattr(app.limits, "request_deadline", counting)
    taken = Taken(monkeypatch)
    body = json.dumps(SUCCESSES[1]).encode()
    laned = served.post(PREDICT, content=body, headers={"content-type": "application/json"})
    assert laned.status_code == 200, laned.text
    assert (entered, taken.count) == (0, 1)  # the lane, which calls the direct handler

    def chunks() -> Iterator[bytes]:
        yield body[:10]
        yield body[10:]

    routed = served.post(PREDICT, content=chunks(), headers={"content-type": "application/json"})
    assert "content-length" not in routed.request.headers
    assert (entered, taken.count) == (1, 2)  # the middlewares, then the route's direct handler
    same(laned, routed)
    # Refused in the lane (the model is unknown): the app's own problem, nosniff included.
    direct, generic = both(served, "/v1/models/nowhere/predict", json.dumps({"instances": [ROW]}))
    assert entered == 2  # only the generic one went through the middlewares
    assert direct.status_code == 404
    same(direct, generic)
