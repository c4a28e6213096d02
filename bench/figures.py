"""The figures a benchmark reports: a value, its same-run baseline and goal, and the
statistics (median, percentiles) they are made of.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class Figure:
    """One row of the report: a value, the same-run baseline it is compared with, a goal."""

    name: str
    value: float | None
    unit: str
    baseline: float | None = None
    baseline_name: str = ""
    baseline_unit: str | None = None  # defaults to ``unit``
    goal: str = ""
    met: bool | None = None
    command: str = ""
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.value is None or self.baseline is None or self.baseline == 0:
            return None
        return self.value / self.baseline


def fmt(value: float | None, unit: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if unit == "s" and abs(value) < 1:
        return f"{value * 1000:.1f} ms"
    if unit == "B" and abs(value) >= 1024 * 1024:
        return f"{value / (1024 * 1024):.1f} MB"
    if unit == "B" and abs(value) >= 10 * 1024:
        return f"{value / 1024:.1f} KB"
    if abs(value) >= 100 or float(value).is_integer():
        return f"{value:,.0f} {unit}".strip()
    return f"{value:.3g} {unit}".strip()


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def median(values: list[float]) -> float:
    return percentile(values, 50)
