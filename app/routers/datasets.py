"""/v1/datasets: upload CSV or Parquet files, list, inspect and delete them.

An upload is streamed: the multipart body is parsed as it arrives and the file part goes straight
into a private temporary file (hashed on the way), so neither the whole body nor the whole file is
ever held in memory, and a file over ZOOTRAIN_MAX_UPLOAD_BYTES is refused as soon as it crosses the
limit. The file is then read once (pandas, in a child process: app/upload_check.py) to check and
describe it and to write its stored form (Parquet, zootrain.ml.columnar); only a file that passes
is streamed into the artifact store and recorded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response, status
from python_multipart import MultipartParser
from python_multipart.exceptions import FormParserError, MultipartParseError
from python_multipart.multipart import parse_options_header
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from app.auth import READ, Admin, Submitter
from app.deps import Services, services
from app.problems import problem_responses
from zootrain.auth import ANONYMOUS
from zootrain.errors import InvalidRequest
from zootrain.ml.encoding import TableError, sniff
from zootrain.settings import Settings
from zootrain.spec import DATASET_ID_PATTERN
from zootrain.uploads import (
    MAX_NAME_CHARS,
    BlobWriter,
    ContentTooLarge,
    DatasetCatalog,
    DatasetList,
    DatasetRecord,
    DatasetSummary,
    MalformedUpload,
    StoredForm,
    UnsupportedContent,
    default_name,
)
from zootrain.zk import request_deadline

UPLOAD_PATH = "/v1/datasets"
MULTIPART_SLACK = 64 * 1024
"""Room for the multipart framing and the `name` field around the file: every byte of the body
(preamble, part headers, the `name` part, epilogue) counts against the file limit plus this."""
MAX_PART_HEADER_BYTES = 4096
"""One header line of a part (Content-Disposition with a long file name fits many times)."""
MAX_PART_HEADERS = 8
QUOTA_PAGE = 500

router = APIRouter(prefix=UPLOAD_PATH, tags=["datasets"])

DatasetId = Annotated[
    str, Path(pattern=DATASET_ID_PATTERN, description="Dataset id, as returned by the upload")
]

_UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "additionalProperties": False,  # any other part is refused (422)
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "A CSV (UTF-8, comma-separated, header row) or "
                            "Parquet file",
                        },
                        "name": {
                            "type": "string",
                            "maxLength": MAX_NAME_CHARS,
                            "description": "A name to show; default: the file's name",
                        },
                    },
                }
            }
        },
    }
}


def _catalog(svc: Services) -> DatasetCatalog:
    return DatasetCatalog(svc.zk, svc.paths, svc.store)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=DatasetRecord,
    responses=problem_responses(400, 409, 413, 415, 422, 429, 503),
    summary="Upload a dataset (CSV or Parquet)",
    description=(
        "Multipart form: `file` (CSV or Parquet) and optionally `name`. The file is checked "
        "and described (rows; every column's type, missing values, distinct values and, for "
        "text columns with few values, the values one-hot encoding will use). 201 with the "
        "dataset and `Location`; a job then names it as "
        '`{"kind": "uploaded", "id": …, "target": "<column>"}`.'
    ),
    openapi_extra=_UPLOAD_BODY,
)
async def upload_dataset(
    request: Request,
    response: Response,
    svc: Annotated[Services, Depends(services)],
    principal: Submitter,
) -> DatasetRecord:
    settings = svc.settings
    boundary = _boundary(request.headers.get("content-type", ""))
    svc.gate.uploads.take(principal.name)
    owner = None if principal is ANONYMOUS else principal.name
    catalog = _catalog(svc)
    await catalog.check_capacity(settings.max_datasets)
    limit, refusal = await _file_limit(catalog, principal.name, owner, settings)
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit + MULTIPART_SLACK:
        raise ContentTooLarge(refusal)
    blob = await run_in_threadpool(BlobWriter)
    try:
        form = await _receive(request, boundary, blob, limit, refusal)
        await run_in_threadpool(blob.close)
        if not form.has_file:
            raise InvalidRequest("file: missing; send the data as a multipart part named `file`")
        if blob.size == 0:
            raise InvalidRequest("file: the file is empty")
        try:
            fmt = sniff(blob.head, form.filename, form.content_type)
            table, manifest, files = await svc.tables.ingest(
                blob.path,
                fmt,
                blob.directory,
                sha256=blob.sha256,
                max_rows=settings.max_dataset_rows,
                max_columns=settings.max_dataset_columns,
            )
        except TableError as exc:
            error = UnsupportedContent if exc.unsupported else InvalidRequest
            raise error(f"file: {exc}") from None
        # The body took as long as it took: the ZooKeeper calls that follow get a deadline
        # of their own.
        with request_deadline(settings.zk_request_timeout):
            record = await catalog.add(
                blob,
                name=form.name or default_name(form.filename),
                fmt=fmt,
                table=table,
                stored=StoredForm(manifest, files),
                owner=owner,
            )
    finally:
        await run_in_threadpool(blob.discard)
    response.headers["Location"] = f"{UPLOAD_PATH}/{record.id}"
    return record


@router.get(
    "",
    response_model=DatasetList,
    responses=problem_responses(422, 503),
    summary="List datasets, newest first",
    dependencies=[READ],
)
async def list_datasets(
    svc: Annotated[Services, Depends(services)],
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[
        str | None,
        Query(pattern=DATASET_ID_PATTERN, description="next_cursor of the previous page"),
    ] = None,
) -> DatasetList:
    records, next_cursor = await _catalog(svc).list_page(limit=limit, cursor=cursor)
    return DatasetList(items=[DatasetSummary.of(r) for r in records], next_cursor=next_cursor)


@router.get(
    "/{dataset_id}",
    response_model=DatasetRecord,
    responses=problem_responses(404, 422, 503),
    summary="A dataset with its columns",
    dependencies=[READ],
)
async def get_dataset(
    dataset_id: DatasetId, svc: Annotated[Services, Depends(services)]
) -> DatasetRecord:
    record, _ = await _catalog(svc).read(dataset_id)
    return record


@router.delete(
    "/{dataset_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=problem_responses(404, 409, 422, 503),
    summary="Delete a dataset that no unfinished job uses",
    description=(
        "409 while a job that has not finished uses the dataset. The file is deleted from the "
        "artifact store too, unless another dataset has the same content. Needs `admin`."
    ),
)
async def delete_dataset(
    dataset_id: DatasetId, svc: Annotated[Services, Depends(services)], _: Admin
) -> Response:
    await _catalog(svc).delete(dataset_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# -- the multipart stream ----------------------------------------------------------------------


def _too_large(limit: int) -> str:
    return f"the file exceeds the upload limit of {limit} bytes (ZOOTRAIN_MAX_UPLOAD_BYTES)"


async def _file_limit(
    catalog: DatasetCatalog, name: str, owner: str | None, settings: Settings
) -> tuple[int, str]:
    """The most bytes this upload's file may have, and the 413's detail past it: the upload
    limit, or what is left of the token's quota if that is less.

    Checked when the upload starts: two uploads of one token at the same moment can each use
    what is left, so a token may overshoot its quota by one upload per concurrent request.
    """
    quota = settings.upload_quota_bytes
    stored = await _stored_bytes(catalog, owner)
    left = quota - stored
    detail = (
        f"token {name!r} keeps {stored:,} bytes of uploaded datasets and its quota is "
        f"{quota:,} (ZOOTRAIN_UPLOAD_QUOTA_BYTES); delete datasets to make room"
    )
    if left <= 0:
        raise ContentTooLarge(detail)
    if left < settings.max_upload_bytes:
        return left, f"the file does not fit in what is left of the quota: {detail}"
    return settings.max_upload_bytes, _too_large(settings.max_upload_bytes)


async def _stored_bytes(catalog: DatasetCatalog, owner: str | None) -> int:
    # Every record is read: uploads are rare (rate-limited) and records are small. A dataset
    # whose file another dataset shares still counts for each: it is what the token asked for.
    stored, cursor = 0, None
    while True:
        records, cursor = await catalog.list_page(limit=QUOTA_PAGE, cursor=cursor)
        stored += sum(r.size for r in records if r.owner == owner)
        if cursor is None:
            return stored


def _boundary(content_type: str) -> bytes:
    kind, options = parse_options_header(content_type)
    if kind != b"multipart/form-data":
        shown = kind.decode("latin-1") or "none"
        raise UnsupportedContent(
            f"Content-Type is {shown}; upload with multipart/form-data (a `file` part and "
            "optionally `name`)"
        )
    boundary = options.get(b"boundary")
    if not boundary:
        raise MalformedUpload("multipart/form-data without a boundary parameter")
    return boundary


@dataclass
class _Form:
    name: str | None = None
    filename: str | None = None
    content_type: str | None = None
    has_file: bool = False


@dataclass
class _Receiver:
    """python-multipart callbacks: file bytes are queued for the writer, counted against the
    limit as they arrive; the small `name` field is kept."""

    limit: int
    refusal: str  # the 413's detail when the file passes the limit
    form: _Form = field(default_factory=_Form)
    pending: list[bytes] = field(default_factory=list)
    received: int = 0
    ended: bool = False
    _part: Literal["file", "name"] | None = None
    _text: bytearray = field(default_factory=bytearray)
    _header_name: bytes = b""
    _header_value: bytes = b""
    _headers: dict[bytes, bytes] = field(default_factory=dict)
    _header_bytes: int = 0
    in_headers: bool = False  # between a part's boundary and the blank line after its headers

    def callbacks(self) -> dict[str, Any]:
        return {
            "on_part_begin": self.on_part_begin,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
            "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
            "on_end": self.on_end,
        }

    def on_part_begin(self) -> None:
        self._part = None
        self._headers = {}
        self._text = bytearray()
        self._header_bytes = 0
        self.in_headers = True

    def _count_header(self, size: int) -> None:
        # The parser bounds each line (max_header_size); this bounds what we keep of them, so
        # no version of the parser can make us buffer an unbounded header.
        self._header_bytes += size
        if self._header_bytes > MAX_PART_HEADER_BYTES * MAX_PART_HEADERS:
            raise ContentTooLarge(_headers_too_large())

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._count_header(end - start)
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._count_header(end - start)
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        self._headers[self._header_name.strip().lower()] = self._header_value.strip()
        self._header_name = self._header_value = b""

    def on_headers_finished(self) -> None:
        self.in_headers = False
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        name = options.get(b"name", b"").decode("utf-8", "replace")
        if name == "file":
            if self.form.has_file:
                raise InvalidRequest("file: send a single file per upload")
            self.form.has_file = True
            self._part = "file"
            filename = options.get(b"filename")
            self.form.filename = filename.decode("utf-8", "replace") if filename else None
            content_type = self._headers.get(b"content-type", b"").decode("latin-1")
            self.form.content_type = content_type or None
        elif name == "name":
            if self.form.name is not None:
                raise InvalidRequest("name: given twice")
            self._part = "name"
        else:
            raise InvalidRequest(
                f"unexpected form field {name[:50]!r}: send `file` (the data) and optionally `name`"
            )

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._part == "file":
            self.received += end - start
            if self.received > self.limit:
                raise ContentTooLarge(self.refusal)
            self.pending.append(bytes(data[start:end]))
        else:
            self._text += data[start:end]
            if len(self._text) > 4 * MAX_NAME_CHARS:
                raise InvalidRequest(f"name: longer than {MAX_NAME_CHARS} characters")

    def on_part_end(self) -> None:
        if self._part != "name":
            return
        try:
            text = self._text.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise InvalidRequest("name: not UTF-8 text") from None
        if len(text) > MAX_NAME_CHARS:
            raise InvalidRequest(f"name: longer than {MAX_NAME_CHARS} characters")
        self.form.name = text or None

    def on_end(self) -> None:
        self.ended = True


def _headers_too_large() -> str:
    return (
        f"a part's headers exceed the limit of {MAX_PART_HEADERS} headers of at most "
        f"{MAX_PART_HEADER_BYTES} bytes each"
    )


async def _receive(
    request: Request, boundary: bytes, blob: BlobWriter, limit: int, refusal: str
) -> _Form:
    receiver = _Receiver(limit, refusal)
    parser = MultipartParser(
        boundary,
        receiver.callbacks(),  # type: ignore[arg-type]
        max_header_size=MAX_PART_HEADER_BYTES,
        max_header_count=MAX_PART_HEADERS,
    )
    body_limit = limit + MULTIPART_SLACK
    seen = 0
    try:
        async for chunk in request.stream():
            # Every byte counts, not only the file's: a preamble, an epilogue or a part header
            # is read and parsed too, so none of them may be unbounded.
            seen += len(chunk)
            if seen > body_limit:
                raise ContentTooLarge(
                    f"the request body exceeds {body_limit} bytes: the file's limit plus "
                    f"{MULTIPART_SLACK} for the multipart framing ({refusal})"
                )
            parser.write(chunk)
            if receiver.pending:
                data = b"".join(receiver.pending)
                receiver.pending.clear()
                await run_in_threadpool(blob.write, data)
        parser.finalize()
    except MultipartParseError as exc:
        if receiver.in_headers and "header" in str(exc).lower():
            raise ContentTooLarge(_headers_too_large()) from None
        raise MalformedUpload(f"malformed multipart body: {exc}") from None
    except FormParserError as exc:
        raise MalformedUpload(f"malformed multipart body: {exc}") from None
    except ClientDisconnect:
        raise MalformedUpload("the client went away before the upload ended") from None
    if not receiver.ended:
        raise MalformedUpload("the multipart body ended before its closing boundary")
    return receiver.form
