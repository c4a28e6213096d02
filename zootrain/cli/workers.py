"""``zootrain workers``: the live workers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.table import Table

from zootrain.cli.plumbing import Json, Token, Url, app, call_and_print, out
from zootrain.cli.render import BOX, when

if TYPE_CHECKING:
    from zootrain.records import WorkerRecord


@app.command()
def workers(url: Url = None, token: Token = None, as_json: Json = False) -> None:
    """The live workers and what they are training."""
    call_and_print(url, token, as_json, lambda c: c.workers(), print_workers)


def print_workers(records: list[WorkerRecord]) -> None:
    table = Table(box=BOX)
    for column in ("worker", "host", "pid", "capacity", "training", "since"):
        table.add_column(column)
    for record in records:
        table.add_row(
            record.id,
            record.host,
            str(record.pid),
            str(record.capacity),
            ", ".join(record.current),
            when(record.started_at),
        )
    out.print(table)
