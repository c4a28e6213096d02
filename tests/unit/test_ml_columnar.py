"""The stored form of a dataset (zootrain.ml.columnar) and block-wise synthetic data
(zootrain.ml.synthetic): any rows can be had alone, the same on every machine, and every byte
read is checked."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from zootrain.artifacts import ArtifactStore
from zootrain.errors import ArtifactError
from zootrain.ml.columnar import ROW_COLUMN, Manifest, ParquetReader, group_rows, write_files
from zootrain.ml.datasets import SyntheticDataset
from zootrain.ml.synthetic import BLOCK_ROWS, Generator
from zootrain.uploads import StoredForm


def _stored(tmp_path: Path, rows: int = 30_000) -> tuple[ArtifactStore, Manifest, pa.Table]:
    rng = np.random.default_rng(0)
    table = pa.table(
        {
            "a": rng.normal(size=rows),
            "b": rng.integers(0, 5, rows),
            "c": pa.array(rng.choice(["x", "y", "z"], rows)),
        }
    )
    manifest, files = write_files(
        table, tmp_path, seed=11, dictionary=["b", "c"], rows_per_group=4096
    )
    store = ArtifactStore(tmp_path / "store")
    key, digest = StoredForm(manifest, files).put(store)
    assert Manifest.model_validate_json(store.get(key, digest)) == manifest
    return store, manifest, table


def _read(reader: ParquetReader, columns: list[str], rows: np.ndarray) -> pa.Table:
    parts = [table for _, table in reader.batches(columns, rows)]
    return pa.concat_tables(parts)


def test_row_groups_are_bounded() -> None:
    assert group_rows(1) == 65_536
    assert group_rows(50) == 4 * 1024 * 1024 // 400
    assert group_rows(100_000) == 1024


def test_chosen_rows_and_columns_are_read_from_their_row_groups_only(tmp_path: Path) -> None:
    store, manifest, table = _stored(tmp_path)
    reader = ParquetReader(store, manifest.original)
    assert len(manifest.original.row_groups) > 1
    rows = np.array([3, 17, 29_999])
    got = _read(reader, ["c", "a"], rows)
    assert got.column("a").to_pylist() == table.column("a").take(rows).to_pylist()
    assert got.column("c").to_pylist() == table.column("c").take(rows).to_pylist()
    # A handful of rows of one column costs that column's chunks of two row groups.
    before = store.bytes_read
    _read(reader, ["a"], np.array([5, 6]))
    assert store.bytes_read - before < manifest.original.size / 4


def test_the_shuffled_copy_is_a_seeded_permutation_with_original_row_numbers(
    tmp_path: Path,
) -> None:
    store, manifest, table = _stored(tmp_path)
    reader = ParquetReader(store, manifest.shuffled)
    everything = np.arange(table.num_rows)
    got = _read(reader, ["a", ROW_COLUMN], everything)
    order = np.asarray(got.column(ROW_COLUMN))
    assert sorted(order.tolist()) == everything.tolist() and not np.array_equal(order, everything)
    assert np.array_equal(np.asarray(got.column("a")), np.asarray(table.column("a"))[order])


def test_a_changed_column_chunk_is_refused_and_the_others_still_read(tmp_path: Path) -> None:
    store, manifest, _ = _stored(tmp_path)
    ref = manifest.original
    group = ref.row_groups[0]
    column = ref.columns.index("a")
    raw = bytearray(store.get_unchecked(ref.key))
    raw[group.offsets[column] + group.lengths[column] // 2] ^= 0x01
    store.put_raw(ref.key, bytes(raw))
    reader = ParquetReader(store, ref)
    with pytest.raises(ArtifactError, match="sha256"):
        _read(reader, ["a"], np.array([0]))
    assert _read(reader, ["b"], np.array([0])).num_rows == 1


@pytest.mark.parametrize("task", ["classification", "regression", "blobs"])
def test_synthetic_rows_are_made_block_by_block_alike_everywhere(task: str) -> None:
    options = {"noise": 0.5} if task == "regression" else {"n_classes": 3}
    spec = SyntheticDataset(
        kind="synthetic", task=task, n_samples=3 * BLOCK_ROWS + 100, n_features=8, **options
    )
    generator = Generator(spec)
    X, y = generator.all_rows()
    assert X.shape == (spec.n_samples, 8) and len(y) == spec.n_samples
    picked = np.array([0, 5, BLOCK_ROWS, 2 * BLOCK_ROWS + 7, spec.n_samples - 1])
    X2, y2 = Generator(spec).rows(picked)  # a fresh generator: nothing shared but the spec
    assert np.array_equal(X2, X[picked]) and np.array_equal(y2, y[picked])
    if task != "regression":
        assert np.array_equal(generator.labels(), y)
        assert set(np.unique(y)) == {0, 1, 2}
    # A larger dataset from the same seed starts with the same rows; another seed does not.
    bigger = Generator(spec.model_copy(update={"n_samples": spec.n_samples + BLOCK_ROWS}))
    assert np.array_equal(bigger.rows(picked[:4])[0], X[picked[:4]])
    other = Generator(spec.model_copy(update={"random_state": 1}))
    assert not np.array_equal(other.rows(picked)[0], X[picked])
