"""A TCP proxy in front of ZooKeeper that can fault a client's connection at an exact request:
the fault a real network gives at a random moment, made repeatable.

It forwards bytes both ways and reads the frames (4-byte length, then xid and opcode) only to
recognise the request to fault. The faults, each for the next request that matches (opcode, a
path prefix and optionally bytes the request contains; a multi matches by its first operation):

- ``cut``: the connection is dropped instead of forwarding the request, which never reaches the
  server; the client sees ConnectionLoss and reconnects through the proxy with its session;
- ``drop_reply``: the request is forwarded, and the connection is dropped when the server's
  reply arrives, so the write is applied and the client never learns it (ConnectionLoss);
- ``hold``: the request waits in the proxy until ``release()``; so do the requests after it on
  that connection (ZooKeeper answers a session's requests in order anyway).

``block()`` cuts every connection and refuses new ones until ``unblock()``: an outage seen by
the clients behind this proxy only. With several upstream servers, each new connection goes to
the next one that accepts it, as a client with the whole ensemble in its connection string
would.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from dataclasses import dataclass, field

CREATE = 1  # ZooKeeper's OpCode values
DELETE = 2
EXISTS = 3
GET_DATA = 4
SET_DATA = 5
GET_CHILDREN = 8
SYNC = 9
GET_CHILDREN2 = 12
MULTI = 14
CREATE2 = 15

_MULTI_HEADER = 9  # int type, bool done, int err: before each operation of a multi


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


def request_path(body: bytes) -> tuple[int, int, str] | None:
    """(xid, opcode, path) of a request frame's body; a multi's path is its first operation's."""
    if len(body) < 12:
        return None
    xid, opcode = struct.unpack(">ii", body[:8])
    offset = 8 + (_MULTI_HEADER if opcode == MULTI else 0)
    if len(body) < offset + 4:
        return xid, opcode, ""
    (length,) = struct.unpack(">i", body[offset : offset + 4])
    if length < 0:
        return xid, opcode, ""
    return xid, opcode, body[offset + 4 : offset + 4 + length].decode(errors="replace")


@dataclass
class Rule:
    opcode: int
    prefix: str
    needle: bytes
    action: str  # "cut", "drop_reply", "hold"
    released: threading.Event = field(default_factory=threading.Event)
    matched: threading.Event = field(default_factory=threading.Event)

    def matches(self, opcode: int, path: str, body: bytes) -> bool:
        return opcode == self.opcode and path.startswith(self.prefix) and self.needle in body


@dataclass(eq=False)  # hashed by identity: kept in a set
class _Pair:
    client: socket.socket
    server: socket.socket
    drop_reply_xid: int | None = None


class ZooKeeperProxy:
    def __init__(self, upstream_port: int | list[int]) -> None:
        ports = [upstream_port] if isinstance(upstream_port, int) else list(upstream_port)
        self.upstreams = [("127.0.0.1", port) for port in ports]
        self._next_upstream = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._rules: list[Rule] = []
        self._pairs: set[_Pair] = set()
        self._blocked = False
        self.cut: list[str] = []  # paths of the requests faulted (any action)
        self.faults: list[tuple[str, int, str]] = []  # (action, opcode, path)
        self.connections = 0
        self._closed = False

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def cut_next_delete(self, prefix: str) -> None:
        """Drop the connection instead of forwarding the next delete of a path under prefix."""
        self.cut_next(DELETE, prefix)

    def cut_next(self, opcode: int, prefix: str, needle: bytes = b"") -> Rule:
        """Drop the connection instead of forwarding the next request with this opcode on a
        path under prefix (and, if given, whose bytes contain needle)."""
        return self.add_rule(opcode, prefix, needle, "cut")

    def drop_next_reply(self, opcode: int, prefix: str, needle: bytes = b"") -> Rule:
        """Forward the next such request, and drop the connection when its reply comes."""
        return self.add_rule(opcode, prefix, needle, "drop_reply")

    def hold_next(self, opcode: int, prefix: str, needle: bytes = b"") -> Rule:
        """Keep the next such request (and what follows it on its connection) until the
        returned rule's ``released`` is set; ``matched`` is set when it is caught."""
        return self.add_rule(opcode, prefix, needle, "hold")

    def add_rule(self, opcode: int, prefix: str, needle: bytes, action: str) -> Rule:
        rule = Rule(opcode, prefix, needle, action)
        with self._lock:
            self._rules.append(rule)
        return rule

    def clear_rules(self) -> None:
        with self._lock:
            for rule in self._rules:
                rule.released.set()
            self._rules.clear()

    def block(self) -> None:
        """Cut every connection and refuse new ones: the clients see ZooKeeper vanish."""
        with self._lock:
            self._blocked = True
            pairs = list(self._pairs)
        for pair in pairs:
            self._close(pair.client, pair.server)

    def unblock(self) -> None:
        with self._lock:
            self._blocked = False

    def start(self) -> ZooKeeperProxy:
        threading.Thread(target=self._accept, daemon=True, name="zk-proxy").start()
        return self

    def close(self) -> None:
        self._closed = True
        self.clear_rules()
        with contextlib.suppress(OSError):
            self._listener.close()
        self.block()

    def _connect_upstream(self) -> socket.socket | None:
        for _ in range(len(self.upstreams)):
            with self._lock:
                address = self.upstreams[self._next_upstream % len(self.upstreams)]
                self._next_upstream += 1
            try:
                server = socket.create_connection(address, timeout=2)
                server.settimeout(None)
                return server
            except OSError:
                continue
        return None

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                blocked = self._blocked
            server = None if blocked else self._connect_upstream()
            if server is None:
                self._close(client)
                continue
            self.connections += 1
            pair = _Pair(client, server)
            with self._lock:
                self._pairs.add(pair)
            threading.Thread(target=self._upstream, args=(pair,), daemon=True).start()
            threading.Thread(target=self._downstream, args=(pair,), daemon=True).start()

    def _close(self, *socks: socket.socket) -> None:
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()

    def _end(self, pair: _Pair) -> None:
        self._close(pair.client, pair.server)
        with self._lock:
            self._pairs.discard(pair)

    def _downstream(self, pair: _Pair) -> None:
        first = True  # the ConnectResponse has no reply header
        while True:
            header = _recv_exact(pair.server, 4)
            body = None if header is None else _recv_exact(pair.server, _length(header))
            if header is None or body is None:
                break
            if not first and len(body) >= 4 and pair.drop_reply_xid is not None:
                (xid,) = struct.unpack(">i", body[:4])
                if xid == pair.drop_reply_xid:
                    break  # applied on the server; the client never hears of it
            first = False
            try:
                pair.client.sendall(header + body)
            except OSError:
                break
        self._end(pair)

    def _upstream(self, pair: _Pair) -> None:
        first = True  # the ConnectRequest has no xid/opcode header
        while True:
            header = _recv_exact(pair.client, 4)
            body = None if header is None else _recv_exact(pair.client, _length(header))
            if header is None or body is None:
                break
            rule = None if first else self._match(body)
            first = False
            if rule is not None:
                if rule.action == "cut":
                    break
                if rule.action == "drop_reply":
                    pair.drop_reply_xid = struct.unpack(">i", body[:4])[0]
                if rule.action == "hold":
                    rule.released.wait()
            try:
                pair.server.sendall(header + body)
            except OSError:
                break
        self._end(pair)

    def _match(self, body: bytes) -> Rule | None:
        parsed = request_path(body)
        if parsed is None:
            return None
        _, opcode, path = parsed
        with self._lock:
            for rule in self._rules:
                if rule.matches(opcode, path, body):
                    self._rules.remove(rule)
                    self.cut.append(path)
                    self.faults.append((rule.action, opcode, path))
                    rule.matched.set()
                    return rule
        return None


def _length(header: bytes) -> int:
    (length,) = struct.unpack(">i", header)
    return max(0, length)
