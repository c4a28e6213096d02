"""``zootrain status``, ``list``, ``watch`` and ``cancel``: jobs."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Annotated

import typer
from rich.live import Live
from rich.table import Table
from rich.text import Text

from zootrain.cli.plumbing import Json, Token, Url, app, call_and_print, out, service
from zootrain.cli.render import BOX, dataset_text, job_table, model_text, shard_table, styled, when
from zootrain.states import JobState

if TYPE_CHECKING:
    from zootrain.records import JobRecord
    from zootrain.views import JobList, JobView


@app.command()
def status(
    job_id: Annotated[str, typer.Argument(metavar="JOB")],
    url: Url = None,
    token: Token = None,
    as_json: Json = False,
) -> None:
    """A job: its state, spec, shards and published model."""
    call_and_print(url, token, as_json, lambda c: c.get_job(job_id), print_job)


def print_job(job: JobView) -> None:
    out.print(job_table(job))


@app.command("list")
def list_jobs(
    state: Annotated[JobState | None, typer.Option(help="Only jobs in this state.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500, help="Jobs per page.")] = 20,
    cursor: Annotated[str | None, typer.Option(help="next_cursor of the previous page.")] = None,
    url: Url = None,
    token: Token = None,
    as_json: Json = False,
) -> None:
    """Jobs, newest first."""
    call_and_print(url, token, as_json, lambda c: c.list_jobs(state, limit, cursor), print_job_page)


def print_job_page(page: JobList) -> None:
    table = Table(box=BOX)
    table.add_column("job", no_wrap=True, min_width=20)
    for column in ("state", "model", "algorithm", "dataset", "shards", "created"):
        table.add_column(column, justify="right" if column == "shards" else "left")
    for job in page.items:
        table.add_row(
            job.id,
            styled(job.state),
            model_text(job),
            job.spec.algorithm,
            dataset_text(job.spec.dataset),
            str(job.spec.shards),
            when(job.created_at),
        )
    out.print(table)
    if page.next_cursor:
        out.print(
            f"more: zootrain list --cursor {page.next_cursor}", style="bright_black", soft_wrap=True
        )


@app.command()
def watch(
    job_id: Annotated[str, typer.Argument(metavar="JOB")],
    timeout: Annotated[float | None, typer.Option(help="Give up after this many seconds.")] = None,
    url: Url = None,
    token: Token = None,
    as_json: Json = False,
) -> None:
    """Follow a job's shards live until it ends (exit 1 unless it succeeds).

    With --json, one JSON event per line as they arrive.
    """
    from zootrain.client import ShardEvent

    with service(url, token) as client:
        job = client.get_job(job_id)
        if as_json:
            for event in client.events(job_id, timeout=timeout):
                kind = "shard" if isinstance(event, ShardEvent) else "job"
                sys.stdout.write(
                    json.dumps({"event": kind, **event.model_dump(mode="json")}) + "\n"
                )
                sys.stdout.flush()
            final = client.get_job(job_id)
        else:
            shards = {s.index: s for s in job.shards}
            current: JobRecord = job

            def render() -> Table:
                title = Text.assemble(
                    f"job {current.id} ", styled(current.state), f"  → {model_text(current)}"
                )
                table = shard_table(list(shards.values()))
                table.title = title
                return table

            with Live(render(), console=out, refresh_per_second=8) as live:
                if not job.state.terminal:
                    for event in client.events(job_id, timeout=timeout):
                        if isinstance(event, ShardEvent):
                            shards[event.index] = event
                        else:
                            current = event
                        live.update(render())
                final = client.get_job(job_id)
                shards = {s.index: s for s in final.shards}
                current = final
                live.update(render())
            if not out.is_terminal:
                out.line()
    if final.state != JobState.succeeded:
        if not as_json:
            out.print(
                Text.assemble("job ", final.id, " ", styled(final.state), f": {final.error or ''}")
            )
        raise typer.Exit(1)


@app.command()
def cancel(
    job_id: Annotated[str, typer.Argument(metavar="JOB")],
    url: Url = None,
    token: Token = None,
    as_json: Json = False,
) -> None:
    """Cancel a job that has not finished (its running shards are killed)."""
    call_and_print(url, token, as_json, lambda c: c.cancel(job_id), print_job_state)


def print_job_state(job: JobView) -> None:
    out.print(Text.assemble("job ", job.id, " ", styled(job.state)))
