"""The Markdown table every run prints, and its JSON form."""

from __future__ import annotations

import json
from typing import Any

from bench.figures import Figure, fmt

HEADER = ("figure", "value", "baseline", "ratio", "goal", "met?", "command")


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _met(figure: Figure) -> str:
    if figure.met is None:
        return "—" if not figure.goal else "n/a"
    return "yes" if figure.met else "**no**"


def row(figure: Figure) -> list[str]:
    baseline = "—"
    if figure.baseline is not None:
        baseline = fmt(figure.baseline, figure.baseline_unit or figure.unit)
        if figure.baseline_name:
            baseline += f" ({figure.baseline_name})"
    ratio = figure.ratio
    value = fmt(figure.value, figure.unit)
    if figure.note:
        value += f" ({figure.note})"
    return [
        figure.name,
        value,
        baseline,
        "—" if ratio is None else f"{ratio:.2f}x",
        figure.goal or "—",
        _met(figure),
        f"`{figure.command}`" if figure.command else "—",
    ]


def markdown(figures: list[Figure]) -> str:
    lines = [
        "| " + " | ".join(HEADER) + " |",
        "|" + "|".join(" --- " for _ in HEADER) + "|",
    ]
    for figure in figures:
        lines.append("| " + " | ".join(_cell(c) for c in row(figure)) + " |")
    return "\n".join(lines)


def as_json(figures: list[Figure]) -> str:
    rows: list[dict[str, Any]] = [
        {
            "figure": f.name,
            "value": f.value,
            "unit": f.unit,
            "baseline": f.baseline,
            "baseline_name": f.baseline_name,
            "ratio": f.ratio,
            "goal": f.goal,
            "met": f.met,
            "command": f.command,
            "note": f.note,
        }
        for f in figures
    ]
    return json.dumps(rows, indent=2)
