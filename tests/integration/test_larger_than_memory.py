"""A dataset larger than a training process may hold is still trained: a test-sized version of
"larger than one machine's memory".

The dataset (2,200,000 rows x 60 float64 features + a label: 1.06 GB as the matrix a model fits
on; a few hundred MB stored, as Parquet) is stored the way an upload is (its two Parquet files
and manifest). Each training process runs in a real child of the workers' forkserver under
the memory limit a worker gives it (``run_in_child``'s ``memory_limit``, RLIMIT_AS) of 1 GB,
below the dataset's size — and that cap also covers the ~0.65 GB of libraries every training
process maps. Every shard of a 16-shard job trains and the merge scores the
merged model (16 shards, not 8: a shard's peak then sits about 60 MB further below the cap; at 8
its 27 MB of headroom ran out once on a loaded machine); the same cap kills the data path that
reads the whole file (a dataset stored before the columnar form), which shows the cap bites.
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from workers.processes import MemoryLimitExceeded, run_in_child
from zootrain.artifacts import ArtifactStore
from zootrain.ml.columnar import write_files
from zootrain.ml.tabular import ColumnInfo, DatasetSource, make_plan
from zootrain.uploads import StoredForm

pytestmark = pytest.mark.integration

ROWS, FEATURES, SHARDS = 2_200_000, 60, 16
LIMIT = 1_000_000_000
DATASET_BYTES = ROWS * FEATURES * 8


def _child(call: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    """Run one task (a function of workers.train_child, its payload) as a worker runs it: in a
    child of the forkserver, under the memory limit a worker sets (ZOOTRAIN_TASK_MEMORY_LIMIT,
    RLIMIT_AS in the child)."""
    function, payload = call
    try:
        result = asyncio.run(
            run_in_child(f"workers.train_child:{function}", payload, memory_limit=LIMIT)
        )
    except MemoryLimitExceeded as exc:
        print(exc)  # where it ran out, for the failure report
        return {"memory_error": True}
    return {"result": [result]}


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    directory = tmp_path_factory.mktemp("large")
    rng = np.random.default_rng(0)
    label = rng.integers(0, 3, ROWS)
    columns = {}
    for i in range(FEATURES):
        # Two decimals: a few hundred distinct values a column, so Parquet's dictionary keeps
        # the stored files to a few hundred MB while the float64 matrix is over 1 GB.
        columns[f"x{i}"] = np.round(rng.normal(label * (i % 3 == 0), 1.0), 2)
    columns["label"] = label
    table = pa.table(columns)
    del columns
    manifest, files = write_files(table, directory, seed=7, dictionary=table.column_names)
    store = ArtifactStore(directory / "store")
    key, manifest_sha = StoredForm(manifest, files).put(store)
    infos = [
        ColumnInfo(
            name=f"x{i}", dtype="float64", kind="float", numeric=True, non_null=ROWS, distinct=1000
        )
        for i in range(FEATURES)
    ] + [
        ColumnInfo(
            name="label", dtype="int64", kind="integer", numeric=True, non_null=ROWS, distinct=3
        )
    ]
    plan, task = make_plan(
        infos, ROWS, algorithm="sgd_classifier", target="label", features=None, task_rows=1
    )
    source = DatasetSource(
        dataset_id="0" * 20,
        format="parquet",
        artifact=key,
        sha256="0" * 64,
        artifact_sha256=manifest_sha,
        size=0,
        rows=ROWS,
        task=task,
        plan=plan,
    )
    # As a dataset stored before the columnar form would be: its one file, read whole.
    legacy = source.model_copy(
        update={
            "artifact": manifest.original.key,
            "sha256": manifest.original.sha256,
            "artifact_sha256": None,
        }
    )
    stored_bytes = manifest.original.size + manifest.shuffled.size
    assert stored_bytes < DATASET_BYTES / 2, stored_bytes  # "a few hundred MB" in the store
    return {"store": store.url, "source": source, "legacy": legacy}


def _payload(stored: dict[str, Any], source: DatasetSource) -> dict[str, Any]:
    spec = {
        "model_name": "large",
        "algorithm": "sgd_classifier",
        "params": {"max_iter": 3, "tol": None},
        "merge": "average",  # one-shot shards and their merge: the data path, not rounds
        "dataset": {"kind": "uploaded", "id": "0" * 20, "target": "label"},
        "shards": SHARDS,
        "partition": "stratified",
        "test_size": 0.1,
    }
    return {
        "spec": spec,
        "artifacts": stored["store"],
        "dataset_source": source.model_dump(mode="json"),
    }


def test_shards_of_a_dataset_larger_than_the_limit_train_and_merge(
    stored: dict[str, Any],
) -> None:
    assert LIMIT < DATASET_BYTES
    base = _payload(stored, stored["source"])
    # One child per task, as a worker runs them.
    outcomes = [_child(("train_shard", {**base, "index": i})) for i in range(SHARDS)]
    assert all("result" in o for o in outcomes), "a shard ran out of memory under RLIMIT_AS"
    shards = []
    for result in [r for o in outcomes for r in o["result"]]:
        # What it read is its share of the rows (and the label column), not the dataset.
        assert result["bytes_read"] < DATASET_BYTES / 2
        shards.append(
            {
                "role": "shard",
                "artifact": result["artifact"],
                "sha256": result["sha256"],
                "rows": result["rows"],
                "metrics": result["metrics"],
            }
        )
    assert sum(s["rows"] for s in shards) == ROWS - int(np.ceil(0.1 * ROWS))
    merged = _child(("merge_job", {**base, "shards": shards}))
    assert "result" in merged, "the merge ran out of memory under RLIMIT_AS"
    assert merged["result"][0]["metrics"]["accuracy"] > 0.5


def test_the_same_limit_stops_a_task_that_reads_the_whole_dataset(
    stored: dict[str, Any],
) -> None:
    payload = {**_payload(stored, stored["legacy"]), "index": 0}
    assert _child(("train_shard", payload)) == {"memory_error": True}
