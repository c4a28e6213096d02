"""``zootrain workers``: the live workers; ``workers drain`` and ``workers undrain``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from zootrain.cli.plumbing import Json, Token, Url, app, call_and_print, emit_json, out, service
from zootrain.cli.render import BOX, when

if TYPE_CHECKING:
    from zootrain.records import DrainRecord, WorkerRecord

workers_app = typer.Typer(
    help="The live workers and what they are training; `drain` one (admin).",
    invoke_without_command=True,
)
app.add_typer(workers_app, name="workers")

WorkerId = Annotated[str, typer.Argument(metavar="WORKER", help="a worker's id, as listed")]


@workers_app.callback()
def workers(
    ctx: typer.Context, url: Url = None, token: Token = None, as_json: Json = False
) -> None:
    """The live workers and what they are training."""
    if ctx.invoked_subcommand is None:
        call_and_print(url, token, as_json, lambda c: c.workers(), print_workers)


@workers_app.command("drain")
def drain(worker: WorkerId, url: Url = None, token: Token = None, as_json: Json = False) -> None:
    """Let WORKER finish what it holds and claim nothing new (admin); the others go on."""
    call_and_print(url, token, as_json, lambda c: c.drain_worker(worker), print_drain)


@workers_app.command("undrain")
def undrain(worker: WorkerId, url: Url = None, token: Token = None, as_json: Json = False) -> None:
    """Let a drained WORKER claim work again (admin)."""
    with service(url, token) as client:
        client.undrain_worker(worker)
    if as_json:
        emit_json({"worker_id": worker, "draining": False})
    else:
        out.print(f"worker {worker} claims work again")


def print_drain(record: DrainRecord) -> None:
    out.print(
        f"worker {record.worker_id} is draining (asked by {record.requested_by} at "
        f"{when(record.requested_at)}): it finishes what it holds and claims nothing new; "
        "`zootrain workers` shows it draining"
    )


def print_workers(records: list[WorkerRecord]) -> None:
    table = Table(box=BOX)
    for column in ("worker", "host", "pid", "state", "capacity", "training", "since"):
        table.add_column(column)
    for record in records:
        table.add_row(
            record.id,
            record.host,
            str(record.pid),
            record.state,
            str(record.capacity),
            ", ".join(record.current),
            when(record.started_at),
        )
    out.print(table)
