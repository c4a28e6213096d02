"""The artifact store's directory backend and its URL forms (no server needed)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from zootrain.artifacts import ArtifactStore, normalize_url
from zootrain.errors import ArtifactError


def test_locations_are_urls() -> None:
    assert normalize_url("var/artifacts") == (Path.cwd() / "var/artifacts").as_uri()
    assert normalize_url("/srv/a/") == "file:///srv/a"
    assert normalize_url("file:///srv/a") == "file:///srv/a"
    assert normalize_url("s3://bucket/some/prefix/") == "s3://bucket/some/prefix"
    assert normalize_url("s3://bucket") == "s3://bucket"
    for bad in ("s3://", "gs://bucket/x", "http://host/x"):
        with pytest.raises(ValueError):
            normalize_url(bad)


def test_a_killed_writers_staging_file_is_listed_for_collection(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    key, _ = store.put(b"model")
    staging = tmp_path / f"{key}#3"  # what the directory store writes before its rename
    staging.write_bytes(b"half")
    old = time.time() - 3600
    os.utime(staging, (old, old))
    listed = {o.key: o for o in store.list_objects()}
    assert set(listed) == {key, f"{key}#3"}
    assert listed[f"{key}#3"].temporary and not listed[key].temporary
    assert abs(listed[f"{key}#3"].modified - old) < 2
    assert [o.key for o in store.list()] == [key]  # never among the artifacts
    store.delete(f"{key}#3")
    assert not staging.exists() and store.size(key) == 5


def test_open_checked_gives_the_local_file_only_when_its_bytes_match(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    uri, sha256 = store.put(b"model bytes")
    handle = store.open_checked(uri, sha256)
    assert handle is not None
    with handle:
        assert handle.read() == b"model bytes"  # from the start, after the check
    (tmp_path / uri).write_bytes(b"tampered!!!")
    with pytest.raises(ArtifactError, match="sha256"):
        store.open_checked(uri, sha256)
    (tmp_path / uri).unlink()
    with pytest.raises(ArtifactError, match="missing"):
        store.open_checked(uri, sha256)


def test_open_checked_reads_the_bytes_it_checked_and_takes_an_empty_file(tmp_path: Path) -> None:
    # The check hashes the file through a map of the handle it returns: a file renamed into
    # its place afterwards is not what the handle reads.
    store = ArtifactStore(tmp_path)
    data = os.urandom(3 * 1024 * 1024 + 17)  # several pages, not a multiple of one
    uri, sha256 = store.put(data)
    handle = store.open_checked(uri, sha256)
    assert handle is not None
    swapped = tmp_path / "swapped"
    swapped.write_bytes(b"something else")
    os.replace(swapped, tmp_path / uri)
    with handle:
        assert handle.read() == data
    with pytest.raises(ArtifactError, match="sha256"):
        store.open_checked(uri, sha256)  # the file now there is checked, and refused
    empty, empty_sha256 = store.put(b"")  # nothing to map: hashed as no bytes
    handle = store.open_checked(empty, empty_sha256)
    assert handle is not None
    with handle:
        assert handle.read() == b""
