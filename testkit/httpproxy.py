"""An HTTP proxy in front of the job service that can hold one request mid-flight.

It stands where a load balancer would: clients keep its address while the job service behind
it is killed and replaced (``upstream`` is swapped). Every request goes upstream on its own
connection (``Connection: close``). ``hold_next`` picks the next request whose request line
starts with a prefix and holds it:

- ``"request"``: it is read from the client and never sent upstream;
- ``"response"``: it is sent, the job service answers, and the answer is kept from the client.

``release`` then closes the client's connection without a byte of answer, as a dying service
or a dropped network would: the client cannot tell the two holds apart, and must retry.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
from dataclasses import dataclass, field
from typing import Literal

Hold = Literal["request", "response"]


@dataclass
class Held:
    mode: Hold
    request: bytes = b""
    response: bytes = b""  # what the job service answered ("response" holds)
    ready: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)

    def header(self, name: str) -> str | None:
        head = self.request.split(b"\r\n\r\n", 1)[0].decode("latin-1")
        match = re.search(rf"^{re.escape(name)}:\s*(.*?)\s*$", head, re.I | re.M)
        return match.group(1) if match else None

    @property
    def status(self) -> int | None:
        match = re.match(rb"HTTP/1\.[01] (\d{3})", self.response)
        return int(match.group(1)) if match else None

    @property
    def body(self) -> bytes:
        return self.response.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in self.response else b""


class HoldingProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self._lock = threading.Lock()
        self._armed: tuple[str, Held] | None = None
        self.requests: list[bytes] = []  # every request line seen

    @property
    def upstream(self) -> str:
        return self._upstream

    @upstream.setter
    def upstream(self, url: str) -> None:
        host, port = url.removeprefix("http://").rsplit(":", 1)
        self._upstream = url
        self._address = (host, int(port))

    def __enter__(self) -> HoldingProxy:
        threading.Thread(target=self._accept, daemon=True, name="proxy").start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.listener.close()

    def hold_next(self, prefix: str, mode: Hold) -> Held:
        held = Held(mode)
        with self._lock:
            self._armed = (prefix, held)
        return held

    def release(self, held: Held) -> None:
        held.released.set()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        with client:
            request = _read_request(client)
            if request is None:
                return
            line = request.split(b"\r\n", 1)[0]
            with self._lock:
                self.requests.append(line)
                held = None
                if self._armed is not None and line.decode("latin-1").startswith(self._armed[0]):
                    held = self._armed[1]
                    self._armed = None
            if held is None:
                self._forward(client, request)
                return
            held.request = request
            if held.mode == "response":
                held.response = self._exchange(request)
            held.ready.set()
            held.released.wait()
            # Closed with nothing sent: the client sees its connection drop mid-request.
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_RDWR)

    def _forward(self, client: socket.socket, request: bytes) -> None:
        answer = self._exchange(request)
        with contextlib.suppress(OSError):
            client.sendall(answer)

    def _exchange(self, request: bytes) -> bytes:
        """Send one request upstream and read its whole answer (b"" if upstream is down)."""
        try:
            with socket.create_connection(self._address, timeout=60) as upstream:
                upstream.sendall(_close_after(request))
                chunks = []
                while chunk := upstream.recv(65536):
                    chunks.append(chunk)
                return b"".join(chunks)
        except OSError:
            return b""


def _read_request(sock: socket.socket) -> bytes | None:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    match = re.search(rb"^content-length:\s*(\d+)", head, re.I | re.M)
    length = int(match.group(1)) if match else 0
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        body += chunk
    return head + b"\r\n\r\n" + body


def _close_after(request: bytes) -> bytes:
    """The request with ``Connection: close``: one request per upstream connection."""
    head, _, body = request.partition(b"\r\n\r\n")
    lines = [line for line in head.split(b"\r\n") if not line.lower().startswith(b"connection:")]
    return b"\r\n".join([*lines, b"Connection: close"]) + b"\r\n\r\n" + body
