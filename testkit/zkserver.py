"""Real Apache ZooKeeper servers for the tests: standalone or an ensemble, on free ports."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from testkit.processes import end

ZOOKEEPER_JAR = Path(os.environ.get("ZOOKEEPER_JAR", "/usr/share/java/zookeeper.jar"))


def free_port() -> int:
    """A free loopback port for a server a test starts, drawn below the kernel's ephemeral
    range: a port ``bind(0)`` hands out is in that range, and between our closing it and the
    server binding it, an outgoing connection of any process (a ZooKeeper client, an HTTP
    client of the other xdist process) may take it."""
    return free_port_run(1)


def free_port_run(count: int) -> int:
    """The first of ``count`` consecutive free ports, below the ephemeral range (``free_port``
    says why), for a process that binds a base port plus n (up.sh's worker metrics)."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for _ in range(100):
        first = _DRAW.randrange(10_000, low - count)
        if any(port in _GIVEN for port in range(first, first + count)):
            continue  # handed out by this process already, its server perhaps not bound yet
        with contextlib.ExitStack() as held:
            try:
                for port in range(first, first + count):
                    sock = held.enter_context(socket.socket())
                    sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _GIVEN.update(range(first, first + count))
        return first
    raise RuntimeError(f"no {count} consecutive free ports below {low}")


_DRAW = random.Random()  # seeded from the OS: two xdist processes draw different ports
_GIVEN: set[int] = set()


def four_letter(port: int, word: str, timeout: float = 1.0) -> str:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(word.encode())
            chunks = []
            while chunk := sock.recv(4096):
                chunks.append(chunk)
            return b"".join(chunks).decode(errors="replace")
    except OSError:
        return ""


def watches_by_path(port: int) -> dict[str, set[int]]:
    """ZooKeeper's own list of data watches (``wchp``): path -> the sessions watching it.

    What a process waits on, read from the server: a test can prove that a process is parked on
    a watch (and so cannot act until that node changes) instead of sleeping and hoping.
    """
    found: dict[str, set[int]] = {}
    path = None
    for line in four_letter(port, "wchp", timeout=5.0).splitlines():
        if line.startswith("/"):
            path = line.strip()
            found.setdefault(path, set())
        elif path is not None and line.strip().startswith("0x"):
            found[path].add(int(line.strip(), 16))
    return found


@dataclass
class Node:
    myid: int
    directory: Path
    client_port: int
    peer_port: int
    election_port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    def mode(self) -> str:
        for line in four_letter(self.client_port, "srvr").splitlines():
            if line.startswith("Mode:"):
                return line.split(":", 1)[1].strip()
        return ""


@dataclass
class ZooKeeperCluster:
    """``size`` 1 is a standalone server; 3 or 5 make a quorum ensemble."""

    directory: Path
    size: int = 1
    tick_ms: int = 500
    nodes: list[Node] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not ZOOKEEPER_JAR.exists():
            raise RuntimeError(f"{ZOOKEEPER_JAR} is missing: apt-get install zookeeper")
        java = shutil.which("java")
        if java is None:
            raise RuntimeError("java is missing: apt-get install zookeeper brings it")
        self.java = java
        for myid in range(1, self.size + 1):
            node_dir = self.directory / f"zk{myid}"
            (node_dir / "data").mkdir(parents=True, exist_ok=True)
            self.nodes.append(Node(myid, node_dir, free_port(), free_port(), free_port()))
        for node in self.nodes:
            self._configure(node)

    @property
    def hosts(self) -> str:
        return ",".join(n.address for n in self.nodes)

    def _configure(self, node: Node) -> None:
        lines = [
            f"tickTime={self.tick_ms}",
            "initLimit=20",
            "syncLimit=10",
            f"dataDir={node.directory / 'data'}",
            f"clientPort={node.client_port}",
            "clientPortAddress=127.0.0.1",
            "admin.enableServer=false",
            "4lw.commands.whitelist=*",
            "maxClientCnxns=0",
            "minSessionTimeout=1000",
            "maxSessionTimeout=60000",
            "autopurge.purgeInterval=0",
        ]
        if self.size > 1:
            lines += [
                f"server.{n.myid}=127.0.0.1:{n.peer_port}:{n.election_port}" for n in self.nodes
            ]
            (node.directory / "data" / "myid").write_text(f"{node.myid}\n")
        (node.directory / "zoo.cfg").write_text("\n".join(lines) + "\n")

    def start(self, timeout: float = 60.0) -> ZooKeeperCluster:
        for node in self.nodes:
            self.start_node(node, wait=False)
        self.wait_ready(timeout)
        return self

    def start_node(self, node: Node, *, wait: bool = True, timeout: float = 60.0) -> None:
        log = (node.directory / "zookeeper.log").open("ab")
        node.process = subprocess.Popen(
            [
                self.java,
                "-Xmx256m",
                "-XX:+UseSerialGC",
                "-Dzookeeper.log.dir=" + str(node.directory),
                "-cp",
                str(ZOOKEEPER_JAR),
                "org.apache.zookeeper.server.quorum.QuorumPeerMain",
                str(node.directory / "zoo.cfg"),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        if wait:
            self._wait(lambda: self._serving(node), timeout, f"node {node.myid}")

    def _serving(self, node: Node) -> bool:
        if four_letter(node.client_port, "ruok") != "imok":
            return False
        return node.mode() in ("standalone", "leader", "follower")

    def wait_ready(self, timeout: float = 60.0) -> None:
        live = [n for n in self.nodes if n.process is not None and n.process.poll() is None]
        self._wait(lambda: all(self._serving(n) for n in live), timeout, "the ensemble")

    def _wait(self, ready: object, timeout: float, what: str) -> None:
        assert callable(ready)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready():
                return
            time.sleep(0.1)
        raise TimeoutError(
            f"ZooKeeper {what} not serving after {timeout}s (logs in {self.directory})"
        )

    def leader(self) -> Node:
        for node in self.nodes:
            if node.mode() in ("leader", "standalone"):
                return node
        raise RuntimeError("no leader")

    def kill_node(self, node: Node) -> None:
        if node.process is not None and node.process.poll() is None:
            node.process.send_signal(signal.SIGKILL)
            node.process.wait(10)
        node.process = None

    def stop(self) -> None:
        for node in self.nodes:
            if node.process is not None:
                end(node.process)
            node.process = None
