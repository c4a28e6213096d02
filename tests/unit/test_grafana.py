"""The Grafana dashboard graphs metrics that the services really export."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import REGISTRY

import app.service_metrics  # noqa: F401  (registers the job service's metrics)
import workers.worker_metrics  # noqa: F401  (and the worker's)

DASHBOARD = Path(__file__).resolve().parents[2] / "docker" / "grafana-dashboard.json"


def test_every_graphed_metric_is_exported() -> None:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    used = {
        name
        for panel in panels
        for target in panel["targets"]
        for name in re.findall(r"\bzootrain_[a-z_]+", target["expr"])
    }
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum")}
    exported = {
        family.name + suffix
        for family in REGISTRY.collect()
        for suffix in suffixes.get(family.type, ("",))
    }
    assert used, "the dashboard graphs nothing"
    assert used <= exported, f"graphed but not exported: {sorted(used - exported)}"
