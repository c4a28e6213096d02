"""Prometheus metrics shared by both services (each service adds its own in its package)."""

from __future__ import annotations

from prometheus_client import Gauge

ZOOKEEPER_CONNECTED = Gauge(
    "zootrain_zookeeper_connected", "1 while the ZooKeeper session is connected"
)
ZOOKEEPER_WATCHES = Gauge(
    "zootrain_zookeeper_watches",
    "Watch callbacks this process's ZooKeeper client has registered and not yet seen fire "
    "(kazoo's own tables), by kind",
    ["kind"],
)
