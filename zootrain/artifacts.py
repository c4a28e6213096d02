"""The artifact store: model files on a shared directory, named by their sha256.

ZooKeeper keeps only an artifact's URI and checksum; the bytes live here. Files are written to a
temporary name and renamed into place, so a reader never sees half a file, and the name is the
content's digest, so two workers writing the same model write the same file harmlessly.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

from zootrain.errors import ArtifactError

_URI = re.compile(r"^(models|datasets)/[0-9a-f]{64}\.[a-z]{1,10}$")


class ArtifactStore:
    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).resolve()

    def put(self, data: bytes, *, kind: str = "models", suffix: str = "skops") -> tuple[str, str]:
        """Store ``data``; returns its URI (relative to the store) and sha256."""
        digest = hashlib.sha256(data).hexdigest()
        uri = f"{kind}/{digest}.{suffix}"
        target = self.path(uri)
        if target.exists():
            return uri, digest
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
