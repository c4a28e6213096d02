"""The artifact store as the tests see it: the same zootrain.artifacts.ArtifactStore the
services use, opened with a stack's settings (its ZOOTRAIN_ARTIFACTS and AWS_* variables)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from unittest import mock

from zootrain.artifacts import ArtifactStore

BACKENDS = ("file", "s3")


def open_store(settings: Mapping[str, str]) -> ArtifactStore:
    aws = {k: v for k, v in settings.items() if k.startswith("AWS_")}
    # obstore reads the AWS_* variables when the store is built.
    with mock.patch.dict(os.environ, aws):
        return ArtifactStore(settings["ZOOTRAIN_ARTIFACTS"])


def keys(settings: Mapping[str, str], kind: str | None = None) -> list[str]:
    """Every object in the store (of ``kind``), sorted."""
    return sorted(o.key for o in open_store(settings).list(kind))


def corrupt(settings: Mapping[str, str], key: str) -> None:
    """Flip a byte in the middle of a stored object, in place (its key unchanged)."""
    store = open_store(settings)
    digest = key.split("/")[1].split(".")[0]
    data = bytearray(store.get_unchecked(key))
    data[len(data) // 2] ^= 0xFF
    store.put_raw(key, bytes(data))
    assert digest  # the key still names the original content


def plant(settings: Mapping[str, str], key: str, data: bytes) -> None:
    open_store(settings).put_raw(key, data)
