"""The S3 artifact store beyond the shared stacks: no shared filesystem at all between the
processes, transient errors retried, every read checked."""

from __future__ import annotations

import asyncio
import hashlib
import io
import shutil
import tempfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from kazoo.client import KazooClient

from tests.support.auth import AUTH, TOKENS
from tests.support.s3server import S3Server
from tests.support.stack import Stack, wait_job
from tests.support.stores import open_store
from tests.support.zkserver import ZooKeeperCluster
from zootrain.artifacts import ArtifactStore
from zootrain.errors import ArtifactError

pytestmark = pytest.mark.integration


def _flowers(n: int, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    species = rng.choice(["setosa", "versicolor", "virginica"], n)
    size = np.where(species == "setosa", 1.0, np.where(species == "versicolor", 3.0, 5.0))
    frame = pd.DataFrame(
        {
            "length": np.round(size + rng.normal(0, 0.3, n), 3),
            "width": np.round(size / 2 + rng.normal(0, 0.2, n), 3),
            "color": rng.choice(["red", "blue", "white"], n),
            "species": species,
        }
    )
    return frame.to_csv(index=False).encode()


def _files(directory: Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file())


def test_processes_share_nothing_but_zookeeper_and_the_bucket(
    zookeeper: ZooKeeperCluster,
    s3server: S3Server,
    kazoo: KazooClient,
    zk_root: str,
    tmp_path: Path,
) -> None:
    """The job service and two workers, each in its own working directory with its own empty
    var/ and temporary directory: an uploaded dataset is trained on by shards on both workers,
    merged by one of them from the other's shard file, published, served and downloaded, and
    deleted; nothing of it is ever in any process's directory."""
    bucket = s3server.create_bucket()
    stack = Stack(
        tmp_path,
        {
            "ZOOTRAIN_ZK_HOSTS": zookeeper.hosts,
            "ZOOTRAIN_ZK_ROOT": zk_root,
            "ZOOTRAIN_ZK_SESSION_TIMEOUT": "4",
            "ZOOTRAIN_TOKENS": TOKENS,
            "ZOOTRAIN_ARTIFACTS": f"s3://{bucket}/isolated",
            **s3server.environment(),
        },
    )
    homes, temps = {}, {}
    for name in ("api", "worker-a", "worker-b"):
        home = tmp_path / "machines" / name
        (home / "var").mkdir(parents=True)
        homes[name] = home
        # Its own temporary directory too (short: the forkserver's socket lives there).
        temps[name] = Path(tempfile.mkdtemp(prefix="zt-"))
    try:
        stack.start_api(cwd=homes["api"], TMPDIR=str(temps["api"]))
        for name in ("worker-a", "worker-b"):
            stack.start_worker(
                "worker",
                cwd=homes[name],
                TMPDIR=str(temps[name]),
                ZOOTRAIN_WORKER_ID=name,
                ZOOTRAIN_WORKER_CONCURRENCY="1",
            )
        with httpx.Client(headers=AUTH, base_url=stack.api_url or "", timeout=60) as api:
            data = _flowers(3000)
            upload = api.post("/v1/datasets", files={"file": ("flowers.csv", data)})
            assert upload.status_code == 201, upload.text
            dataset = upload.json()
            # Two shards, each worker takes one at most at a time: both train one, and the
            # merger reads the other's model from the bucket.
            spec = {
                "model_name": "isolated",
                "algorithm": "random_forest_classifier",
                "params": {"n_estimators": 60},
                "dataset": {"kind": "uploaded", "id": dataset["id"], "target": "species"},
                "shards": 2,
                "partition": "stratified",
            }
            job = api.post("/v1/jobs", json=spec)
            assert job.status_code == 202, job.text
            view = wait_job(api, job.json()["id"])
            assert view["state"] == "succeeded", view
            assert {s["worker"] for s in view["shards"]} == {"worker-a", "worker-b"}
            instance = {"instances": [[1.0, 0.5, 0, 1, 0]]}
            predicted = api.post("/v1/models/isolated/predict", json=instance)
            assert predicted.status_code == 200, predicted.text
            assert predicted.json()["predictions"] == ["setosa"]
            artifact = api.get("/v1/models/isolated/versions/1/artifact")
            assert artifact.status_code == 200
            version = api.get("/v1/models/isolated/versions/1").json()
            assert hashlib.sha256(artifact.content).hexdigest() == version["sha256"]
            assert api.delete(f"/v1/datasets/{dataset['id']}").status_code == 204
    finally:
        stack.stop()
    for name, home in homes.items():
        assert _files(home) == [], (name, _files(home))
        # Private scratch (an upload being converted, a model being loaded) is gone too.
        assert _files(temps[name]) == [], (name, _files(temps[name]))
        shutil.rmtree(temps[name], ignore_errors=True)
    store = open_store(stack.settings)
    kinds = {o.key.split("/")[0] for o in store.list()}
    assert kinds == {"models"}  # the shard and merged models; the dataset went with its record


class _Flaky(BaseHTTPRequestHandler):
    """Forwards to the S3 endpoint, but answers every other request 503 SlowDown first."""

    upstream = ""
    counter = 0
    failed = 0
    lock = threading.Lock()

    def _handle(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        with _Flaky.lock:
            _Flaky.counter += 1
            fail = _Flaky.counter % 2 == 1
            if fail:
                _Flaky.failed += 1
        if fail:
            payload = b"<Error><Code>SlowDown</Code><Message>try again</Message></Error>"
            self.send_response(503)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
        response = httpx.request(
            self.command, _Flaky.upstream + self.path, headers=headers, content=body, timeout=60
        )
        self.send_response(response.status_code)
        for key, value in response.headers.items():
            if key.lower() not in ("transfer-encoding", "connection", "content-encoding"):
                self.send_header(key, value)
        self.end_headers()
        self.wfile.write(response.content)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def flaky_endpoint(s3server: S3Server) -> Iterator[str]:
    _Flaky.upstream = s3server.endpoint
    _Flaky.counter = _Flaky.failed = 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_transient_errors_are_retried_and_reads_are_checked(
    s3server: S3Server, flaky_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = s3server.create_bucket()
    for key, value in {**s3server.environment(), "AWS_ENDPOINT_URL": flaky_endpoint}.items():
        monkeypatch.setenv(key, value)
    store = ArtifactStore(f"s3://{bucket}/flaky")
    # Every other request is refused with 503: each operation still succeeds, by retrying.
    small, small_sha = store.put(b"model bytes")
    big = np.random.default_rng(0).bytes(20 * 1024 * 1024)  # multipart: several parts
    source = tmp_path / "big"
    source.write_bytes(big)
    key, digest, size = store.put_file(source, kind="models", suffix="skops")
    assert size == len(big) and digest == hashlib.sha256(big).hexdigest()
    assert store.get(small, small_sha) == b"model bytes"
    out = io.BytesIO()
    store.download(key, digest, out)
    assert out.getvalue() == big
    assert _Flaky.failed >= 4
    # A read whose bytes do not match the sha256 recorded for them is refused.
    with pytest.raises(ArtifactError, match="sha256"):
        store.get(small, "0" * 64)
    with pytest.raises(ArtifactError, match="missing"):
        store.get(f"models/{'1' * 64}.skops", "1" * 64)


@pytest.fixture(params=["file", "s3"])
def any_store(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> ArtifactStore:
    if request.param == "s3":
        server: S3Server = request.getfixturevalue("s3server")
        for key, value in server.environment().items():
            monkeypatch.setenv(key, value)
        return ArtifactStore(f"s3://{server.create_bucket()}/some/prefix")
    return ArtifactStore(tmp_path / "store")


def test_both_backends_keep_the_same_promises(any_store: ArtifactStore, tmp_path: Path) -> None:
    store = any_store
    data = np.random.default_rng(1).bytes(3 * 1024 * 1024 + 17)
    key, digest = store.put(data)
    assert key == f"models/{digest}.skops" and store.put(data) == (key, digest)  # idempotent
    assert store.get(key, digest) == data and store.size(key) == len(data)
    piece = data[1000:5000]
    assert store.get_range(key, 1000, 4000, hashlib.sha256(piece).hexdigest()) == piece
    ranges = [
        (0, 10, hashlib.sha256(data[:10]).hexdigest()),
        (2_000_000, 5, hashlib.sha256(data[2_000_000:2_000_005]).hexdigest()),
    ]
    assert store.get_ranges(key, ranges) == [data[:10], data[2_000_000:2_000_005]]
    out = io.BytesIO()
    assert store.download(key, digest, out) == len(data) and out.getvalue() == data
    source = tmp_path / "dataset.parquet"
    source.write_bytes(data[:100])
    dataset, dataset_sha, size = store.put_file(source, kind="datasets", suffix="parquet")
    assert size == 100 and dataset == f"datasets/{dataset_sha}.parquet"
    listed = {o.key: o for o in store.list_objects()}
    assert set(listed) == {key, dataset} and listed[key].size == len(data)
    assert [o.key for o in store.list("datasets")] == [dataset]
    assert all(o.modified > 0 and not o.temporary for o in listed.values())
    # A wrong digest is refused, whole or by range, and a streamed read withholds its end.
    with pytest.raises(ArtifactError, match="sha256"):
        store.get(key, "f" * 64)
    with pytest.raises(ArtifactError, match="sha256"):
        store.get_range(key, 0, 10, "f" * 64)

    async def drain(expected: str) -> list[bytes]:
        return [chunk async for chunk in store.stream(key, expected)]

    assert b"".join(asyncio.run(drain(digest))) == data
    received: list[bytes] = []

    async def partial() -> None:
        async for chunk in store.stream(key, "f" * 64):
            received.append(chunk)

    with pytest.raises(ArtifactError, match="sha256"):
        asyncio.run(partial())
    assert sum(map(len, received)) < len(data)  # the last chunk was never handed out
    # Deleting is idempotent; what is gone reads as missing.
    store.delete(key)
    store.delete(key)
    assert store.size(key) is None
    with pytest.raises(ArtifactError, match="missing"):
        store.get(key, digest)
    with pytest.raises(ArtifactError, match="invalid"):
        store.get("../etc/passwd", digest)


def test_both_backends_collect_garbage_the_same_way(any_store: ArtifactStore) -> None:
    """What the collector relies on (zootrain/store_gc.py): a conditional delete that keeps an
    object written or touched after its limit, and a touch that says whether the object is
    still there and renews its time."""
    store = any_store
    key, _ = store.put(b"a shard's model")
    limit = store_time(store, key) - 1.0  # the object was written after this
    assert store.delete(key, unless_modified_after=limit) is False
    assert store.size(key) == len(b"a shard's model")
    before = store_time(store, key)
    assert store.touch(key) is True
    assert store_time(store, key) >= before
    assert [o.key for o in store.list_objects()] == [key]  # touching leaves nothing behind
    assert store.delete(key, unless_modified_after=store_time(store, key) + 1.0) is True
    assert store.size(key) is None
    assert store.touch(key) is False  # gone: the writer must not name it in a record
    assert store.delete(key, unless_modified_after=0.0) is False


def store_time(store: ArtifactStore, key: str) -> float:
    return next(o.modified for o in store.list_objects() if o.key == key)
