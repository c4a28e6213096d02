"""The S3 client: a 100 MB model file uploaded and downloaded through obstore (what zootrain
uses) and through boto3 (AWS's own SDK), against the same moto_server endpoint, median of three.

moto_server is an emulator that keeps objects in its own (Python) memory, so the absolute
rates say more about the emulator than about S3; the ratio between the clients, measured
against the same server in the same run, is the figure. Also run against the local-directory
store for reference. ``python -m bench.object_store``.
"""

from __future__ import annotations

import io
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from testkit.s3server import S3Server

SIZE = 100 * 1024 * 1024
RUNS = 3


def _rate(seconds: float) -> float:
    return SIZE / seconds / 1e6


def _median(action: Callable[[], None]) -> float:
    times = []
    for _ in range(RUNS):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def measure(directory: Path) -> list[tuple[str, float, float]]:
    import boto3
    from boto3.s3.transfer import TransferConfig

    from zootrain.artifacts import ArtifactStore

    source = directory / "model.bin"
    source.write_bytes(os.urandom(SIZE))
    server = S3Server(directory).start()
    rows: list[tuple[str, float, float]] = []
    try:
        os.environ.update(server.environment())
        bucket = server.create_bucket()
        store = ArtifactStore(f"s3://{bucket}/obstore")
        key = ""

        def ob_put() -> None:
            nonlocal key
            key, _, _ = store.put_file(source, kind="models", suffix="skops")

        up = _median(ob_put)
        digest = key.split("/")[1].split(".")[0]
        down = _median(lambda: store.download(key, digest, io.BytesIO()))
        rows.append(("obstore (zootrain.artifacts)", _rate(up), _rate(down)))

        client = boto3.client("s3", endpoint_url=server.endpoint)
        config = TransferConfig(multipart_chunksize=8 * 1024 * 1024, max_concurrency=4)
        up = _median(lambda: client.upload_file(str(source), bucket, "boto3/model", Config=config))
        down = _median(
            lambda: client.download_fileobj(bucket, "boto3/model", io.BytesIO(), Config=config)
        )
        rows.append(("boto3 (upload_file / download_fileobj)", _rate(up), _rate(down)))
    finally:
        server.stop()
    local = ArtifactStore(directory / "local")
    up = _median(lambda: ob_put_local(local, source))
    key = f"models/{_sha(source)}.skops"
    down = _median(lambda: local.download(key, key[7:71], io.BytesIO()))
    rows.append(("obstore, local directory", _rate(up), _rate(down)))
    return rows


def ob_put_local(store: object, source: Path) -> None:
    store.put_file(source, kind="models", suffix="skops")  # type: ignore[attr-defined]


def _sha(path: Path) -> str:
    from zootrain.artifacts import file_sha256

    return file_sha256(path)


def main() -> None:
    with tempfile.TemporaryDirectory() as directory:
        rows = measure(Path(directory))
    base_up, base_down = rows[1][1], rows[1][2]
    print(f"100 MB object, median of {RUNS}, MB/s (ratio to boto3 in the same run)")
    print(f"{'client':42} {'upload':>16} {'download':>16}")
    for name, up, down in rows:
        print(f"{name:42} {up:8.0f} ({up / base_up:4.2f}x) {down:8.0f} ({down / base_down:4.2f}x)")


if __name__ == "__main__":
    main()
