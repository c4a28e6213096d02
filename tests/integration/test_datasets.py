"""Uploaded datasets against the real job service (uvicorn), real ZooKeeper and real workers:
upload, list, show, delete; bad files and bad jobs refused with nothing written; classification
and regression jobs on uploaded CSV and Parquet trained, published and served."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from kazoo.client import KazooClient

from testkit.auth import AUTH
from testkit.stack import Stack, descendants, wait_job
from tests.integration.conftest import assert_problem, children, read_json
from tests.support import tables
from tests.support.stores import BACKENDS, keys, open_store
from tests.support.tables import csv_bytes, parquet_bytes

# Every test here runs against both artifact stores: a directory and S3 (moto_server).
pytestmark = [
    pytest.mark.integration,
    pytest.mark.parametrize("backend", BACKENDS, indirect=True),
]

UPLOAD_LIMIT = 64 * 1024
MAX_COLUMNS = 30


def flowers(n: int = 150, seed: int = 0) -> pd.DataFrame:
    return tables.flowers(n, seed, rounded=True)


@pytest.fixture
def service(stack: Stack) -> Iterator[httpx.Client]:
    """The job service with a small upload limit and column ceiling (no workers yet)."""
    stack.settings["ZOOTRAIN_MAX_UPLOAD_BYTES"] = str(UPLOAD_LIMIT)
    stack.settings["ZOOTRAIN_MAX_DATASET_COLUMNS"] = str(MAX_COLUMNS)
    stack.start_api()
    assert stack.api_url is not None
    with httpx.Client(headers=AUTH, base_url=stack.api_url, timeout=60) as client:
        yield client


def upload(
    client: httpx.Client, data: bytes, filename: str = "flowers.csv", **form: str
) -> httpx.Response:
    return client.post("/v1/datasets", files={"file": (filename, data)}, data=form)


def uploaded(client: httpx.Client, data: bytes, filename: str, **form: str) -> dict[str, Any]:
    response = upload(client, data, filename, **form)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    assert response.headers["location"] == f"/v1/datasets/{body['id']}"
    return body


def root(stack: Stack) -> str:
    return stack.settings["ZOOTRAIN_ZK_ROOT"]


def store_files(stack: Stack) -> list[str]:
    """Every object under datasets/ in the store."""
    return keys(stack.settings, "datasets")


def stored_keys(stack: Stack, *datasets: dict[str, Any]) -> list[str]:
    """The objects the datasets' manifests name, and the manifests."""
    store = open_store(stack.settings)
    found = set()
    for dataset in datasets:
        manifest = json.loads(store.get(dataset["artifact"], dataset["artifact_sha256"]))
        found |= {dataset["artifact"], manifest["original"]["key"], manifest["shuffled"]["key"]}
    return sorted(found)


def job_spec(dataset: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "model_name": "flowers",
        "algorithm": "random_forest_classifier",
        "params": {"n_estimators": 5, "max_depth": 6},
        "dataset": {"kind": "uploaded", **dataset},
        "shards": 2,
    }
    spec.update(overrides)
    return spec


def test_upload_list_show_and_delete(
    stack: Stack, service: httpx.Client, kazoo: KazooClient
) -> None:
    df = flowers()
    csv, parquet = csv_bytes(df), parquet_bytes(df)
    first = uploaded(service, csv, "flowers.csv", name="Flowers")
    assert first["name"] == "Flowers" and first["format"] == "csv"
    assert first["sha256"] == hashlib.sha256(csv).hexdigest()
    assert first["size"] == len(csv) and first["rows"] == 150
    # Stored as a manifest of Parquet files, named by its own sha256.
    assert first["artifact"] == f"datasets/{first['artifact_sha256']}.json"
    columns = {c["name"]: c for c in first["columns"]}
    assert list(columns) == list(df.columns)
    assert (columns["length"]["kind"], columns["length"]["numeric"]) == ("float", True)
    assert (columns["wild"]["kind"], columns["wild"]["numeric"]) == ("boolean", True)
    color = columns["color"]
    assert (color["numeric"], color["categories"]) == (False, 3)
    assert color["levels"] == ["blue", "red", "white"]
    assert all(c["non_null"] == 150 for c in first["columns"])

    second = uploaded(service, parquet, "flowers.parquet")
    assert (second["format"], second["name"], second["rows"]) == ("parquet", "flowers.parquet", 150)
    assert second["sha256"] == hashlib.sha256(parquet).hexdigest()
    assert second["artifact"] != first["artifact"]
    assert [c["name"] for c in second["columns"]] == list(df.columns)

    # The same bytes again: a second record sharing the first one's file.
    third = uploaded(service, csv, "copy.csv")
    assert third["artifact"] == first["artifact"] and third["id"] != first["id"]

    # ZooKeeper holds the records; the store holds one file per content, nothing temporary.
    assert children(kazoo, f"{root(stack)}/datasets") == sorted(
        [first["id"], second["id"], third["id"]]
    )
    assert read_json(kazoo, f"{root(stack)}/datasets/{first['id']}")["sha256"] == first["sha256"]
    assert store_files(stack) == stored_keys(stack, first, second)
    assert len(store_files(stack)) >= 5  # two manifests, at least three Parquet files

    listing = service.get("/v1/datasets").json()
    assert [d["id"] for d in listing["items"]] == [third["id"], second["id"], first["id"]]
    assert listing["items"][0]["n_columns"] == 6 and "columns" not in listing["items"][0]
    page = service.get("/v1/datasets", params={"limit": 2}).json()
    assert len(page["items"]) == 2 and page["next_cursor"] == second["id"]
    rest = service.get("/v1/datasets", params={"cursor": page["next_cursor"]}).json()
    assert [d["id"] for d in rest["items"]] == [first["id"]] and rest["next_cursor"] is None
    assert service.get(f"/v1/datasets/{second['id']}").json() == second

    # Deleting one of two records with the same content keeps the file; the last one takes it.
    assert service.delete(f"/v1/datasets/{first['id']}").status_code == 204
    assert store_files(stack) == stored_keys(stack, first, second)
    assert service.delete(f"/v1/datasets/{third['id']}").status_code == 204
    assert service.delete(f"/v1/datasets/{second['id']}").status_code == 204
    assert store_files(stack) == []
    assert children(kazoo, f"{root(stack)}/datasets") == []
    assert_problem(service.get(f"/v1/datasets/{first['id']}"), 404, first["id"])
    assert_problem(service.delete(f"/v1/datasets/{first['id']}"), 404, first["id"])
    assert_problem(service.get("/v1/datasets/not-an-id"), 422)
    assert service.get("/v1/datasets").json() == {"items": [], "next_cursor": None}


def _chunked_over_limit() -> Iterator[bytes]:
    """A multipart body without Content-Length whose file crosses the limit mid-stream."""
    yield (
        b'--zb\r\nContent-Disposition: form-data; name="file"; filename="big.csv"\r\n'
        b"Content-Type: text/csv\r\n\r\na,b\n"
    )
    for _ in range(UPLOAD_LIMIT // 4096 + 2):
        yield b"1,2\n" * 1024
    yield b"\r\n--zb--\r\n"


def test_bad_files_are_refused_and_leave_nothing_behind(
    stack: Stack, service: httpx.Client, kazoo: KazooClient
) -> None:
    garbage = bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8))
    assert_problem(upload(service, garbage, "data.csv"), (415, 422), "file")
    assert_problem(upload(service, garbage, "data.parquet"), 422, "Parquet")
    assert_problem(upload(service, b"", "empty.csv"), 422, "empty")
    assert_problem(upload(service, b"\n\n\n", "blank.csv"), 422, "no columns")
    assert_problem(upload(service, b"a,b,c\n", "header.csv"), 422, "no rows")
    assert_problem(upload(service, b"a,a\n1,2\n", "dupe.csv"), 422, "twice")
    assert_problem(upload(service, b"PAR1" + garbage, "x.parquet"), 422, "PARQUET")
    assert_problem(upload(service, b"PK\x03\x04" + garbage, "book.xlsx"), 415, "ZIP")
    assert_problem(upload(service, b"a,b\n1,2\n", "data.json"), 415, ".json")
    wide = pd.DataFrame({f"c{i}": [1, 2] for i in range(MAX_COLUMNS + 1)})
    assert_problem(
        upload(service, csv_bytes(wide), "wide.csv"), 422, "ZOOTRAIN_MAX_DATASET_COLUMNS"
    )
    # Not a multipart upload, no file part, unknown fields.
    assert_problem(service.post("/v1/datasets", json={"file": "a,b"}), 415, "multipart")
    assert_problem(service.post("/v1/datasets", data={"name": "x"}, files={}), (415, 422))
    assert_problem(
        service.post("/v1/datasets", files={"data": ("a.csv", b"a\n1\n")}), 422, "'data'"
    )
    # Over the limit: refused from Content-Length, and while streaming without one.
    big = csv_bytes(pd.DataFrame({"x": np.arange(20_000)}))
    assert len(big) > UPLOAD_LIMIT
    assert_problem(upload(service, big), 413, str(UPLOAD_LIMIT), "ZOOTRAIN_MAX_UPLOAD_BYTES")
    streamed = service.post(
        "/v1/datasets",
        content=_chunked_over_limit(),
        headers={"Content-Type": "multipart/form-data; boundary=zb"},
    )
    assert_problem(streamed, 413, str(UPLOAD_LIMIT))

    assert children(kazoo, f"{root(stack)}/datasets") == []
    assert store_files(stack) == []
    # The ordinary body limit still holds for everything else.
    assert_problem(service.post("/v1/jobs", content=b"{" * 2_000_000), 413)


def test_bad_jobs_on_uploaded_data_are_refused_naming_the_field(
    stack: Stack, service: httpx.Client, kazoo: KazooClient
) -> None:
    df = flowers(60)
    df["comment"] = [f"note {i}" for i in range(60)]  # text with 60 distinct values
    df["gappy"] = df["length"]
    df.loc[7, "gappy"] = np.nan
    dataset = uploaded(service, csv_bytes(df), "flowers.csv")
    ds = {"id": dataset["id"], "target": "species"}
    good_features = ["length", "width", "wild", "color"]
    cases: list[tuple[dict[str, Any], str, str]] = [
        (job_spec({**ds, "target": "nope", "features": good_features}), "dataset.target", "nope"),
        (job_spec(ds), "dataset.features", "'comment'"),
        (job_spec({**ds, "features": ["length", "gappy"]}), "dataset.features", "'gappy'"),
        (job_spec({**ds, "features": ["length", "ghost"]}), "dataset.features", "'ghost'"),
        (
            job_spec({**ds, "features": good_features}, algorithm="random_forest_regressor"),
            "dataset.target",
            "numeric target",
        ),
        (job_spec({**ds, "features": good_features}, shards=49), "shards", "48 training rows"),
        # Parameters that count the encoded features or a fit's rows, from the record (a
        # built-in dataset's are checked from its known shape): each failed in every shard.
        (
            job_spec({**ds, "features": good_features}, params={"max_features": 200}),
            "max_features",
            "features",
        ),
        (
            job_spec({**ds, "features": good_features}, params={"monotonic_cst": [1]}),
            "monotonic_cst",
            "one value per feature",
        ),
        (  # six encoded features (color one-hot), and species has 3 classes
            job_spec({**ds, "features": good_features}, params={"monotonic_cst": [1] + [0] * 5}),
            "monotonic_cst",
            "3 classes",
        ),
        (
            job_spec(
                {**ds, "features": good_features}, algorithm="kmeans", params={"n_clusters": 25}
            ),
            "n_clusters",
            "24 rows",
        ),
        (
            job_spec(
                {**ds, "features": good_features},
                algorithm="kmeans",
                params={},
                kind="search",
                search={"param_grid": {"n_clusters": [2, 40]}, "cv": 4},
            ),
            "search",
            "36 rows",
        ),
        (
            job_spec({**ds, "id": "f" * 20, "features": good_features}),
            "dataset.id",
            "f" * 20,
        ),
        (
            job_spec(
                {**ds, "target": "price", "features": good_features},
                partition="stratified",
                algorithm="random_forest_regressor",
            ),
            "partition",
            "stratified",
        ),
    ]
    for spec, field, needle in cases:
        assert_problem(service.post("/v1/jobs", json=spec), 422, field, needle)
    # Pure validation, before ZooKeeper is asked anything.
    assert_problem(
        service.post("/v1/jobs", json=job_spec({**ds, "features": ["species"]})), 422, "target"
    )
    assert children(kazoo, f"{root(stack)}/jobs") == []
    assert children(kazoo, f"{root(stack)}/queue") == []
    # The same dataset with a good feature list is accepted.
    accepted = service.post("/v1/jobs", json=job_spec({**ds, "features": good_features}))
    assert accepted.status_code == 202, accepted.text


def test_jobs_train_on_uploaded_data_and_serve_predictions(
    stack: Stack, service: httpx.Client, kazoo: KazooClient
) -> None:
    df = flowers(300)
    classes_csv = uploaded(service, csv_bytes(df), "flowers.csv")
    prices_parquet = uploaded(service, parquet_bytes(df), "flowers.parquet")

    classify = service.post(
        "/v1/jobs",
        json=job_spec(
            {
                "id": classes_csv["id"],
                "target": "species",
                "features": ["length", "width", "color", "wild"],
            },
            model_name="flower-species",
            shards=3,
        ),
    )
    assert classify.status_code == 202, classify.text
    classify_job = classify.json()
    source = classify_job["dataset_source"]
    assert source["sha256"] == classes_csv["sha256"] and source["task"] == "classification"
    assert source["plan"]["encoded_features"] == [
        "length",
        "width",
        "color=blue",
        "color=red",
        "color=white",
        "wild",
    ]
    stored = read_json(kazoo, f"{root(stack)}/jobs/{classify_job['id']}")
    assert stored["dataset_source"] == source

    regress = service.post(
        "/v1/jobs",
        json=job_spec(
            {"id": prices_parquet["id"], "target": "price"},
            model_name="flower-price",
            algorithm="random_forest_regressor",
        ),
    )
    assert regress.status_code == 202, regress.text
    regress_job = regress.json()
    assert regress_job["dataset_source"]["task"] == "regression"
    width = len(regress_job["dataset_source"]["plan"]["encoded_features"])
    assert width == 9  # length, width, wild, color x3, species x3 (file order)

    # No worker yet: the jobs are queued, so their datasets cannot go.
    assert_problem(service.delete(f"/v1/datasets/{classes_csv['id']}"), 409, classify_job["id"])

    stack.start_worker("worker", ZOOTRAIN_WORKER_CONCURRENCY="2")
    done = wait_job(service, classify_job["id"])
    assert done["state"] == "succeeded", done
    assert done["dataset_source"] == source  # never changed by the workers
    assert all(s["state"] == "done" for s in done["shards"])
    version = service.get("/v1/models/flower-species/versions/1").json()
    assert version["n_features"] == 6
    assert version["classes"] == ["setosa", "versicolor", "virginica"]
    assert version["metrics"]["accuracy"] > 0.8

    # predict takes the encoded vector, in plan.encoded_features order.
    rows = [[1.0, 0.5, 0, 1, 0, 1], [5.1, 2.4, 1, 0, 0, 0]]
    predicted = service.post("/v1/models/flower-species/predict", json={"instances": rows})
    assert predicted.status_code == 200, predicted.text
    assert predicted.json()["predictions"] == ["setosa", "virginica"]
    assert_problem(
        service.post("/v1/models/flower-species/predict", json={"instances": [[1.0, 0.5]]}),
        422,
        "expects 6",
    )

    done = wait_job(service, regress_job["id"])
    assert done["state"] == "succeeded", done
    version = service.get("/v1/models/flower-price/versions/1").json()
    assert version["n_features"] == width and version["metrics"]["r2"] > 0.5
    row = [5.0, 2.5, 0, 0, 1, 0, 0, 0, 1]
    price = service.post("/v1/models/flower-price/predict", json={"instances": [row]}).json()
    assert 35 < price["predictions"][0] < 65

    # Finished: both datasets can go, and their files with them.
    for dataset in (classes_csv, prices_parquet):
        assert service.delete(f"/v1/datasets/{dataset['id']}").status_code == 204
    assert store_files(stack) == []


def test_uploads_are_parsed_in_a_child_of_the_job_service(
    stack: Stack, service: httpx.Client
) -> None:
    api = stack.processes[0]
    # Before the first upload: the prediction processes (app/pool.py) and their forkserver.
    before = descendants(api.popen.pid)
    uploaded(service, csv_bytes(flowers()), "flowers.csv")
    # The table-checking child (app/upload_check.py) holds pandas' memory peak.
    assert descendants(api.popen.pid) - before
