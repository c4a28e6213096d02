"""An S3 endpoint for the tests: moto's standalone server (``moto_server``), an emulator of the
S3 API, on a free loopback port. Not a real object store: it keeps objects in its own memory and
checks no signatures, but it speaks the S3 protocol (multipart uploads, range requests,
listings) that zootrain's client uses against AWS S3 or MinIO."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from testkit.zkserver import free_port

# Credentials are required by the client's signer; moto accepts any.
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "zootrain-test",
    "AWS_SECRET_ACCESS_KEY": "zootrain-test-secret",
    "AWS_REGION": "us-east-1",
}


def _moto_server() -> str:
    beside = Path(sys.executable).with_name("moto_server")
    found = str(beside) if beside.exists() else shutil.which("moto_server")
    if not found:
        raise RuntimeError("moto_server is not installed (pip install 'moto[server]')")
    return found


@dataclass
class S3Server:
    directory: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> S3Server:
        log = (self.directory / "moto.log").open("ab")
        self.process = subprocess.Popen(
            [_moto_server(), "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"moto_server exited with {self.process.returncode}")
            try:
                httpx.get(f"{self.endpoint}/moto-api/", timeout=1)
                return self
            except httpx.HTTPError:
                time.sleep(0.1)
        raise TimeoutError("moto_server did not start within 60 s")

    def create_bucket(self, name: str | None = None) -> str:
        """A new empty bucket (the operator's job in production); returns its name."""
        bucket = name or f"zootrain-{uuid.uuid4().hex[:12]}"
        response = httpx.put(f"{self.endpoint}/{bucket}", timeout=10)
        response.raise_for_status()
        return bucket

    def environment(self) -> dict[str, str]:
        """What a zootrain process needs to reach this endpoint, the standard AWS way."""
        return {**CREDENTIALS, "AWS_ENDPOINT_URL": self.endpoint}

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
