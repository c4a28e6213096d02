"""Model aliases, gated promotion and predictions on raw rows, against the real job service
(uvicorn), a real ZooKeeper and real workers.

- aliases: set, list, move, delete; two concurrent moves with If-Match: exactly one wins, every
  other is a 409; predict and download by alias; a champion is served by default; a deleted
  version takes its aliases with it; only admin or the model's owner may move them;
- gated promotion (spec.publish): a deliberately worse model (one stump, on noisier data) is
  refused the champion alias and a better one takes it, both scored on the new job's own test
  rows, the decision and both scores on the version;
- raw rows: records and dataframe_split predict exactly what the encoded instances predict;
  unknown categories, missing columns and wrong types are 422s naming the row and the column;
  ``zootrain predict --csv`` sends raw rows for such a model.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from kazoo.client import KazooClient

from testkit.auth import AUTH, OTHER_SUBMIT_TOKEN, SUBMIT_TOKEN, bearer
from testkit.stack import ROOT, Stack, environment, wait_for, wait_job
from tests.integration.conftest import assert_problem, read_json
from tests.support import tables
from tests.support.specs import iris_spec
from tests.support.tables import csv_bytes

pytestmark = pytest.mark.integration
CLI = (sys.executable, "-m", "zootrain.cli")


@pytest.fixture
def service(stack: Stack) -> Iterator[httpx.Client]:
    """The job service and one worker of this test's own stack (its own ZooKeeper root)."""
    stack.start_api()
    stack.start_worker("worker", ZOOTRAIN_WORKER_CONCURRENCY="2")
    assert stack.api_url is not None
    with httpx.Client(headers=AUTH, base_url=stack.api_url, timeout=60) as client:
        yield client


def trained(client: httpx.Client, spec: dict[str, Any], token: str | None = None) -> dict[str, Any]:
    """Submit a job and wait for it to succeed; the published version's record."""
    headers = bearer(token) if token else None
    response = client.post("/v1/jobs", json=spec, headers=headers)
    assert response.status_code == 202, response.text
    done = wait_job(client, response.json()["id"])
    assert done["state"] == "succeeded", done
    model = done["model"]
    record: dict[str, Any] = client.get(
        f"/v1/models/{model['name']}/versions/{model['version']}"
    ).json()
    return record


def test_aliases_move_race_and_serve(stack: Stack, service: httpx.Client, kazoo: KazooClient):
    # Two versions, by the submit token: it owns the model.
    v1 = trained(service, iris_spec("iris-alias", params={"n_estimators": 2}), SUBMIT_TOKEN)
    v2 = trained(service, iris_spec("iris-alias", params={"n_estimators": 4}), SUBMIT_TOKEN)
    assert (v1["version"], v2["version"]) == (1, 2)
    assert v1["owner"] == "test-submit" and v1["aliases"] == []

    model = service.get("/v1/models/iris-alias")
    assert model.status_code == 200, model.text
    view = model.json()
    assert view["aliases"] == {} and view["owner"] == "test-submit"
    assert (view["serving_version"], view["serving"]) == (2, "latest")
    assert model.headers["etag"] == f'"{view["aliases_version"]}"'

    # The owner may move them; another submit token may not; a read token may not either.
    moved = service.put(
        "/v1/models/iris-alias/aliases/champion",
        json={"version": 1},
        headers=bearer(SUBMIT_TOKEN),
    )
    assert moved.status_code == 200, moved.text
    assert moved.json()["aliases"] == {"champion": 1}
    assert (moved.json()["serving_version"], moved.json()["serving"]) == (1, "champion")
    assert moved.json()["aliases_updated_by"] == "test-submit"
    assert_problem(
        service.put(
            "/v1/models/iris-alias/aliases/champion",
            json={"version": 2},
            headers=bearer(OTHER_SUBMIT_TOKEN),
        ),
        403,
        "test-submit",
    )
    # Stored in the model's own znode, readable with zkCli.sh.
    root = stack.settings["ZOOTRAIN_ZK_ROOT"]
    assert read_json(kazoo, f"{root}/models/iris-alias")["aliases"] == {"champion": 1}

    # The champion is served by default; the version and an alias can still be asked for.
    rows = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]
    default = service.post("/v1/models/iris-alias/predict", json={"instances": rows}).json()
    assert (default["version"], default["alias"]) == (1, "champion")
    pinned = service.post("/v1/models/iris-alias/predict", json={"instances": rows, "version": 2})
    assert (pinned.json()["version"], pinned.json()["alias"]) == (2, None)
    service.put("/v1/models/iris-alias/aliases/staging", json={"version": 2}).raise_for_status()
    staged = service.post(
        "/v1/models/iris-alias/predict", json={"instances": rows, "alias": "staging"}
    ).json()
    assert (staged["version"], staged["alias"]) == (2, "staging")
    assert_problem(
        service.post("/v1/models/iris-alias/predict", json={"instances": rows, "alias": "nope"}),
        404,
        "no alias 'nope'",
        "champion, staging",
    )
    download = service.get("/v1/models/iris-alias/artifact", params={"alias": "staging"})
    assert download.status_code == 200 and download.headers["x-model-version"] == "2"
    assert download.headers["x-content-sha256"] == v2["sha256"]
    champion_file = service.get("/v1/models/iris-alias/artifact")
    assert champion_file.headers["x-content-sha256"] == v1["sha256"]
    listed = {v["version"]: v["aliases"] for v in service.get(
        "/v1/models/iris-alias/versions"
    ).json()}  # fmt: skip
    assert listed == {1: ["champion"], 2: ["staging"]}
    assert service.get("/v1/models/iris-alias/versions/2").json()["aliases"] == ["staging"]
    summary = next(m for m in service.get("/v1/models").json() if m["name"] == "iris-alias")
    assert summary["aliases"] == {"champion": 1, "staging": 2}
    assert (summary["serving_version"], summary["latest_version"]) == (1, 2)

    # The race: eight moves of one alias, all sent with the same If-Match, at once.
    etag = service.get("/v1/models/iris-alias").headers["etag"]
    statuses: list[int] = []
    barrier = threading.Barrier(8)

    def move(version: int) -> None:
        with httpx.Client(headers=AUTH, base_url=str(service.base_url), timeout=60) as client:
            barrier.wait()
            answer = client.put(
                "/v1/models/iris-alias/aliases/champion",
                json={"version": version},
                headers={"If-Match": etag},
            )
            statuses.append(answer.status_code)

    threads = [threading.Thread(target=move, args=(1 + n % 2,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(statuses) == [200] + [409] * 7, statuses
    after = service.get("/v1/models/iris-alias").json()
    assert after["aliases_version"] == int(etag.strip('"')) + 1

    # Without If-Match a move is applied on top of whatever landed; a stale one is a 409.
    service.put("/v1/models/iris-alias/aliases/champion", json={"version": 2}).raise_for_status()
    assert_problem(
        service.put(
            "/v1/models/iris-alias/aliases/champion",
            json={"version": 1},
            headers={"If-Match": etag},
        ),
        409,
        "changed since",
    )
    # Bad moves change nothing.
    for path, body, status, words in [
        ("latest", {"version": 1}, 422, "reserved"),
        ("champion", {"version": 9}, 404, "no version 9"),
        ("champion", {"version": "1"}, 422, "version"),
        ("Champion!", {"version": 1}, 422, "alias"),
    ]:
        answer = service.put(f"/v1/models/iris-alias/aliases/{path}", json=body)
        assert_problem(answer, status)
        assert words in answer.text
    assert_problem(
        service.put("/v1/models/nope/aliases/champion", json={"version": 1}), 404, "nope"
    )
    assert service.get("/v1/models/iris-alias").json()["aliases"] == {
        "champion": 2,
        "staging": 2,
    }

    # A deleted version takes its aliases with it: the model serves the latest again.
    assert service.delete("/v1/models/iris-alias/versions/2").status_code == 204
    view = service.get("/v1/models/iris-alias").json()
    assert view["aliases"] == {} and (view["serving_version"], view["serving"]) == (1, "latest")
    assert_problem(
        service.put("/v1/models/iris-alias/aliases/champion", json={"version": 2}),
        422,
        "deleted",
    )
    service.put("/v1/models/iris-alias/aliases/champion", json={"version": 1}).raise_for_status()
    removed = service.delete("/v1/models/iris-alias/aliases/champion")
    assert removed.status_code == 200 and removed.json()["aliases"] == {}
    assert_problem(service.delete("/v1/models/iris-alias/aliases/champion"), 404, "no alias")


def regression_spec(name: str, *, noise: float, **params: Any) -> dict[str, Any]:
    """The same synthetic function (same seed, so the same rows and coefficients), with
    ``noise`` added to its targets."""
    return {
        "model_name": name,
        "algorithm": "random_forest_regressor",
        "params": params,
        "dataset": {
            "kind": "synthetic",
            "task": "regression",
            "n_samples": 1500,
            "n_features": 8,
            "n_informative": 4,
            "noise": noise,
            "random_state": 7,
        },
        "shards": 2,
        "publish": {"alias": "champion", "if_better": True},
    }


def test_gated_promotion(service: httpx.Client) -> None:
    # The first version takes the alias: there is no holder to beat.
    first = trained(service, regression_spec("gated", noise=1.0, n_estimators=2, max_depth=3))
    assert first["promotion"]["promoted"] is True, first["promotion"]
    assert first["promotion"]["holder_version"] is None
    assert first["aliases"] == ["champion"]

    # Deliberately worse: one stump per shard, on noisier data. Refused, with both scores
    # measured on its own job's test rows.
    worse = trained(service, regression_spec("gated", noise=40.0, n_estimators=1, max_depth=1))
    decision = worse["promotion"]
    print(f"\nworse: {decision['reason']}")
    assert decision["promoted"] is False, decision
    assert decision["metric"] == "r2" and decision["holder_version"] == first["version"]
    assert decision["score"] < decision["holder_score"], decision
    assert decision["score"] == pytest.approx(worse["metrics"]["r2"])
    assert worse["aliases"] == []
    model = service.get("/v1/models/gated").json()
    assert model["aliases"] == {"champion": first["version"]}
    assert model["serving_version"] == first["version"]
    served = service.post("/v1/models/gated/predict", json={"instances": [[0.0] * 8]}).json()
    assert served["version"] == first["version"]

    # Better: a real forest on the clean data. Taken, atomically with its publish.
    better = trained(
        service, regression_spec("gated", noise=1.0, n_estimators=30, min_samples_leaf=2)
    )
    decision = better["promotion"]
    print(f"better: {decision['reason']}")
    assert decision["promoted"] is True, decision
    assert decision["holder_version"] == first["version"]
    assert decision["score"] >= decision["holder_score"]
    assert better["aliases"] == ["champion"]
    assert service.get("/v1/models/gated").json()["serving_version"] == better["version"]

    # if_better false: the alias is taken in any case.
    forced = trained(
        service,
        {
            **regression_spec("gated", noise=40.0, n_estimators=1, max_depth=1),
            "publish": {"alias": "staging"},
        },
    )
    assert forced["promotion"]["promoted"] is True and forced["aliases"] == ["staging"]
    # A spec naming a reserved or malformed alias is refused at submit.
    for publish in ({"alias": "latest"}, {"alias": "Bad Alias"}, {"alias": "x", "when": 1}):
        spec = {**regression_spec("gated", noise=1.0), "publish": publish}
        assert_problem(service.post("/v1/jobs", json=spec), 422, "publish")


def flowers_job(dataset_id: str) -> dict[str, Any]:
    return {
        "model_name": "flower-raw",
        "algorithm": "random_forest_classifier",
        "params": {"n_estimators": 10, "max_depth": 4},
        "dataset": {
            "kind": "uploaded",
            "id": dataset_id,
            "target": "species",
            "features": ["length", "width", "color", "wild"],
        },
        "shards": 2,
    }


def test_raw_rows_predict_like_encoded_rows(stack: Stack, service: httpx.Client) -> None:
    df = tables.flowers(300, 0, rounded=True)
    upload = service.post("/v1/datasets", files={"file": ("flowers.csv", csv_bytes(df))})
    assert upload.status_code == 201, upload.text
    version = trained(service, flowers_job(upload.json()["id"]))
    assert version["input_schema"] == [
        {"name": "length", "type": "number", "categories": None},
        {"name": "width", "type": "number", "categories": None},
        {"name": "color", "type": "category", "categories": ["blue", "red", "white"]},
        {"name": "wild", "type": "boolean", "categories": None},
    ]
    assert version["encoding"]["encoded_features"] == [
        "length", "width", "color=blue", "color=red", "color=white", "wild"
    ]  # fmt: skip

    # Every row of the table, three ways: encoded by hand, records, and dataframe_split.
    sample = df.sample(60, random_state=1)
    levels = ["blue", "red", "white"]
    instances = [
        [r.length, r.width, *(float(r.color == c) for c in levels), float(r.wild)]
        for r in sample.itertuples()
    ]
    records = [
        {"color": r.color, "wild": bool(r.wild), "length": r.length, "width": r.width, "id": 3}
        for r in sample.itertuples()
    ]
    columns = ["species", "length", "width", "wild", "color"]
    split = {
        "columns": columns,
        "data": [
            [r.species, r.length, r.width, bool(r.wild), r.color] for r in sample.itertuples()
        ],
    }
    predict = "/v1/models/flower-raw/predict"
    encoded = service.post(predict, json={"instances": instances})
    assert encoded.status_code == 200, encoded.text
    by_records = service.post(predict, json={"records": records})
    assert by_records.status_code == 200, by_records.text
    by_split = service.post(predict, json={"dataframe_split": split})
    assert by_split.status_code == 200, by_split.text
    expected = encoded.json()["predictions"]
    assert by_records.json()["predictions"] == expected == by_split.json()["predictions"]
    assert len(set(expected)) == 3  # not one constant answer

    good = records[0]
    for row, status, words in [
        ({**good, "color": "green"}, 422, ["records[1], column 'color'", "unknown category"]),
        ({k: v for k, v in good.items() if k != "width"}, 422, ["records[1], column 'width'"]),
        ({**good, "length": "long"}, 422, ["records[1], column 'length'", "expects a number"]),
        ({**good, "wild": "yes"}, 422, ["records[1], column 'wild'", "true or false"]),
    ]:
        assert_problem(service.post(predict, json={"records": [good, row]}), status, *words)
    bad_split = {**split, "data": [split["data"][0], ["setosa", 1.0, 0.5, True, "mauve"]]}
    assert_problem(
        service.post(predict, json={"dataframe_split": bad_split}),
        422,
        "dataframe_split.data[1], column 'color'",
        "'mauve'",
    )
    assert_problem(
        service.post(predict, json={"records": [good], "instances": instances[:1]}),
        422,
        "exactly one",
    )

    # A model trained on a builtin dataset has no input schema: instances only.
    trained(service, iris_spec("iris-raw"))
    assert_problem(
        service.post("/v1/models/iris-raw/predict", json={"records": [{"a": 1.0}]}),
        422,
        "no input schema",
        "instances",
    )

    # The command sends a CSV with its header as raw rows, typed by the input schema.
    text = sample[["species", "color", "length", "width", "wild"]].to_csv(index=False)
    cli = subprocess.run(
        [*CLI, "predict", "flower-raw", "--csv", "-", "--json", "--url", str(service.base_url)],
        cwd=ROOT,
        env=environment({"ZOOTRAIN_TOKEN": SUBMIT_TOKEN}),
        input=text,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert cli.returncode == 0, cli.stderr
    assert httpx.Response(200, content=cli.stdout).json()["predictions"] == expected


def test_an_aliased_version_is_never_trimmed(stack: Stack, kazoo: KazooClient) -> None:
    """ZOOTRAIN_MAX_VERSIONS trims the oldest versions, but not one an alias holds: a champion
    outlives the retrains it beat."""
    stack.start_api()
    stack.start_worker("worker", ZOOTRAIN_MAX_VERSIONS="2", ZOOTRAIN_HOUSEKEEPING_INTERVAL="0.5")
    model = f"{stack.settings['ZOOTRAIN_ZK_ROOT']}/models/kept"
    with httpx.Client(headers=AUTH, base_url=str(stack.api_url), timeout=60) as client:
        trained(client, iris_spec("kept"))
        client.put("/v1/models/kept/aliases/champion", json={"version": 1}).raise_for_status()
        for _ in range(3):
            trained(client, iris_spec("kept"))
        # Four versions, a cap of two: version 2 goes, version 1 stays for its alias. The pass
        # that deleted version 2 judged version 1 first (oldest first).
        wait_for(lambda: not kazoo.exists(f"{model}/v-0000000001"), 60, "version 2 to go")
        assert sorted(kazoo.get_children(model)) == ["v-0000000000", "v-0000000002", "v-0000000003"]
        served = client.post("/v1/models/kept/predict", json={"instances": [[5, 3, 1, 0]]})
        assert (served.json()["version"], served.json()["alias"]) == (1, "champion")
