"""The artifact store: every file zootrain keeps, in a directory or an S3-compatible bucket.

``ZOOTRAIN_ARTIFACTS`` is a URL: a plain path or ``file:///…`` (a directory, shared by every
process on one machine or over NFS), or ``s3://bucket/prefix`` for AWS S3, MinIO, Ceph RGW,
Garage, SeaweedFS… configured the standard AWS way (``AWS_ENDPOINT_URL``,
``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION``, or an instance profile). Both
go through obstore (the Rust ``object_store`` crate, also under Apache Arrow's and Polars' cloud
I/O; docs/artifact-stores.md says why and what it measured), so the code above this module does
not know which one it talks to.

ZooKeeper keeps an artifact's key and sha256; the bytes live here. Keys are
``(models|datasets|rounds)/<sha256>.<ext>``: the name is the content's digest, so two workers
writing the same bytes write the same object harmlessly (``rounds``: a round's parameters or a
shard's result too large to keep inline in ZooKeeper, zootrain/rounds.py). Every write is
atomic as readers see it (a directory store writes a staging file and renames it; S3 makes an
object visible only when its single PUT or multipart upload completes), and every read checks
the bytes against the sha256 the caller got from ZooKeeper. Transient errors (5xx, dropped
connections, timeouts) are retried by obstore with exponential backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import mmap
import os
import re
import secrets
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import urlparse

import obstore
from obstore.exceptions import NotFoundError
from obstore.store import LocalStore, S3Store

from zootrain.errors import ArtifactError

if TYPE_CHECKING:
    from obstore.store import ClientConfig, RetryConfig

KINDS = ("models", "datasets", "rounds")
NAME = r"[0-9a-f]{64}\.[a-z]{1,10}"
"""An artifact's name under its kind: the content's sha256 and an extension."""
_KINDS = "|".join(KINDS)
_KEY = re.compile(rf"^({_KINDS})/{NAME}$")
# obstore's directory store writes "<key>#<n>" and renames it into place; it hides such files
# from its own listings, and they are listed here so that garbage collection can remove the
# ones a killed writer left behind. (S3 has no such files: an unfinished multipart upload is
# not an object; a bucket lifecycle rule, AbortIncompleteMultipartUpload, clears its parts.)
_STAGING = re.compile(rf"^({_KINDS})/({NAME}#\d+|\.tmp-[A-Za-z0-9_.-]{{1,200}})$")
CHUNK = 8 * 1024 * 1024
"""Multipart part size for uploads and the read size of streamed downloads."""
RANGE_GAP = 64 * 1024
"""Ranges of one object closer than this are fetched in one request."""
RANGE_CONCURRENCY = 8
_RETRY: RetryConfig = {
    "max_retries": 8,
    "retry_timeout": timedelta(minutes=3),
    "backoff": {"init_backoff": timedelta(milliseconds=100), "max_backoff": timedelta(seconds=15)},
}


@dataclass(frozen=True)
class StoredObject:
    """One object of the store, as a listing shows it."""

    key: str  # "models/<sha256>.skops", "datasets/<sha256>.json", or a staging file "…#<n>"
    size: int  # bytes
    modified: float  # epoch seconds of its latest write (a put of the same bytes rewrites it)

    @property
    def temporary(self) -> bool:
        """A directory store's staging file: a write in progress, or one a killed process
        left behind."""
        return bool(_STAGING.match(self.key))


def normalize_url(location: str | Path) -> str:
    """``file:///abs/path`` for a plain path or file URL, ``s3://bucket/prefix`` as given."""
    text = str(location)
    parsed = urlparse(text)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise ValueError(f"artifact store {text!r}: an s3:// URL needs a bucket name")
        return f"s3://{parsed.netloc}/{parsed.path.strip('/')}".rstrip("/")
    if parsed.scheme == "file":
        return Path(parsed.path).resolve().as_uri()
    if parsed.scheme and len(parsed.scheme) > 1:
        raise ValueError(
            f"artifact store {text!r}: use a path, a file:// URL or an s3://bucket/prefix URL"
        )
    return Path(text).resolve().as_uri()


class ArtifactStore:
    def __init__(self, location: str | Path) -> None:
        self.url = normalize_url(location)
        self.local_root: Path | None = None
        if self.url.startswith("s3://"):
            self._store: Any = _s3_store(self.url)
        else:
            self.local_root = Path(urlparse(self.url).path)
            self.local_root.mkdir(parents=True, exist_ok=True)
            self._store = LocalStore(self.local_root)
        self.bytes_read = 0
        """Bytes this process fetched from the store (benchmarks read it)."""

    def __repr__(self) -> str:
        return f"ArtifactStore({self.url!r})"

    # -- writing ----------------------------------------------------------------------------------

    def put(self, data: bytes, *, kind: str = "models", suffix: str = "skops") -> tuple[str, str]:
        """Store ``data``; returns its key and sha256."""
        digest = hashlib.sha256(data).hexdigest()
        key = _key(kind, digest, suffix)
        obstore.put(self._store, key, data, use_multipart=len(data) > CHUNK, chunk_size=CHUNK)
        self._synced(key)
        return key, digest

    def put_file(
        self, path: Path, *, kind: str, suffix: str, sha256: str | None = None
    ) -> tuple[str, str, int]:
        """Stream a local file into the store (multipart past CHUNK bytes, never all in memory);
        returns its key, sha256 and size. ``sha256``, when the caller already hashed the file,
        saves a pass over it."""
        digest = sha256 or file_sha256(path)
        key = _key(kind, digest, suffix)
        size = path.stat().st_size
        # A Path, not an open file: obstore then reads it in Rust, part by part.
        obstore.put(
            self._store, key, path, use_multipart=size > CHUNK, chunk_size=CHUNK, max_concurrency=4
        )
        self._synced(key)
        return key, digest, size

    def _synced(self, key: str) -> None:
        # A directory store renames its staging file into place; without an fsync of the
        # directory a crash could lose the file's name after the record naming it was written.
        # (A put of bytes already stored rewrites them, which is also what refreshes their
        # time for garbage collection: store_gc.py.)
        if self.local_root is not None:
            _fsync_directory((self.local_root / key).parent)

    # -- reading ----------------------------------------------------------------------------------

    def get(self, key: str, sha256: str) -> bytes:
        """An artifact's bytes, refused unless they match the recorded sha256."""
        try:
            data = bytes(obstore.get(self._store, _check(key)).bytes())
        except (NotFoundError, FileNotFoundError):
            raise _missing(key) from None
        self.bytes_read += len(data)
        _verify(key, hashlib.sha256(data).hexdigest(), sha256)
        return data

    def get_range(self, key: str, start: int, length: int, sha256: str) -> bytes:
        """``length`` bytes at ``start`` of an artifact, checked against the sha256 recorded
        for that range (datasets record one per column chunk: zootrain.ml.columnar)."""
        if length == 0:
            data = b""
        else:
            try:
                data = bytes(
                    obstore.get_range(self._store, _check(key), start=start, length=length)
                )
            except (NotFoundError, FileNotFoundError):
                raise _missing(key) from None
        self.bytes_read += len(data)
        if len(data) != length:
            raise ArtifactError(f"artifact {key}: short read at {start} ({len(data)} of {length})")
        _verify(f"{key} [{start}:{start + length}]", hashlib.sha256(data).hexdigest(), sha256)
        return data

    def get_ranges(self, key: str, ranges: Sequence[tuple[int, int, str]]) -> list[bytes]:
        """Several (start, length, sha256) ranges of one artifact, each checked.

        Ranges closer than RANGE_GAP are fetched as one request (the column chunks of one row
        group are adjacent), the requests RANGE_CONCURRENCY at a time. Not obstore's own
        get_ranges: it merges ranges up to 1 MiB apart, which for one narrow column of many
        row groups fetches (and holds) nearly the whole file.
        """
        _check(key)
        order = sorted(range(len(ranges)), key=lambda i: ranges[i][0])
        spans: list[tuple[int, int, list[int]]] = []  # (start, end, indexes into ranges)
        for i in order:
            start, length, _ = ranges[i]
            if spans and start - spans[-1][1] <= RANGE_GAP:
                first, end, members = spans[-1]
                spans[-1] = (first, max(end, start + length), [*members, i])
            else:
                spans.append((start, start + length, [i]))

        try:
            fetched = self._fetch_spans(key, [(start, end) for start, end, _ in spans])
        except (NotFoundError, FileNotFoundError):
            raise _missing(key) from None
        out: list[bytes] = [b""] * len(ranges)
        for (span_start, span_end, members), data in zip(spans, fetched, strict=True):
            self.bytes_read += len(data)
            if len(data) != span_end - span_start:
                raise ArtifactError(f"artifact {key}: short read at {span_start}")
            for i in members:
                start, length, sha256 = ranges[i]
                piece = data[start - span_start : start - span_start + length]
                _verify(
                    f"{key} [{start}:{start + length}]", hashlib.sha256(piece).hexdigest(), sha256
                )
                out[i] = piece
        return out

    def _fetch_spans(self, key: str, spans: list[tuple[int, int]]) -> list[bytes]:
        """Byte spans of one object, RANGE_CONCURRENCY requests at a time. Concurrency comes
        from obstore's own runtime (async requests on one event loop), not from threads of
        ours: a training child's address space may be capped (RLIMIT_AS), and every thread
        reserves a stack and a malloc arena in it."""
        with contextlib.suppress(RuntimeError):
            asyncio.get_running_loop()
            # Called from inside an event loop (never the case in a training child): one at a
            # time rather than a nested loop.
            return [bytes(obstore.get_range(self._store, key, start=a, end=b)) for a, b in spans]

        async def fetch_all() -> list[bytes]:
            gate = asyncio.Semaphore(RANGE_CONCURRENCY)

            async def one(start: int, end: int) -> bytes:
                async with gate:
                    data = await obstore.get_range_async(self._store, key, start=start, end=end)
                    return bytes(data)

            return list(await asyncio.gather(*(one(a, b) for a, b in spans)))

        if len(spans) == 1:
            start, end = spans[0]
            return [bytes(obstore.get_range(self._store, key, start=start, end=end))]
        return asyncio.run(fetch_all())

    def download(self, key: str, sha256: str, out: IO[bytes]) -> int:
        """Stream an artifact into ``out`` (a file), checking its sha256 on the way; raises
        ArtifactError after the last byte if it does not match (discard ``out`` then)."""
        digest = hashlib.sha256()
        size = 0
        try:
            for chunk in obstore.get(self._store, _check(key)).stream(min_chunk_size=CHUNK):
                digest.update(chunk)
                out.write(chunk)
                size += len(chunk)
        except (NotFoundError, FileNotFoundError):
            raise _missing(key) from None
        self.bytes_read += size
        _verify(key, digest.hexdigest(), sha256)
        return size

    def open_checked(self, key: str, sha256: str) -> IO[bytes] | None:
        """A local store's file, open for reading, once its bytes matched ``sha256`` (read
        through this very handle, so a file swapped in by rename after the check is not the
        one read); None for S3, whose objects are downloaded instead. ArtifactError when
        missing or not matching. The caller closes it."""
        if self.local_root is None:
            return None
        try:
            handle = (self.local_root / _check(key)).open("rb")
        except FileNotFoundError:
            raise _missing(key) from None
        try:
            size = os.fstat(handle.fileno()).st_size
            digest = hashlib.sha256()
            if size:
                # Hashed where the page cache holds it, through a read-only map of this very
                # handle's file: reading it into a buffer first copied all of it once more, a
                # seventh of the hash's CPU on a 100 MB model (docs/performance.md). hashlib
                # releases the GIL over the whole map. A file truncated under the map while it
                # is hashed (the store only ever renames whole files into place) would stop
                # this process with SIGBUS: a prediction process is started again.
                with mmap.mmap(handle.fileno(), size, access=mmap.ACCESS_READ) as mapped:
                    digest.update(mapped)
                self.bytes_read += size
            _verify(key, digest.hexdigest(), sha256)
            handle.seek(0)
        except BaseException:
            handle.close()
            raise
        return handle

    async def stream(self, key: str, sha256: str) -> AsyncIterator[bytes]:
        """An artifact's bytes as they arrive, for an HTTP response.

        The last chunk is held back until the whole object has been hashed: when the bytes do
        not match the recorded sha256, ArtifactError is raised instead of sending it, so the
        client never receives a complete body (its Content-Length is not met) with the wrong
        content.
        """
        try:
            result = await obstore.get_async(self._store, _check(key))
        except (NotFoundError, FileNotFoundError):
            raise _missing(key) from None
        digest = hashlib.sha256()
        held: bytes | None = None
        async for chunk in result.stream(min_chunk_size=1024 * 1024):
            data = bytes(chunk)
            digest.update(data)
            self.bytes_read += len(data)
            if held is not None:
                yield held
            held = data
        _verify(key, digest.hexdigest(), sha256)
        if held is not None:
            yield held

    def size(self, key: str) -> int | None:
        """The object's size, or None when it is not in the store."""
        try:
            return int(obstore.head(self._store, _check(key))["size"])
        except (NotFoundError, FileNotFoundError):
            return None

    async def size_async(self, key: str) -> int | None:
        try:
            return int((await obstore.head_async(self._store, _check(key)))["size"])
        except (NotFoundError, FileNotFoundError):
            return None

    # -- raw access (tests, repairs): no digest involved ------------------------------------------

    def get_unchecked(self, key: str) -> bytes:
        """The stored bytes as they are, unchecked: for tools that inspect or repair a store."""
        try:
            return bytes(obstore.get(self._store, _check(key)).bytes())
        except (NotFoundError, FileNotFoundError):
            raise _missing(key) from None

    def put_raw(self, key: str, data: bytes) -> None:
        """Write ``data`` under ``key`` whatever its digest: for tools that repair a store."""
        obstore.put(self._store, _check(key), data)

    # -- listing and deleting (garbage collection, deletes) ---------------------------------------

    def list(self, kind: str | None = None) -> Iterator[StoredObject]:
        """Every artifact (of ``kind``, one of KINDS) with its size and modified time.
        Anything else under the prefix (a staging file, a foreign object) is left out."""
        for batch in obstore.list(self._store, prefix=kind, chunk_size=1000):
            for meta in batch:
                key = str(meta["path"])
                if _KEY.match(key):
                    modified = meta["last_modified"].timestamp()
                    yield StoredObject(key, int(meta["size"]), modified)

    def list_objects(self) -> Iterator[StoredObject]:
        """Every artifact and staging file in the store, for garbage collection. Blocking
        (a listing can take many requests): call it from a thread."""
        for kind in KINDS:
            yield from self.list(kind)
        if self.local_root is not None:
            for kind in KINDS:
                with (
                    contextlib.suppress(FileNotFoundError),
                    os.scandir(self.local_root / kind) as entries,
                ):
                    for entry in entries:
                        key = f"{kind}/{entry.name}"
                        if _STAGING.match(key):
                            with contextlib.suppress(FileNotFoundError):
                                stat = entry.stat()
                                yield StoredObject(key, stat.st_size, stat.st_mtime)

    def touch(self, key: str) -> bool:
        """Refresh an artifact's modified time; False if it is not in the store (any more).

        Blocking: call it from a thread. A process about to write a record that names an
        artifact written a while ago touches it first: the collector keeps what was modified
        within its grace period, and one that already took the object leaves touch() nothing
        to find, so the record is never written for an object that is gone (store_gc.py).
        """
        _check(key)
        if self.local_root is not None:
            path = self.local_root / key
            try:
                os.utime(path)
                return True
            except FileNotFoundError:
                return False
            except PermissionError:
                return path.exists()  # another user's file: it exists, which is what matters
        # S3 refuses to copy an object onto itself unchanged, and a re-upload would move the
        # bytes twice: a server-side copy aside and back gives the object a new time instead.
        # The copy back recreates it even if the collector deleted it in between.
        aside = f"{key}.touch-{secrets.token_hex(6)}"
        try:
            obstore.copy(self._store, key, aside)
        except (NotFoundError, FileNotFoundError):
            return False
        try:
            obstore.copy(self._store, aside, key)
        finally:
            with contextlib.suppress(NotFoundError, FileNotFoundError):
                obstore.delete(self._store, aside)
        return True

    def delete(self, key: str, *, unless_modified_after: float | None = None) -> bool:
        """Remove one object listed by list_objects() (an artifact or a staging file); False if
        it was not there, or was modified (written, or touched) after ``unless_modified_after``.

        Blocking: call it from a thread. The check and the removal must not let a touch() slip
        between them. A directory store first renames the file aside, which a concurrent touch
        cannot follow; the aside file's time then tells whether the touch came first, and if
        so it is put back. S3 has no rename and no conditional delete on time: there the check
        is a HEAD right before the DELETE, and a touch landing in the milliseconds between
        them is lost (docs/failure-model.md).
        """
        if self.local_root is not None and _STAGING.match(key):
            return _unlink(self.local_root / key)
        _check(key)
        if self.local_root is not None:
            return self._delete_local(self.local_root / key, unless_modified_after)
        if unless_modified_after is not None:
            try:
                meta = obstore.head(self._store, key)
            except (NotFoundError, FileNotFoundError):
                return False
            if meta["last_modified"].timestamp() > unless_modified_after:
                return False
        try:
            obstore.delete(self._store, key)
        except (NotFoundError, FileNotFoundError):
            return False
        return True

    @staticmethod
    def _delete_local(path: Path, unless_modified_after: float | None) -> bool:
        if unless_modified_after is None:
            return _unlink(path)
        aside = path.with_name(f".tmp-gc-{secrets.token_hex(8)}")  # collected if we die here
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

    async def delete_async(self, key: str) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.delete, key)


def _unlink(path: Path) -> bool:
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    _fsync_directory(path.parent)
    return True


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _key(kind: str, digest: str, suffix: str) -> str:
    return _check(f"{kind}/{digest}.{suffix}")


def _check(key: str) -> str:
    if not _KEY.match(key):
        raise ArtifactError(f"invalid artifact URI {key!r}")
    return key


def _missing(key: str) -> ArtifactError:
    return ArtifactError(f"artifact {key} is missing from the store")


def _verify(what: str, actual: str, expected: str) -> None:
    if actual != expected:
        raise ArtifactError(
            f"artifact {what} does not match its recorded sha256 (tampered or corrupt)"
        )


def _s3_store(url: str) -> Any:
    # Credentials, region and endpoint come from the environment (AWS_*), or from the instance
    # profile / container role when no keys are set, as every AWS client does. A variable set
    # to the empty string (what compose passes for an unset ${VAR:-}) counts as unset: obstore
    # would take an empty endpoint or key literally.
    for name in [k for k, v in os.environ.items() if k.startswith("AWS_") and not v]:
        del os.environ[name]
    parsed = urlparse(url)
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or ""
    options: ClientConfig = {"timeout": timedelta(seconds=60)}
    if endpoint.startswith("http://"):
        options["allow_http"] = True  # a local MinIO or emulator without TLS
    config: dict[str, Any] = {}
    if endpoint and not os.environ.get("AWS_VIRTUAL_HOSTED_STYLE_REQUEST"):
        # Path-style addressing: what MinIO, Ceph and most self-hosted stores expect.
        config["virtual_hosted_style_request"] = False
    return S3Store(
        parsed.netloc,
        prefix=parsed.path.strip("/") or None,
        client_options=options,
        retry_config=_RETRY,
        **config,
    )
