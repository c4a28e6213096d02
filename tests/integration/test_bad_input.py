"""Bad input: a clear 4xx problem+json naming what is wrong, and nothing written to ZooKeeper."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from kazoo.client import KazooClient

from testkit.auth import AUTH
from testkit.stack import wait_job
from testkit.zkserver import ZooKeeperCluster
from tests.integration.conftest import (
    api_client,
    assert_problem,
    children,
    idempotency_keys,
    iris_spec,
    settings_from_env,
    submit,
)
from zootrain.settings import Settings

pytestmark = pytest.mark.integration

MAX_BYTES = 4096


@dataclass
class Service:
    client: TestClient
    kazoo: KazooClient
    root: str

    def assert_nothing_written(self) -> None:
        _assert_nothing_written(self.kazoo, self.root)


@pytest.fixture(scope="module")
def small(
    zookeeper: ZooKeeperCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    """One in-process job service (body limit MAX_BYTES) on its own root for every bad request
    below: they all must leave that root empty, so sharing it makes the check cumulative."""
    root = f"/test-bad-{uuid.uuid4().hex[:12]}"
    env = {
        "ZOOTRAIN_ZK_HOSTS": zookeeper.hosts,
        "ZOOTRAIN_ZK_ROOT": root,
        "ZOOTRAIN_ARTIFACTS": str(tmp_path_factory.mktemp("bad-input") / "artifacts"),
        "ZOOTRAIN_ZK_SESSION_TIMEOUT": "4",
    }
    kazoo = KazooClient(hosts=zookeeper.hosts)
    kazoo.start(30)
    try:
        settings = settings_from_env(env, max_request_bytes=MAX_BYTES)
        with api_client(settings, kazoo) as client:
            yield Service(client, kazoo, root)
    finally:
        kazoo.stop()
        kazoo.close()


def _with(**changes: Any) -> dict[str, Any]:
    return iris_spec(**changes)


def _params(**params: Any) -> dict[str, Any]:
    return iris_spec(params=params)


# (id, body, expected status, substrings the detail must contain)
BAD_BODIES: list[tuple[str, Any, int, tuple[str, ...]]] = [
    ("shards-not-int", _with(shards="many"), 422, ("shards",)),
    ("priority-not-int", _with(priority=[1]), 422, ("priority",)),
    ("params-not-object", _with(params=[1, 2]), 422, ("params",)),
    ("model-name-not-string", _with(model_name=12), 422, ("model_name",)),
    ("dataset-not-object", _with(dataset="iris"), 422, ("dataset",)),
    ("body-not-object", [1, 2, 3], 422, ()),
    (
        "missing-field",
        {k: v for k, v in iris_spec().items() if k != "algorithm"},
        422,
        ("algorithm",),
    ),
    ("unknown-top-level-field", {**iris_spec(), "colour": "blue"}, 422, ("colour",)),
    ("unknown-algorithm", _with(algorithm="deep_forest"), 422, ("algorithm", "deep_forest")),
    (
        "unknown-dataset",
        _with(dataset={"kind": "builtin", "name": "mnist"}),
        422,
        ("dataset", "name"),
    ),
    ("unknown-dataset-kind", _with(dataset={"kind": "csv", "url": "x"}), 422, ("dataset",)),
    ("unknown-param", _params(n_estimatorz=10), 422, ("params", "n_estimatorz")),
    ("controlled-param", _params(n_jobs=4), 422, ("params", "n_jobs")),
    ("bad-param-value", _params(n_estimators=-1), 422, ("params", "n_estimators", "-1")),
    ("bad-param-type", _params(max_depth="deep"), 422, ("params", "max_depth")),
    ("param-bool-for-int", _params(n_estimators=True), 422, ("n_estimators",)),
    ("param-over-ceiling", _params(n_estimators=100_000), 422, ("n_estimators",)),
    # Each accepted before and failed in every shard's fit(): OverflowError (float infinity,
    # a C integer), or an allocation of exabytes.
    ("max-samples-1e308", _params(max_samples=1e308), 422, ("max_samples", "fraction")),
    ("max-samples-fraction-2", _params(max_samples=2.0), 422, ("max_samples", "1")),
    ("max-samples-count", _params(max_samples=10**18), 422, ("max_samples", "10000000")),
    ("max-leaf-nodes-1e18", _params(max_leaf_nodes=10**18), 422, ("max_leaf_nodes", "100000")),
    ("min-samples-split-2e63", _params(min_samples_split=2**63), 422, ("min_samples_split",)),
    # iris has 4 features: scikit-learn refused these only in every shard's fit().
    ("max-features-5-of-4", _params(max_features=5), 422, ("max_features", "4 features")),
    ("monotonic-cst-2-of-4", _params(monotonic_cst=[1, 0]), 422, ("monotonic_cst", "4")),
    # iris has 3 classes: scikit-learn has no monotonic constraints for multiclass targets.
    (
        "monotonic-cst-multiclass",
        _params(monotonic_cst=[1, 0, 0, 0]),
        422,
        ("monotonic_cst", "multiclass", "3 classes"),
    ),
    # One prior per class, which scikit-learn checked only in every shard's fit() (CI's fuzz
    # found class_prior [] accepted, then failing in each shard).
    (
        "class-prior-empty",
        _with(algorithm="multinomial_nb", params={"class_prior": []}),
        422,
        ("class_prior", "0 values", "3 classes"),
    ),
    (
        "multinomial-alpha-3-of-4",
        _with(algorithm="multinomial_nb", params={"alpha": [1.0, 1.0, 1.0]}),
        422,
        ("alpha", "3 values", "4 features"),
    ),
    (
        "liblinear-multiclass",
        _with(algorithm="logistic_regression", merge="average", params={"solver": "liblinear"}),
        422,
        ("solver", "liblinear", "3 classes"),
    ),
    (
        "priors-2-of-3",
        _with(algorithm="gaussian_nb", params={"priors": [0.5, 0.5]}),
        422,
        ("priors", "2 values", "3 classes"),
    ),
    # SGD's early stopping holds a fraction of each fit's rows out, stratified: CI's fuzz found
    # validation_fraction 0.9999999999999999 accepted, then failing in every shard.
    (
        "early-stopping-leaves-nothing-to-train",
        _with(
            algorithm="sgd_classifier",
            params={"early_stopping": True, "validation_fraction": 0.9999999999999999},
        ),
        422,
        ("validation_fraction", "keeps 0 to train on"),
    ),
    # iris keeps 120 training rows (test_size 0.2): 4 shards of 30. k-means needs a row per
    # cluster in every fit, which scikit-learn checked only in each shard's fit() (a search's:
    # in each fold's).
    (
        "kmeans-clusters-over-a-shard",
        _with(algorithm="kmeans", shards=4, params={"n_clusters": 31}),
        422,
        ("n_clusters", "30 rows"),
    ),
    (
        "kmeans-default-clusters-over-a-shard",
        _with(algorithm="kmeans", shards=16, params={}),
        422,
        ("n_clusters=8", "7 rows"),
    ),
    (
        "kmeans-search-clusters-over-a-fold",
        _with(
            algorithm="kmeans",
            kind="search",
            params={},
            search={"param_grid": {"n_clusters": [3, 81]}, "cv": 3},
        ),
        422,
        ("search", "n_clusters=81", "80 rows"),
    ),
    (
        "sgd-average-1e18",
        _with(algorithm="sgd_classifier", params={"average": 10**18}),
        422,
        ("average", "2147483647"),
    ),
    ("shards-zero", _with(shards=0), 422, ("shards",)),
    ("shards-257", _with(shards=257), 422, ("shards",)),
    ("shards-more-than-rows", _with(shards=200), 422, ("shards", "200")),
    (
        "classifier-on-regression",
        _with(dataset={"kind": "builtin", "name": "diabetes"}),
        422,
        ("random_forest_classifier", "regression"),
    ),
    (
        "regressor-on-classification",
        _with(algorithm="random_forest_regressor"),
        422,
        ("random_forest_regressor", "classification"),
    ),
    # SGD trains in rounds by default; what rounds cannot honour is refused when rounds are
    # asked for (without merge, such a spec averages once).
    *[
        (
            f"merge-rounds-with-sgd-{name}",
            _with(algorithm="sgd_classifier", merge="rounds", params={name: value}),
            422,
            ("merge", f"params.{name}", "average"),
        )
        for name, value in (
            ("average", True),
            ("early_stopping", True),
            ("class_weight", "balanced"),
        )
    ],
    ("merge-rounds-for-ridge", _with(algorithm="ridge", merge="rounds"), 422, ("merge", "ridge")),
    ("model-name-bad-chars", _with(model_name="Bad Name/../x"), 422, ("model_name",)),
    ("model-name-too-long", _with(model_name="a" * 64), 422, ("model_name",)),
    ("test-size-1", _with(test_size=1.0), 422, ("test_size",)),
    ("priority-10", _with(priority=10), 422, ("priority",)),
    ("max-attempts-0", _with(max_attempts=0), 422, ("max_attempts",)),
    (
        "synthetic-too-many-values",
        _with(
            dataset={
                "kind": "synthetic",
                "task": "classification",
                "n_samples": 2_000_000,
                "n_features": 500,
            }
        ),
        422,
        ("n_samples",),
    ),
]


def _assert_nothing_written(kazoo: KazooClient, root: str) -> None:
    for name in ("jobs", "queue", "locks", "models"):
        assert children(kazoo, f"{root}/{name}") == [], name
    assert idempotency_keys(kazoo, root) == {}


@pytest.mark.parametrize(
    "body,status,needles", [b[1:] for b in BAD_BODIES], ids=[b[0] for b in BAD_BODIES]
)
def test_bad_spec_is_a_problem_naming_the_field(
    small: Service, body: Any, status: int, needles: tuple[str, ...]
) -> None:
    # With and without an Idempotency-Key: neither a job nor a key may be written.
    for headers in ({}, {"Idempotency-Key": "bad-input"}):
        response = small.client.post("/v1/jobs", json=body, headers=headers)
        problem = assert_problem(response, status, *needles)
        if status == 422:
            assert problem.get("errors"), problem
    small.assert_nothing_written()


def test_malformed_and_oversized_bodies(small: Service) -> None:
    json_headers = {"content-type": "application/json"}
    malformed = small.client.post("/v1/jobs", content=b'{"model_name": "x", ', headers=json_headers)
    assert_problem(malformed, 400, "JSON")

    not_json = small.client.post("/v1/jobs", content=b"model_name=x", headers=json_headers)
    assert_problem(not_json, 400, "JSON")

    spec = iris_spec()
    spec["padding"] = "x" * (MAX_BYTES + 100)  # over the limit whatever the field
    oversized = small.client.post(
        "/v1/jobs", content=json.dumps(spec).encode(), headers=json_headers
    )
    assert_problem(oversized, 413, str(MAX_BYTES))
    small.assert_nothing_written()


def test_a_job_over_the_cost_ceilings_is_refused_naming_figure_and_ceiling(
    small: Service,
) -> None:
    # 64 replicated shards of 2,000 trees on a million rows, plus a baseline: accepted before.
    huge = _with(
        params={"n_estimators": 2000},
        shards=64,
        partition="replicate",
        baseline=True,
        dataset={
            "kind": "synthetic",
            "task": "classification",
            "n_samples": 1_000_000,
            "n_features": 50,
        },
    )
    problem = assert_problem(small.client.post("/v1/jobs", json=huge), 422, "256,000", "50,000")
    assert "ZOOTRAIN_MAX_TREES" in problem["detail"]
    assert "ZOOTRAIN_MAX_SYNTHETIC_CELLS" in problem["detail"]
    attempts = assert_problem(small.client.post("/v1/jobs", json=_with(max_attempts=15)), 422)
    assert "max_attempts is 15" in attempts["detail"]
    small.assert_nothing_written()


def test_all_bad_requests_left_nothing_behind(small: Service) -> None:
    """Every bad request of this module, one after another against one root (in whatever order
    the other tests ran, before or after this one): the root holds nothing at the end."""
    for _, body, status, _ in BAD_BODIES:
        for headers in ({}, {"Idempotency-Key": "bad-input-all"}):
            assert small.client.post("/v1/jobs", json=body, headers=headers).status_code == status
    json_headers = {"content-type": "application/json"}
    assert small.client.post("/v1/jobs", content=b"{", headers=json_headers).status_code == 400
    padded = json.dumps({**iris_spec(), "padding": "x" * (MAX_BYTES + 100)}).encode()
    assert small.client.post("/v1/jobs", content=padded, headers=json_headers).status_code == 413
    small.assert_nothing_written()
    assert small.client.get("/v1/jobs").json() == {"items": [], "next_cursor": None}


def test_oversized_chunked_body_without_content_length_is_413(
    api: TestClient, api_settings: Settings, kazoo: KazooClient, zk_root: str
) -> None:
    limit = api_settings.max_request_bytes
    spec = iris_spec()
    spec["padding"] = "x" * (limit + 100)
    big = json.dumps(spec).encode()

    def chunks() -> Iterator[bytes]:  # no Content-Length: Transfer-Encoding: chunked
        for start in range(0, len(big), 64 * 1024):
            yield big[start : start + 64 * 1024]

    streamed = api.post("/v1/jobs", content=chunks(), headers={"content-type": "application/json"})
    _assert_nothing_written(kazoo, zk_root)
    assert_problem(streamed, 413, str(limit))


def test_shards_over_training_rows_counts_rows_like_the_split(
    api: TestClient, kazoo: KazooClient, zk_root: str
) -> None:
    # 150 rows, test_size 0.201: the split holds out ceil(30.15) = 31 rows, leaving 119.
    response = api.post("/v1/jobs", json=iris_spec(shards=120, test_size=0.201))
    assert_problem(response, 422, "shards", "119")
    _assert_nothing_written(kazoo, zk_root)


def test_unknown_and_malformed_resources(api: TestClient, kazoo: KazooClient, zk_root: str) -> None:
    missing = "0123456789abcdef0123"
    assert_problem(api.get(f"/v1/jobs/{missing}"), 404, missing)
    assert_problem(api.delete(f"/v1/jobs/{missing}"), 404, missing)
    for bad in ("not-a-job-id", "0123456789ABCDEF0123", "0" * 21):
        assert_problem(api.get(f"/v1/jobs/{bad}"), (400, 404, 422))
        assert_problem(api.delete(f"/v1/jobs/{bad}"), (400, 404, 405, 422))
    assert_problem(api.get("/v1/jobs", params={"cursor": "nope"}), 422, "cursor")
    assert_problem(api.get("/v1/jobs", params={"state": "sleeping"}), 422, "state")
    assert_problem(api.get("/v1/jobs", params={"limit": 0}), 422, "limit")

    assert_problem(api.get("/v1/models/no-such-model/versions"), 404, "no-such-model")
    assert_problem(api.get("/v1/models/no-such-model/versions/1"), 404, "no-such-model")
    assert_problem(api.get("/v1/models/no-such-model/versions/1/artifact"), 404, "no-such-model")
    predict = api.post("/v1/models/no-such-model/predict", json={"instances": [[1, 2, 3, 4]]})
    assert_problem(predict, 404, "no-such-model")
    assert_problem(api.get("/v1/models/Bad%20Name/versions"), 422)
    assert_problem(api.get("/v1/nowhere"), 404, "/v1/nowhere")
    _assert_nothing_written(kazoo, zk_root)


# -- bad input against a published model (real workers, shared) ---------------------------------


@pytest.fixture(scope="module")
def finished_iris(shared_stack: Any) -> dict[str, Any]:
    with httpx.Client(headers=AUTH, base_url=shared_stack.api_url, timeout=60) as client:
        job = submit(client, iris_spec(model_name="bad-input-iris", shards=2))
        view = wait_job(client, job["id"])
    assert view["state"] == "succeeded", view
    return view


def test_predict_with_wrong_feature_count(
    shared_http: httpx.Client, finished_iris: dict[str, Any]
) -> None:
    name = finished_iris["model"]["name"]
    version = finished_iris["model"]["version"]
    good = shared_http.post(
        f"/v1/models/{name}/predict", json={"instances": [[5.1, 3.5, 1.4, 0.2]]}
    )
    assert good.status_code == 200, good.text

    wrong = shared_http.post(
        f"/v1/models/{name}/predict", json={"instances": [[5.1, 3.5, 1.4, 0.2], [1.0, 2.0, 3.0]]}
    )
    assert_problem(wrong, 422, "instances[1]", "3", "4")

    assert_problem(
        shared_http.post(f"/v1/models/{name}/predict", json={"instances": []}), 422, "instances"
    )
    assert_problem(
        shared_http.post(f"/v1/models/{name}/predict", json={"instances": [["a", 1, 2, 3]]}),
        422,
        "instances",
    )
    assert_problem(
        shared_http.post(
            f"/v1/models/{name}/predict",
            json={"instances": [[5.1, 3.5, 1.4, 0.2]], "version": version + 10},
        ),
        404,
        name,
    )
    assert_problem(
        shared_http.post(
            f"/v1/models/{name}/predict", json={"instances": [[5.1, 3.5, 1.4, 0.2]], "extra": 1}
        ),
        422,
        "extra",
    )


def test_predict_with_a_value_past_float32_is_a_422(
    shared_http: httpx.Client, finished_iris: dict[str, Any]
) -> None:
    # A forest predicts in float32: 1e300 is a finite JSON number it cannot hold (was a 500).
    name = finished_iris["model"]["name"]
    too_big = shared_http.post(f"/v1/models/{name}/predict", json={"instances": [[1e300, 1, 1, 1]]})
    assert_problem(too_big, 422, "instances")
    fine = shared_http.post(f"/v1/models/{name}/predict", json={"instances": [[3e38, 1, 1, 1]]})
    assert fine.status_code == 200, fine.text


def test_cancel_finished_job_is_conflict(
    shared_http: httpx.Client, finished_iris: dict[str, Any]
) -> None:
    job_id = finished_iris["id"]
    conflict = shared_http.delete(f"/v1/jobs/{job_id}")
    assert_problem(conflict, 409, job_id)
    after = shared_http.get(f"/v1/jobs/{job_id}").json()
    assert after["state"] == "succeeded"
    assert after["finished_at"] == finished_iris["finished_at"]
