"""The artifact store: model files on a shared directory, named by their sha256.

ZooKeeper keeps only an artifact's URI and checksum; the bytes live here. Files are written to a
temporary name and renamed into place, so a reader never sees half a file, and the name is the
content's digest, so two workers writing the same model write the same file harmlessly.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from zootrain.errors import ArtifactError

_URI = re.compile(r"^(models|datasets)/[0-9a-f]{64}\.[a-z]{1,10}$")
# What list_objects() shows and delete() takes: an artifact, or a temporary file (a write in
# progress, or one a killed process left behind).
_KEY = re.compile(r"^(models|datasets)/(\.tmp-[A-Za-z0-9_.-]{1,200}|[0-9a-f]{64}\.[a-z]{1,10})$")
KINDS = ("models", "datasets")


@dataclass(frozen=True)
class StoredObject:
    key: str  # "models/<sha256>.skops", "datasets/<sha256>.csv", or ".../.tmp-<random>"
    size: int  # bytes
    modified: float  # epoch seconds of the latest write, or of a put() that found it there

    @property
    def temporary(self) -> bool:
        return self.key.rpartition("/")[2].startswith(".tmp-")


class ArtifactStore:
    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).resolve()

    def put(self, data: bytes, *, kind: str = "models", suffix: str = "skops") -> tuple[str, str]:
        """Store ``data``; returns its URI (relative to the store) and sha256."""
        digest = hashlib.sha256(data).hexdigest()
        uri = f"{kind}/{digest}.{suffix}"
        target = self.path(uri)
        try:
            # The same bytes are stored already. Touch them: garbage collection keeps what was
            # modified within its grace period, and a record naming this file is about to be
            # written (the file may be one nobody referenced until now).
            os.utime(target)
            return uri, digest
        except FileNotFoundError:
            pass
        except PermissionError:
            return uri, digest  # another user's file: it exists, which is what matters here
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        # The rename is in the directory: without this, a crash could lose the file's name
        # after its record (which names it) was written.
        _fsync_directory(target.parent)
        return uri, digest

    def get(self, uri: str, sha256: str) -> bytes:
        """Read an artifact, refusing it unless its bytes match the recorded sha256."""
        try:
            data = self.path(uri).read_bytes()
        except FileNotFoundError:
            raise ArtifactError(f"artifact {uri} is missing from the store") from None
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha256:
            raise ArtifactError(
                f"artifact {uri} does not match its recorded sha256 (tampered or corrupt)"
            )
        return data

    def path(self, uri: str) -> Path:
        # URIs are made by put(), never by users; the pattern keeps a forged record from
        # pointing outside the store.
        if not _URI.match(uri):
            raise ArtifactError(f"invalid artifact URI {uri!r}")
        return self.root / uri

    # -- garbage collection (zootrain/store_gc.py decides what goes; these list, touch, delete)

    def list_objects(self) -> Iterator[StoredObject]:
        """Every artifact and temporary file in the store, in no particular order.

        Blocking (it walks the directory): call it from a thread. A backend must list every
        object a delete() could remove, with the time of its latest write; anything it does
        not list is never collected.
        """
        for kind in KINDS:
            directory = self.root / kind
            with contextlib.suppress(FileNotFoundError), os.scandir(directory) as entries:
                for entry in entries:
                    key = f"{kind}/{entry.name}"
                    if not _KEY.match(key):
                        continue
                    try:
                        stat = entry.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        continue  # deleted meanwhile
                    yield StoredObject(key, stat.st_size, stat.st_mtime)

    def touch(self, uri: str) -> bool:
        """Refresh an artifact's modified time; False if it is not in the store (any more).

        Blocking: call it from a thread. A process about to write a record that names an
        artifact written a while ago touches it first: the collector keeps what was modified
        within its grace period, and one that already took the file leaves touch() nothing to
        find, so the record is never written for a file that is gone (store_gc.py).
        """
        try:
            os.utime(self.path(uri))
            return True
        except FileNotFoundError:
            return False
        except PermissionError:
            return self.path(uri).exists()

    def delete(self, key: str, *, unless_modified_after: float | None = None) -> bool:
        """Remove one object listed by list_objects(); False if it was not there, or was
        modified (written, or touched by put()) after ``unless_modified_after``.

        Blocking: call it from a thread. The check and the removal must not let a put() of the
        same bytes slip between them (a put() that finds the object counts on it staying): here
        the file is first renamed aside, which a concurrent put()'s touch cannot follow; the
        aside file's time then tells whether the touch came first, and if so it is put back.
        """
        if not _KEY.match(key):
            raise ArtifactError(f"invalid artifact key {key!r}")
        path = self.root / key
        if unless_modified_after is None:
            try:
                path.unlink()
            except FileNotFoundError:
                return False
            _fsync_directory(path.parent)
            return True
        aside = path.with_name(f".tmp-gc-{secrets.token_hex(8)}")
        try:
            os.replace(path, aside)
        except FileNotFoundError:
            return False
        if aside.stat().st_mtime > unless_modified_after:
            with contextlib.suppress(FileExistsError):
                os.link(aside, path)  # put back; an identical put() may have made it again
            aside.unlink()
            return False
        aside.unlink()
        _fsync_directory(path.parent)
        return True


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
