"""A TCP proxy in front of one ZooKeeper server that can cut a client's connection at an exact
request: the fault a real network gives at a random moment, made repeatable.

It forwards bytes both ways and reads the client's request frames (4-byte length, then xid and
opcode) only to recognise the one to cut at. The client then sees ConnectionLoss for that request,
which never reached the server, and reconnects through the proxy with the same session.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading

DELETE = 2  # ZooKeeper's OpCode values
SET_DATA = 5


def _recv_exact(sock: socket.socket, size: int) -> bytes | None:
    chunks = []
    while size:
        try:
            chunk = sock.recv(size)
        except OSError:
            return None
        if not chunk:
            return None
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


class ZooKeeperProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream = ("127.0.0.1", upstream_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._cut: tuple[int, str, bytes] | None = None  # opcode, path prefix, data needle
        self.cut: list[str] = []  # paths whose delete was cut off
        self.connections = 0
        self._closed = False

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def cut_next_delete(self, prefix: str) -> None:
        """Drop the connection instead of forwarding the next delete of a path under prefix."""
        self.cut_next(DELETE, prefix)

    def cut_next(self, opcode: int, prefix: str, needle: bytes = b"") -> None:
        """Drop the connection instead of forwarding the next request with this opcode on a
        path under prefix (and, if given, whose bytes contain needle)."""
        with self._lock:
            self._cut = (opcode, prefix, needle)

    def start(self) -> ZooKeeperProxy:
        threading.Thread(target=self._accept, daemon=True, name="zk-proxy").start()
        return self

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._listener.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream, timeout=5)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            self.connections += 1
            pair = (client, server)
            threading.Thread(target=self._upstream, args=pair, daemon=True).start()
            threading.Thread(target=self._downstream, args=pair, daemon=True).start()

    @staticmethod
    def _close(*socks: socket.socket) -> None:
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()

    def _downstream(self, client: socket.socket, server: socket.socket) -> None:
        while True:
            try:
                data = server.recv(65536)
            except OSError:
                data = b""
            if not data:
                break
            try:
                client.sendall(data)
            except OSError:
                break
        self._close(client, server)

    def _upstream(self, client: socket.socket, server: socket.socket) -> None:
        first = True  # the ConnectRequest has no xid/opcode header
        while True:
            header = _recv_exact(client, 4)
            body = None if header is None else _recv_exact(client, struct.unpack(">i", header)[0])
            if header is None or body is None:
                break
            if not first and self._should_cut(body):
                break
            first = False
            try:
                server.sendall(header + body)
            except OSError:
                break
        self._close(client, server)

    def _should_cut(self, body: bytes) -> bool:
        with self._lock:
            if self._cut is None or len(body) < 12:
                return False
            opcode, prefix, needle = self._cut
            if struct.unpack(">i", body[4:8])[0] != opcode:
                return False
            (length,) = struct.unpack(">i", body[8:12])
            path = body[12 : 12 + length].decode(errors="replace")
            if not path.startswith(prefix) or needle not in body:
                return False
            self._cut = None
            self.cut.append(path)
            return True
