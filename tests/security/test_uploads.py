"""Uploads bounded in every byte, against the real job service (uvicorn): the multipart body's
framing counts against the limit, part headers have a small limit of their own, uploads are
rate-limited per token, and a token's stored bytes have a quota."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from testkit.auth import ADMIN_TOKEN, OTHER_SUBMIT_TOKEN, SUBMIT_TOKEN, bearer
from testkit.stack import Stack
from tests.integration.conftest import assert_problem

pytestmark = pytest.mark.integration

LIMIT = 1_000_000
CSV = b"a,b,label\n" + b"".join(
    b"%d,%d,%s\n" % (i, i * 2, b"xy"[i % 2 : i % 2 + 1]) for i in range(100)
)
BOUNDARY = b"zootrain-test-boundary"


def multipart(
    *, header: bytes = b"", preamble: bytes = b"", epilogue: bytes = b"", data: bytes = CSV
) -> bytes:
    return (
        preamble
        + b"--" + BOUNDARY + b"\r\n"
        + b'Content-Disposition: form-data; name="file"; filename="data.csv"\r\n'
        + header
        + b"Content-Type: text/csv\r\n\r\n"
        + data
        + b"\r\n--" + BOUNDARY + b"--\r\n"
        + epilogue
    )  # fmt: skip


def chunked(body: bytes, size: int = 64 * 1024) -> Iterator[bytes]:
    """No Content-Length: the service sees the bytes only as they arrive."""
    for start in range(0, len(body), size):
        yield body[start : start + size]


def post(client: httpx.Client, body: bytes | Iterator[bytes]) -> httpx.Response:
    content_type = b"multipart/form-data; boundary=" + BOUNDARY
    return client.post(
        "/v1/datasets", content=body, headers={"Content-Type": content_type.decode()}
    )


def start(stack: Stack, **settings: str) -> str:
    stack.settings["ZOOTRAIN_MAX_UPLOAD_BYTES"] = str(LIMIT)
    stack.settings.update(settings)
    stack.start_api()
    assert stack.api_url is not None
    return stack.api_url


def test_part_headers_and_the_framing_count_against_the_limit(stack: Stack) -> None:
    url = start(stack)
    with httpx.Client(base_url=url, headers=bearer(SUBMIT_TOKEN), timeout=120) as client:
        assert post(client, multipart()).status_code == 201  # the well-formed body is fine

        # A 10 MB part header, streamed: refused on its first kilobytes, not buffered.
        huge_header = b"X-Padding: " + b"a" * 10_000_000 + b"\r\n"
        refused = post(client, chunked(multipart(header=huge_header)))
        assert_problem(refused, 413, "headers", "4096")
        # With its length declared, it is refused before it is read.
        assert_problem(post(client, multipart(header=huge_header)), 413, str(LIMIT))
        # Many small headers are the same attack.
        many = b"".join(b"X-%d: x\r\n" % i for i in range(50))
        assert_problem(post(client, chunked(multipart(header=many))), 413, "headers")

        # A small file inside megabytes of preamble or epilogue: every byte counts.
        padding = b"\r\n" * 1_000_000
        for framed in (multipart(preamble=padding), multipart(epilogue=padding)):
            assert_problem(post(client, chunked(framed)), 413, "request body exceeds")

        listed = client.get("/v1/datasets").json()["items"]
        assert len(listed) == 1 and listed[0]["owner"] == "test-submit"


def test_uploads_are_rate_limited_per_token(stack: Stack) -> None:
    url = start(stack, ZOOTRAIN_UPLOAD_RATE="0.01", ZOOTRAIN_UPLOAD_BURST="2")
    with httpx.Client(base_url=url, timeout=60) as client:
        for _ in range(2):
            ok = client.post(
                "/v1/datasets", files={"file": ("a.csv", CSV)}, headers=bearer(SUBMIT_TOKEN)
            )
            assert ok.status_code == 201, ok.text
        limited = client.post(
            "/v1/datasets", files={"file": ("a.csv", CSV)}, headers=bearer(SUBMIT_TOKEN)
        )
        assert_problem(limited, 429, "test-submit", "ZOOTRAIN_UPLOAD_RATE")
        assert int(limited.headers["Retry-After"]) >= 1
        other = client.post(
            "/v1/datasets", files={"file": ("a.csv", CSV)}, headers=bearer(OTHER_SUBMIT_TOKEN)
        )
        assert other.status_code == 201, other.text


def test_a_tokens_stored_bytes_have_a_quota(stack: Stack) -> None:
    quota = 2 * len(CSV) + len(CSV) // 2  # room for two of the files, not three
    url = start(stack, ZOOTRAIN_UPLOAD_QUOTA_BYTES=str(quota))
    with httpx.Client(base_url=url, timeout=60) as client:

        def upload(token: str, data: bytes = CSV) -> httpx.Response:
            return client.post(
                "/v1/datasets", files={"file": ("a.csv", data)}, headers=bearer(token)
            )

        first = upload(SUBMIT_TOKEN)
        assert first.status_code == 201, first.text
        assert upload(SUBMIT_TOKEN).status_code == 201
        over = upload(SUBMIT_TOKEN)
        assert_problem(over, 413, "test-submit", f"{quota:,}", "ZOOTRAIN_UPLOAD_QUOTA_BYTES")
        # Another token has its own quota; a refused upload stored nothing.
        assert upload(OTHER_SUBMIT_TOKEN).status_code == 201
        stored = client.get("/v1/datasets", headers=bearer(SUBMIT_TOKEN)).json()["items"]
        assert len(stored) == 3
        # Deleting a dataset makes room again.
        deleted = client.delete(first.headers["Location"], headers=bearer(ADMIN_TOKEN))
        assert deleted.status_code == 204
        assert upload(SUBMIT_TOKEN).status_code == 201
