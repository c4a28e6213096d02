"""How answers look for people: states in colour, and the tables of jobs, shards, versions and
datasets."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:  # the records and pydantic load with the client, when a command calls one
    from zootrain.records import JobRecord, ShardRecord, VersionRecord
    from zootrain.views import JobView

BOX = box.SIMPLE_HEAD
STATE_STYLES = {
    "queued": "cyan",
    "pending": "cyan",
    "running": "yellow",
    "merging": "magenta",
    "succeeded": "green",
    "done": "green",
    "failed": "red",
    "cancelled": "bright_black",
}


def styled(state: str) -> Text:
    return Text(str(state), style=STATE_STYLES.get(str(state), ""))


def when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value is not None else ""


def metrics_text(metrics: dict[str, float] | None) -> str:
    return ", ".join(f"{k} {v:.4g}" for k, v in (metrics or {}).items())


def dataset_text(dataset: Any) -> str:
    data = dataset.model_dump(exclude_none=True) if hasattr(dataset, "model_dump") else {}
    kind = data.pop("kind", "")
    if kind == "builtin":
        return str(data.get("name"))
    if kind == "uploaded":
        return f"uploaded {data.get('id')} (target {data.get('target')})"
    return " ".join([kind, *(f"{k}={v}" for k, v in data.items())])


def model_text(job: JobRecord) -> str:
    return f"{job.model.name} v{job.model.version}" if job.model else job.spec.model_name


def job_table(job: JobView) -> Group:
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column()
    spec = job.spec
    rows: list[tuple[str, Any]] = [
        ("job", job.id),
        ("state", styled(job.state)),
        ("model", model_text(job)),
        ("algorithm", spec.algorithm),
        ("params", json.dumps(spec.params) if spec.params else ""),
        ("dataset", dataset_text(spec.dataset)),
        ("shards", f"{spec.shards} ({spec.partition})"),
        ("created", when(job.created_at)),
        ("started", when(job.started_at)),
        ("finished", when(job.finished_at)),
        ("time limit", f"{spec.time_limit} s per attempt" if spec.time_limit else ""),
        ("error", Text(job.error, style="red") if job.error else ""),
        (
            "merge",
            Text(f"attempt {job.merge_attempts} failed: {job.merge_error}", style="yellow")
            if job.merge_error and not job.state.terminal
            else "",
        ),
    ]
    for key, value in rows:
        if value != "":
            facts.add_row(key, value)
    return Group(facts, "", shard_table(job.shards))


def shard_table(shards: Sequence[ShardRecord], title: str | None = None) -> Table:
    table = Table(title=title, title_justify="left", box=BOX)
    for column in ("shard", "state", "attempts", "worker", "rows", "metrics", "seconds"):
        table.add_column(column, justify="right" if column in ("shard", "rows") else "left")
    for shard in sorted(shards, key=lambda s: s.index):
        table.add_row(
            str(shard.index),
            styled(shard.state),
            str(shard.attempts),
            shard.worker or "",
            str(shard.rows) if shard.rows is not None else "",
            Text(metrics_text(shard.metrics) or (shard.error or ""), overflow="fold"),
            f"{shard.train_seconds:.2f}" if shard.train_seconds is not None else "",
        )
    return table


def version_table(versions: Sequence[VersionRecord]) -> Table:
    table = Table(box=BOX)
    table.add_column("version", justify="right")
    table.add_column("job", no_wrap=True, min_width=20)
    for column in ("algorithm", "shards", "metrics", "train/test rows", "created"):
        table.add_column(column, justify="right" if column == "shards" else "left")
    for record in versions:
        table.add_row(
            str(record.version),
            record.job_id,
            record.algorithm,
            str(record.shards),
            metrics_text(record.metrics),
            f"{record.train_rows}/{record.test_rows}",
            when(record.created_at),
        )
    return table


DATASET_COLUMNS = ("id", "name", "format", "rows", "n_columns", "size", "created_at")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value)


def dataset_list_table(items: Sequence[dict[str, Any]]) -> Table:
    table = Table(box=BOX)
    known = [c for c in DATASET_COLUMNS if any(c in item for item in items)] or ["id"]
    for column in known:
        table.add_column(column, no_wrap=column == "id")
    for item in items:
        table.add_row(*(_cell(item.get(c)) for c in known))
    return table


def dataset_detail(record: dict[str, Any]) -> Group:
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column()
    for key, value in record.items():
        if key != "columns":
            facts.add_row(key, _cell(value))
    columns = record.get("columns")
    if not isinstance(columns, list) or not all(isinstance(c, dict) for c in columns):
        return Group(facts)
    table = Table(box=BOX, title="columns", title_justify="left")
    names = list(dict.fromkeys(key for column in columns for key in column))
    for name in names:
        table.add_column(name, overflow="fold")
    for column in columns:
        table.add_row(*(_cell(column.get(n)) for n in names))
    return Group(facts, "", table)
