"""The artifact store's garbage-collection methods and the pure helpers around them."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from workers.processes import format_bytes
from zootrain.artifacts import ArtifactStore
from zootrain.errors import ArtifactError
from zootrain.store_gc import named_by_manifests, uris


def test_put_refreshes_the_time_of_bytes_it_finds_stored(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    uri, _ = store.put(b"model")
    old = time.time() - 7200
    os.utime((tmp_path / uri), (old, old))
    assert store.put(b"model")[0] == uri
    assert (tmp_path / uri).stat().st_mtime > time.time() - 60


def test_list_objects_shows_artifacts_and_temporary_files_only(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    uri, _ = store.put(b"model")
    (tmp_path / "models" / ".tmp-abc").write_bytes(b"half")  # a collector's aside
    (tmp_path / "models" / "README").write_text("not ours")
    listed = {o.key: o for o in store.list_objects()}
    assert set(listed) == {uri, "models/.tmp-abc"}
    assert listed[uri].size == 5 and not listed[uri].temporary
    assert listed["models/.tmp-abc"].temporary


def test_delete_keeps_what_was_modified_after_the_limit(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    uri, _ = store.put(b"model")
    limit = time.time() - 3600
    assert store.delete(uri, unless_modified_after=limit) is False  # written just now
    assert (tmp_path / uri).exists()
    assert [p.name for p in (tmp_path / "models").iterdir()] == [(tmp_path / uri).name]
    old = time.time() - 7200
    os.utime((tmp_path / uri), (old, old))
    assert store.delete(uri, unless_modified_after=limit) is True
    assert not (tmp_path / uri).exists()
    assert store.delete(uri, unless_modified_after=limit) is False  # gone already
    assert list((tmp_path / "models").iterdir()) == []


def test_delete_refuses_keys_outside_the_store(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError):
        ArtifactStore(tmp_path).delete("models/../../etc/passwd")
    with pytest.raises(ArtifactError):
        ArtifactStore(tmp_path).delete("rounds/../../etc/passwd")


def test_uris_are_found_in_any_record_bytes() -> None:
    a, b, c = "a" * 64, "b" * 64, "c" * 64
    data = (
        f'{{"artifact": "models/{a}.skops", "x": ["datasets/{b}.csv"], "p": "rounds/{c}.npz"}}'
        " models/zz jobs/" + c + ".npz"
    ).encode()
    assert uris(data) == {f"models/{a}.skops", f"datasets/{b}.csv", f"rounds/{c}.npz"}
    assert uris(b"{not json at all: models/" + a.encode() + b".skops") == {f"models/{a}.skops"}


def test_limits_are_written_as_a_person_would() -> None:
    assert format_bytes(1 << 30) == "1 GiB"
    assert format_bytes(900 * (1 << 20)) == "900 MiB"
    assert format_bytes(1610612736) == "1.5 GiB"
    assert format_bytes(512) == "512 B"


def test_a_marked_manifest_keeps_the_files_it_names(tmp_path: Path) -> None:
    """A dataset's record names its manifest only; the collector must keep the Parquet files
    the manifest names too (the upload's two copies)."""
    store = ArtifactStore(tmp_path)
    original, _ = store.put(b"original rows", kind="datasets", suffix="parquet")
    shuffled, _ = store.put(b"shuffled rows", kind="datasets", suffix="parquet")
    manifest = json.dumps({"original": {"key": original}, "shuffled": {"key": shuffled}})
    key, _ = store.put(manifest.encode(), kind="datasets", suffix="json")
    gone = "datasets/" + "0" * 64 + ".json"  # a record naming a manifest that is not there
    assert named_by_manifests(store, {key, gone, "models/" + "1" * 64 + ".skops"}) == {
        original,
        shuffled,
    }
