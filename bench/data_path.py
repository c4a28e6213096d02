"""What one shard's training child reads and holds: peak RSS and bytes read from the artifact
store, for a 2,000,000 x 50 job at 1, 4 and 8 shards, before (every shard loads the whole
dataset, cuts the held-out split and slices its rows: the data path up to issue 11) and now
(a shard generates or reads only its own rows), as ratios to the shard's share of the data.

``python -m bench.data_path [--rows N] [--features F] [--runs 3] [--shards 1,4,8]``

Each measurement is a fresh child process (python -c) running shard 0 of an `sgd_classifier`
job (5 epochs: a model whose own memory is negligible, so the data path is what is measured),
after a warm-up shard on iris has loaded everything a shard loads lazily. Its peak RSS from then
on (VmHWM, reset through /proc/self/clear_refs) minus its RSS then (the fixed overhead:
interpreter, NumPy, pandas, pyarrow, scikit-learn) is compared with the shard's share: its own
rows (its training rows and the slice of the held-out rows it scores itself on, about
rows / shards) x features x 8 bytes, as float64. Bytes read are what the
child fetched from the artifact store (zootrain.artifacts counts them; a directory store here,
so the figure is the bytes, not the network). The uploaded dataset is stored once through the
same code as an upload (zootrain.ml.tabular.ingest), and the "before" run reads it as the job
service stored uploads before: one file, whole. Median of ``--runs``.

It also times the alternative for ``random``/``stratified`` shards that docs/design.md weighs:
a shuffle task (one worker reads the dataset once and writes one file per shard) against the
shuffled copy written at upload.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TEST_SIZE = 0.2

_CHILD = r"""
import json, resource, sys, time
args = json.loads(sys.argv[1])
import numpy as np, pandas, pyarrow, pyarrow.parquet, sklearn.naive_bayes  # the fixed part
from workers import train_child
from zootrain.artifacts import ArtifactStore
from zootrain.ml import datasets as ds, partition, training as fit
from zootrain.ml.scoring import evaluate
def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) * 1024
# Warm up: what any shard loads lazily (estimators, metrics, skops) is loaded before measuring.
warm = dict(args["payload"], spec=dict(args["payload"]["spec"], shards=1,
            dataset={"kind": "builtin", "name": "iris"}), dataset_source=None)
train_child.train_shard(warm)
base = status("VmRSS")
with open("/proc/self/clear_refs", "w") as handle:
    handle.write("5")  # resets the peak (VmHWM) to the current RSS
started = time.perf_counter()
payload = args["payload"]
if args["mode"] == "after":
    result = train_child.train_shard(payload)
    read, rows = result["bytes_read"], result["rows"]
else:
    from zootrain.records import JobSpec
    spec = JobSpec.model_validate(payload["spec"])
    store = ArtifactStore(payload["artifacts"])
    if args["kind"] == "uploaded":
        from zootrain.ml.tabular import DatasetSource, load_uploaded
        source = DatasetSource.model_validate(args["legacy_source"])
        X, y = load_uploaded(source, store.get(source.artifact, source.sha256))
        task = source.task
    else:
        X, y = ds.load_dataset(spec.dataset)
        task = ds.dataset_task(spec.dataset)
    split = ds.split_dataset(X, y, task=task, test_size=spec.test_size, seed=spec.random_state)
    del X, y
    rows_ = partition.shard_rows(len(split.X_train), spec.shards, 0, spec.partition,
                                 spec.random_state, y=split.y_train)
    model = fit.fit_shard(spec.algorithm, spec.params, X=split.X_train[rows_],
                          y=split.y_train[rows_], classes=split.classes, random_state=0)
    evaluate(model, split.X_test, split.y_test, task=task, classes=split.classes)
    read, rows = store.bytes_read, len(rows_)
peak = status("VmHWM")
print(json.dumps({"base": base, "peak": peak, "read": read, "rows": rows,
                  "seconds": time.perf_counter() - started}))
"""


def _run_child(args: dict[str, Any]) -> dict[str, Any]:
    from workers.processes import CHILD_ENVIRONMENT  # what a worker's training children get

    env = {**os.environ, **CHILD_ENVIRONMENT, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps(args)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _spec(dataset: dict[str, Any], shards: int, partition: str) -> dict[str, Any]:
    from zootrain.records import JobSpec

    spec = JobSpec.model_validate(
        {
            "model_name": "bench",
            "algorithm": "sgd_classifier",
            "params": {"max_iter": 5, "tol": None},
            # One-shot shards: what the data path costs, not rounds.
            "merge": "average",
            "dataset": dataset,
            "shards": shards,
            "partition": partition,
            "test_size": TEST_SIZE,
        }
    )
    return spec.model_dump(mode="json")


def _upload(directory: Path, rows: int, features: int, store_url: str) -> dict[str, Any]:
    """Store a rows x features classification table the way an upload is stored; returns the
    columnar and the as-uploaded (legacy) sources."""
    import hashlib

    import pandas as pd

    from zootrain.artifacts import ArtifactStore
    from zootrain.ml.datasets import SyntheticDataset
    from zootrain.ml.synthetic import Generator
    from zootrain.ml.tabular import DatasetSource, ingest, make_plan
    from zootrain.uploads import StoredForm

    generator = Generator(
        SyntheticDataset(
            kind="synthetic", task="classification", n_samples=rows, n_features=features
        )
    )
    X, y = generator.all_rows()
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(features)])
    frame["label"] = y
    del X, y
    upload = directory / "upload.parquet"
    frame.to_parquet(upload, index=False)
    del frame
    store = ArtifactStore(store_url)
    digest = hashlib.sha256(upload.read_bytes()).hexdigest()
    started = time.perf_counter()
    work = directory / "work"
    work.mkdir()
    table, manifest, files = ingest(
        upload, "parquet", work, sha256=digest, max_rows=rows, max_columns=features + 1
    )
    converted = time.perf_counter() - started
    key, manifest_sha = StoredForm(manifest, files).put(store)
    legacy_key, _ = store.put(upload.read_bytes(), kind="datasets", suffix="parquet")
    plan, task = make_plan(
        table.columns, table.rows, algorithm="sgd_classifier", target="label", features=None
    )
    common = {
        "dataset_id": "0" * 20,
        "format": "parquet",
        "sha256": digest,
        "size": upload.stat().st_size,
        "rows": rows,
        "task": task,
        "plan": plan,
    }
    columnar = DatasetSource(artifact=key, artifact_sha256=manifest_sha, **common)
    legacy = DatasetSource(artifact=legacy_key, **common)
    return {
        "columnar": columnar.model_dump(mode="json"),
        "legacy": legacy.model_dump(mode="json"),
        "upload_bytes": upload.stat().st_size,
        "stored_bytes": manifest.original.size + manifest.shuffled.size,
        "ingest_seconds": converted,
        "original": str(files[0]),
    }


def shuffle_task_seconds(original: Path, shards: int, directory: Path) -> tuple[float, int]:
    """What a shuffle task would do per job: read every row group once and write one Parquet
    file per shard (rows dealt by a seeded permutation). (seconds, bytes written)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    started = time.perf_counter()
    source = pq.ParquetFile(original)
    rows = source.metadata.num_rows
    destination = np.random.RandomState(0).permutation(rows) % shards
    writers = [
        pq.ParquetWriter(directory / f"shard-{i}.parquet", source.schema_arrow, compression="zstd")
        for i in range(shards)
    ]
    first = 0
    for g in range(source.metadata.num_row_groups):
        table = source.read_row_group(g)
        where = destination[first : first + table.num_rows]
        for i, writer in enumerate(writers):
            writer.write_table(table.filter(pa.array(where == i)))
        first += table.num_rows
    for writer in writers:
        writer.close()
    written = sum((directory / f"shard-{i}.parquet").stat().st_size for i in range(shards))
    return time.perf_counter() - started, written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.data_path")
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--features", type=int, default=50)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--shards", default="1,4,8")
    parser.add_argument("--kinds", default="synthetic,uploaded")
    args = parser.parse_args(argv)
    shard_counts = [int(s) for s in args.shards.split(",")]
    kinds = args.kinds.split(",")
    gib = 1024**3
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch)
        store_url = str(directory / "store")
        uploaded = (
            _upload(directory, args.rows, args.features, store_url) if "uploaded" in kinds else None
        )
        dataset_bytes = args.rows * args.features * 8
        print(
            f"dataset: {args.rows:,} rows x {args.features} features = "
            f"{dataset_bytes / gib:.2f} GiB as float64; test_size {TEST_SIZE}; median of "
            f"{args.runs}; RSS is the child's peak minus its RSS after imports; share is the "
            "shard's rows (training + its held-out slice) as float64"
        )
        if uploaded is not None:
            print(
                f"uploaded: {uploaded['upload_bytes'] / 1e6:,.0f} MB Parquet as uploaded, "
                f"stored as {uploaded['stored_bytes'] / 1e6:,.0f} MB (original + shuffled), "
                f"converted in {uploaded['ingest_seconds']:.1f} s"
            )
        header = (
            f"{'dataset':10} {'shards':>6} {'share MB':>9} | {'before RSS':>11} {'read':>9} "
            f"{'RSS/share':>9} {'read/share':>10} | {'now RSS':>9} {'read':>9} "
            f"{'RSS/share':>9} {'read/share':>10} | {'fixed MB':>8}"
        )
        print(header)
        for kind in kinds:
            dataset: dict[str, Any]
            if kind == "synthetic":
                dataset = {
                    "kind": "synthetic",
                    "task": "classification",
                    "n_samples": args.rows,
                    "n_features": args.features,
                }
            else:
                dataset = {"kind": "uploaded", "id": "0" * 20, "target": "label"}
            for shards in shard_counts:
                share = dataset_bytes / shards
                figures: dict[str, dict[str, float]] = {}
                for mode in ("before", "after"):
                    payload = {
                        "spec": _spec(dataset, shards, "random"),
                        "index": 0,
                        "artifacts": store_url,
                        "dataset_source": uploaded["columnar"] if uploaded else None,
                    }
                    runs = [
                        _run_child(
                            {
                                "mode": mode,
                                "kind": kind,
                                "payload": payload,
                                "legacy_source": uploaded["legacy"] if uploaded else None,
                            }
                        )
                        for _ in range(args.runs)
                    ]
                    figures[mode] = {
                        "rss": statistics.median(r["peak"] - r["base"] for r in runs),
                        "read": statistics.median(r["read"] for r in runs),
                        "base": statistics.median(r["base"] for r in runs),
                    }
                b, a = figures["before"], figures["after"]
                print(
                    f"{kind:10} {shards:>6} {share / 1e6:>9,.0f} | {b['rss'] / 1e6:>8,.0f} MB "
                    f"{b['read'] / 1e6:>6,.0f} MB {b['rss'] / share:>8.2f}x "
                    f"{b['read'] / share:>9.2f}x | {a['rss'] / 1e6:>6,.0f} MB "
                    f"{a['read'] / 1e6:>6,.0f} MB {a['rss'] / share:>8.2f}x "
                    f"{a['read'] / share:>9.2f}x | {a['base'] / 1e6:>8,.0f}",
                    flush=True,
                )
        if uploaded is not None:
            shards = max(shard_counts)
            work = directory / "shuffle"
            work.mkdir()
            seconds, written = shuffle_task_seconds(Path(uploaded["original"]), shards, work)
            print(
                f"random/stratified: a shuffle task ({shards} shards) reads "
                f"{uploaded['stored_bytes'] / 2e6:,.0f} MB and writes {written / 1e6:,.0f} MB "
                f"in {seconds:.1f} s per job, before any shard starts; the shuffled copy costs "
                f"{uploaded['stored_bytes'] / 2e6:,.0f} MB of storage once per upload (its "
                f"share of the {uploaded['ingest_seconds']:.1f} s conversion)"
            )


if __name__ == "__main__":
    main()
