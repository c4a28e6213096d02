"""Uploaded datasets without a server: reading, describing, the encoding plan, loading (X, y),
the job spec and record fields, and a shard trained and merged from an uploaded file."""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from tests.support import tables
from tests.support.tables import csv_bytes, parquet_bytes
from workers import train_child
from zootrain.artifacts import ArtifactStore
from zootrain.errors import ArtifactError
from zootrain.ml import modelfile
from zootrain.ml.datasets import UploadedDataset, dataset_task, load_dataset
from zootrain.ml.tabular import (
    MAX_CATEGORIES,
    ColumnInfo,
    DatasetSource,
    PlanError,
    Table,
    TableError,
    describe,
    ingest,
    load_uploaded,
    make_plan,
    sniff,
)
from zootrain.records import JobRecord, JobSpec, new_job_id, utcnow
from zootrain.uploads import StoredForm

DATASET_ID = "0192f3a4b5c6d7e8f9a0"
LIMITS: dict[str, Any] = {"max_rows": 10_000, "max_columns": 100}


def frame(n: int = 120, seed: int = 0) -> pd.DataFrame:
    return tables.flowers(n, seed, petals=True)


def table(data: bytes, fmt: str = "csv", **limits: int) -> Table:
    return describe(data, fmt, **{**LIMITS, **limits})  # type: ignore[arg-type]


def column(t: Table, name: str) -> ColumnInfo:
    return next(c for c in t.columns if c.name == name)


def source(data: bytes, fmt: str, algorithm: str, target: str, **kw: Any) -> DatasetSource:
    t = table(data, fmt)
    plan, task = make_plan(t.columns, t.rows, algorithm=algorithm, target=target, **kw)
    return DatasetSource(
        dataset_id=DATASET_ID,
        format=fmt,  # type: ignore[arg-type]
        artifact=f"datasets/{'0' * 64}.{fmt}",
        sha256="0" * 64,
        size=len(data),
        rows=t.rows,
        task=task,
        plan=plan,
    )


# -- sniffing and describing --------------------------------------------------------------------


def test_sniff_tells_formats_apart() -> None:
    assert sniff(parquet_bytes(frame())[:100], "data.csv", None) == "parquet"
    assert sniff(b"a,b\n1,2\n", "data.csv", "text/csv") == "csv"
    assert sniff(b"a,b\n1,2\n", None, None) == "csv"
    with pytest.raises(TableError, match="PAR1") as caught:
        sniff(b"a,b\n1,2\n", "data.parquet", None)
    assert not caught.value.unsupported
    for head, name in [
        (b"PK\x03\x04rest", "book.xlsx"),
        (b"\x1f\x8b\x08\x00", "data.csv.gz"),
        (b"a,b\x00\x01", "data.csv"),
        (b"{}", "data.json"),
    ]:
        with pytest.raises(TableError) as caught:
            sniff(head, name, None)
        assert caught.value.unsupported, head


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_describe_reports_kinds_missing_values_and_levels(fmt: str) -> None:
    df = frame()
    df.loc[3, "price"] = np.nan
    data = csv_bytes(df) if fmt == "csv" else parquet_bytes(df)
    t = table(data, fmt)
    assert t.rows == 120
    assert [c.name for c in t.columns] == list(df.columns)
    kinds = {c.name: (c.kind, c.numeric) for c in t.columns}
    assert kinds == {
        "length": ("float", True),
        "petals": ("integer", True),
        "wild": ("boolean", True),
        "color": ("text", False),
        "species": ("text", False),
        "price": ("float", True),
    }
    assert column(t, "price").non_null == 119
    color = column(t, "color")
    assert (color.categories, color.levels, color.distinct) == (3, ["blue", "red", "white"], 3)
    assert column(t, "length").categories is None and column(t, "length").levels is None


def test_describe_counts_infinity_as_missing_and_reads_booleans_with_gaps() -> None:
    t = table(b"x,flag,y\n1.5,True,a\ninf,,b\n2.5,False,a\n")
    assert column(t, "x").non_null == 2
    flag = column(t, "flag")
    assert (flag.kind, flag.non_null, flag.distinct) == ("boolean", 2, 2)


def test_many_or_long_values_have_no_levels() -> None:
    many = pd.DataFrame({"id": [f"u{i}" for i in range(MAX_CATEGORIES + 1)], "y": 1})
    info = column(table(csv_bytes(many)), "id")
    assert (info.categories, info.levels) == (MAX_CATEGORIES + 1, None)
    long = pd.DataFrame({"note": ["x" * 101, "y"], "y": [1, 2]})
    assert column(table(csv_bytes(long)), "note").levels is None


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (b"\n\n", "no columns"),
        (b"a,b\n", "no rows"),
        (b"a,b,a\n1,2,3\n", "appears twice"),
        (b"a,b\n1,2,3\n4,5\n", "first data row has 3 fields"),
        (b"a,b\n1,2\n4,5,6\n", "Expected 2 fields"),
        (b"a,b\n\xff\xfe\xfa,1\n", "UTF-8"),
        (b'a,b\n"unterminated,1\n', "unreadable CSV"),
    ],
)
def test_unusable_csv_is_refused_with_a_reason(data: bytes, needle: str) -> None:
    with pytest.raises(TableError, match=needle) as caught:
        table(data)
    assert not caught.value.unsupported


def test_ceilings_on_rows_and_columns() -> None:
    data = csv_bytes(frame(50))
    with pytest.raises(TableError, match="ZOOTRAIN_MAX_DATASET_ROWS"):
        table(data, max_rows=49)
    assert table(data, max_rows=50).rows == 50
    with pytest.raises(TableError, match="ZOOTRAIN_MAX_DATASET_COLUMNS"):
        table(data, max_columns=5)
    pq = parquet_bytes(frame(50))
    with pytest.raises(TableError, match="ZOOTRAIN_MAX_DATASET_ROWS"):
        table(pq, "parquet", max_rows=10)
    with pytest.raises(TableError, match="ZOOTRAIN_MAX_DATASET_COLUMNS"):
        table(pq, "parquet", max_columns=5)


def test_corrupt_parquet_is_unreadable() -> None:
    data = parquet_bytes(frame())
    with pytest.raises(TableError, match="unreadable PARQUET"):
        table(data[:200] + b"\x00" * 50 + data[-100:], "parquet")
    with pytest.raises(TableError, match="unreadable PARQUET"):
        table(b"PAR1" + b"garbage" * 10, "parquet")


def test_describe_reads_a_path_like_bytes(tmp_path: Path) -> None:
    data = csv_bytes(frame())
    (tmp_path / "f.csv").write_bytes(data)
    assert table(data) == describe(tmp_path / "f.csv", "csv", **LIMITS)


# -- the encoding plan --------------------------------------------------------------------------


def test_plan_encodes_numbers_booleans_and_one_hot_deterministically() -> None:
    t = table(csv_bytes(frame()))
    plan, task = make_plan(
        t.columns, t.rows, algorithm="random_forest_classifier", target="species", features=None
    )
    assert task == "classification"
    assert plan.target_encoding == "labels" and plan.target_kind == "text"
    assert [(f.column, f.encoding) for f in plan.features] == [
        ("length", "numeric"),
        ("petals", "numeric"),
        ("wild", "boolean"),
        ("color", "onehot"),
        ("price", "numeric"),
    ]
    assert plan.encoded_features == [
        "length",
        "petals",
        "wild",
        "color=blue",
        "color=red",
        "color=white",
        "price",
    ]
    assert plan.n_features == 7
    # Another file with the rows in another order has the same plan.
    shuffled = frame().sample(frac=1.0, random_state=3)
    t2 = table(csv_bytes(shuffled))
    plan2, _ = make_plan(
        t2.columns, t2.rows, algorithm="random_forest_classifier", target="species", features=None
    )
    assert plan2 == plan


def test_plan_takes_the_listed_features_in_their_order() -> None:
    t = table(csv_bytes(frame()))
    plan, _ = make_plan(
        t.columns,
        t.rows,
        algorithm="random_forest_regressor",
        target="price",
        features=["color", "length"],
    )
    assert plan.encoded_features == ["color=blue", "color=red", "color=white", "length"]
    assert plan.columns() == ["color", "length", "price"]
    assert plan.target_encoding == "numeric"


@pytest.mark.parametrize(
    ("algorithm", "target", "features", "field", "needle"),
    [
        ("random_forest_classifier", "nope", None, "dataset.target", "'nope' is not in"),
        ("random_forest_classifier", "species", ["ghost"], "dataset.features", "'ghost'"),
        ("random_forest_regressor", "species", None, "dataset.target", "numeric target"),
        ("random_forest_classifier", "one", None, "dataset.target", "single value"),
        ("random_forest_classifier", "species", None, "dataset.features", "'id'"),
        ("random_forest_classifier", "species", ["gap"], "dataset.features", "'gap' has 1"),
        ("random_forest_classifier", "gap", ["length"], "dataset.target", "'gap' has 1"),
        ("random_forest_classifier", "species", ["species"], "dataset.features", "only"),
    ],
)
def test_plan_refusals_name_the_field_and_column(
    algorithm: str, target: str, features: list[str] | None, field: str, needle: str
) -> None:
    df = frame(60)
    df["id"] = [f"row-{i}" for i in range(60)]  # 60 distinct values: not encodable
    df["one"] = "same"
    df["gap"] = 1.0
    df.loc[5, "gap"] = np.nan
    t = table(csv_bytes(df))
    with pytest.raises(PlanError) as caught:
        make_plan(t.columns, t.rows, algorithm=algorithm, target=target, features=features)
    assert caught.value.field == field
    assert needle in str(caught.value), str(caught.value)
    assert str(caught.value).startswith(field)


def test_clustering_scores_labels_but_not_floats() -> None:
    t = table(csv_bytes(frame()))
    _, labels = make_plan(t.columns, t.rows, algorithm="kmeans", target="species", features=None)
    _, floats = make_plan(t.columns, t.rows, algorithm="kmeans", target="price", features=None)
    assert (labels, floats) == ("classification", "regression")


def test_plan_refuses_too_many_encoded_values(monkeypatch: pytest.MonkeyPatch) -> None:
    from zootrain.ml import encoding as tabular  # the plan lives there

    monkeypatch.setattr(tabular, "MAX_ENCODED_VALUES", 100)
    t = table(csv_bytes(frame()))
    with pytest.raises(PlanError, match="encoded features"):
        make_plan(t.columns, t.rows, algorithm="kmeans", target="species", features=None)


# -- loading ------------------------------------------------------------------------------------


def test_csv_and_parquet_load_the_same_arrays() -> None:
    df = frame()
    a = load_uploaded(
        source(csv_bytes(df), "csv", "random_forest_classifier", "species", features=None),
        csv_bytes(df),
    )
    b = load_uploaded(
        source(parquet_bytes(df), "parquet", "random_forest_classifier", "species", features=None),
        parquet_bytes(df),
    )
    np.testing.assert_allclose(a[0], b[0])
    assert a[1].tolist() == b[1].tolist() == df["species"].tolist()
    X = a[0]
    assert X.dtype == np.float64 and X.shape == (120, 7)
    assert X[:, 2].tolist() == df["wild"].astype(float).tolist()  # booleans as 0/1
    onehot = X[:, 3:6]
    assert (onehot.sum(axis=1) == 1).all()
    assert onehot[:, 1].tolist() == (df["color"] == "red").astype(float).tolist()
    np.testing.assert_allclose(X[:, 0], df["length"].to_numpy())


def test_loading_reads_only_the_planned_columns() -> None:
    df = frame()
    df["note"] = [f"free text {i}" for i in range(len(df))]  # not encodable, not used
    data = csv_bytes(df)
    src = source(data, "csv", "ridge", "price", features=["length", "petals"])
    X, y = load_uploaded(src, data)
    assert X.shape == (120, 2) and y.dtype == np.float64
    np.testing.assert_allclose(y, df["price"].to_numpy())


def test_integer_and_boolean_labels_keep_their_type() -> None:
    df = pd.DataFrame({"x": np.arange(40.0), "k": np.arange(40) % 3, "b": np.arange(40) % 2 == 0})
    data = csv_bytes(df)
    _, y = load_uploaded(source(data, "csv", "random_forest_classifier", "k", features=["x"]), data)
    assert y.dtype == np.int64 and sorted(set(y.tolist())) == [0, 1, 2]
    _, yb = load_uploaded(
        source(data, "csv", "random_forest_classifier", "b", features=["x"]), data
    )
    assert yb.dtype == bool


def test_uploaded_spec_validation_is_pure_pydantic() -> None:
    good = {"kind": "uploaded", "id": DATASET_ID, "target": "species"}
    UploadedDataset.model_validate(good)
    for bad, needle in [
        ({**good, "id": "../../etc"}, "id"),
        ({**good, "target": ""}, "target"),
        ({**good, "features": []}, "features"),
        ({**good, "features": ["a", "a"]}, "twice"),
        ({**good, "features": ["species"]}, "target"),
        ({**good, "surprise": 1}, "surprise"),
    ]:
        with pytest.raises(ValidationError, match=needle):
            UploadedDataset.model_validate(bad)
    spec = UploadedDataset.model_validate(good)
    with pytest.raises(ValueError, match="record"):
        dataset_task(spec)
    with pytest.raises(ValueError, match="record"):
        load_dataset(spec)


def _spec(**dataset: Any) -> JobSpec:
    return JobSpec.model_validate(
        {
            "model_name": "flowers",
            "algorithm": "random_forest_classifier",
            "params": {"n_estimators": 3},
            "dataset": {"kind": "uploaded", "id": DATASET_ID, "target": "species", **dataset},
            "shards": 2,
        }
    )


def test_job_record_takes_the_resolved_source_and_keeps_it() -> None:
    data = csv_bytes(frame())
    src = source(data, "csv", "random_forest_classifier", "species", features=None)
    spec = _spec()
    now = utcnow()
    with pytest.raises(ValidationError, match="dataset_source"):
        JobRecord(id=new_job_id(), spec=spec, created_at=now, updated_at=now)
    assert "dataset_source" not in spec.model_dump()  # not part of the request
    job = JobRecord(id=new_job_id(), spec=spec, dataset_source=src, created_at=now, updated_at=now)
    assert job.dataset_source == src
    again = JobRecord.load(job.dump())
    assert again.dataset_source == src
    assert again.dataset_source is not None
    assert again.dataset_source.plan.encoded_features[-1] == "price"
    with pytest.raises(ValidationError):
        job.dataset_source = None  # type: ignore[misc]
    with pytest.raises(ValidationError):
        src.rows = 3  # type: ignore[misc]


# -- a shard and the merge, from an uploaded file ----------------------------------------------


def _payload(
    store: ArtifactStore, data: bytes, fmt: str, *, legacy: bool = False, **spec: Any
) -> dict[str, Any]:
    """A shard payload on ``data`` as the job service stores it (columnar: two Parquet files and
    a manifest), or, ``legacy``, as it stored uploads before: the file itself."""
    digest = hashlib.sha256(data).hexdigest()
    if legacy:
        uri, _ = store.put(data, kind="datasets", suffix=fmt)
        manifest_sha: str | None = None
    else:
        with tempfile.TemporaryDirectory() as directory:
            source = Path(directory) / "upload"
            source.write_bytes(data)
            _, manifest, files = ingest(
                source,
                fmt,  # type: ignore[arg-type]
                Path(directory),
                sha256=digest,
                max_rows=10_000,
                max_columns=100,
            )
            uri, manifest_sha = StoredForm(manifest, files).put(store)
    job = JobSpec.model_validate(
        {
            "model_name": "flowers",
            "params": {"n_estimators": 5} if "forest" in spec["algorithm"] else {"max_iter": 5000},
            "shards": 2,
            "dataset": {"kind": "uploaded", "id": DATASET_ID, "target": spec.pop("target")},
            **spec,
        }
    )
    t = table(data, fmt)
    assert isinstance(job.dataset, UploadedDataset)
    plan, task = make_plan(
        t.columns, t.rows, algorithm=job.algorithm, target=job.dataset.target, features=None
    )
    src = DatasetSource(
        dataset_id=DATASET_ID,
        format=fmt,  # type: ignore[arg-type]
        artifact=uri,
        sha256=digest,
        artifact_sha256=manifest_sha,
        size=len(data),
        rows=t.rows,
        task=task,
        plan=plan,
    )
    return {
        "spec": job.model_dump(mode="json"),
        "artifacts": store.url,
        "dataset_source": src.model_dump(mode="json"),
    }


@pytest.mark.parametrize(
    ("fmt", "algorithm", "target", "partition", "legacy"),
    [
        ("csv", "random_forest_classifier", "species", "random", False),
        ("parquet", "random_forest_classifier", "species", "stratified", False),
        ("parquet", "random_forest_regressor", "price", "range", False),
        ("csv", "logistic_regression", "species", "range", False),
        ("csv", "random_forest_classifier", "species", "random", True),
    ],
)
def test_shards_train_and_merge_from_an_uploaded_file(
    tmp_path: Path, fmt: str, algorithm: str, target: str, partition: str, legacy: bool
) -> None:
    store = ArtifactStore(tmp_path)
    df = frame(200)
    data = csv_bytes(df) if fmt == "csv" else parquet_bytes(df)
    base = _payload(
        store, data, fmt, legacy=legacy, algorithm=algorithm, target=target, partition=partition
    )
    shards = []
    for index in range(2):
        result = train_child.train_shard({**base, "index": index})
        assert result["rows"] == 80
        shards.append(
            {
                "role": "shard",
                "artifact": result["artifact"],
                "sha256": result["sha256"],
                "rows": 80,
            }
        )
    merged = train_child.merge_job({**base, "shards": shards})
    # price as the target leaves species (3 one-hot columns) among the features
    assert merged["n_features"] == (7 if target == "species" else 9)
    model = modelfile.loads(store.get(merged["artifact"], merged["sha256"]))
    if target == "species":
        assert merged["task"] == "classification"
        assert merged["classes"] == ["setosa", "versicolor", "virginica"]
        assert merged["metrics"]["accuracy"] > 0.8
        row = np.array([[5.0, 4, 1, 0, 1, 0, 50.0]])
        assert str(model.predict(row)[0]) in merged["classes"]
    else:
        assert merged["task"] == "regression" and merged["metrics"]["r2"] > 0.5


@pytest.mark.parametrize("part", ["manifest", "original", "shuffled", "legacy"])
def test_a_tampered_dataset_file_is_refused(tmp_path: Path, part: str) -> None:
    store = ArtifactStore(tmp_path)
    data = csv_bytes(frame())
    payload = _payload(
        store,
        data,
        "csv",
        legacy=part == "legacy",
        algorithm="random_forest_classifier",
        target="species",
        partition="range",
    )
    key = payload["dataset_source"]["artifact"]
    if part in ("original", "shuffled"):
        manifest = json.loads(store.get_unchecked(key))
        key = manifest[part]["key"]
    raw = bytearray(store.get_unchecked(key))
    raw[len(raw) // 2] ^= 0x01
    store.put_raw(key, bytes(raw))
    with pytest.raises(ArtifactError, match="sha256"):
        train_child.train_shard({**payload, "index": 0})
