"""Prometheus metrics shared by both services (each service adds its own in its package)."""

from __future__ import annotations

from prometheus_client import Gauge

ZOOKEEPER_CONNECTED = Gauge(
    "zootrain_zookeeper_connected", "1 while the ZooKeeper session is connected"
)
