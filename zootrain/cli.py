"""The ``zootrain`` command: submit, follow and inspect training jobs; list models; predict.

Every command prints tables for people, or with ``--json`` machine-readable JSON on stdout and
nothing else. The service is ``--url`` or ``$ZOOTRAIN_URL`` (default http://127.0.0.1:8000); the
API token is ``--token`` or ``$ZOOTRAIN_TOKEN``. ``zootrain token new`` makes a token (offline).
Errors are one red line on stderr and exit code 1; usage errors exit 2; a job followed with
``submit --wait`` or ``watch`` that ends failed or cancelled exits 1 too.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
import sys
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn

import httpx
import pydantic
import typer
import yaml
from kazoo.client import KazooClient
from kazoo.exceptions import NoAuthError
from kazoo.handlers.threading import KazooTimeoutError
from rich import box
from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Column, Table
from rich.text import Text

from zootrain import __version__, acl, tokenstore
from zootrain.acl import digest_acl
from zootrain.auth import NAME_PATTERN, Scope, TokenConfigError, config_entry, new_token
from zootrain.client import Client, ShardEvent, ZootrainError
from zootrain.paths import Paths
from zootrain.records import JobRecord, JobState, ShardRecord, ShardState, VersionRecord
from zootrain.settings import Settings
from zootrain.views import JobView

app = typer.Typer(
    name="zootrain",
    help="Distributed scikit-learn training, coordinated by ZooKeeper: the command-line client.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
datasets_app = typer.Typer(help="Uploaded datasets (on servers that have /v1/datasets).")
app.add_typer(datasets_app, name="datasets")
token_app = typer.Typer(
    help="API tokens: `new` makes one offline; `add`, `revoke` and `list` (admin) edit the live "
    "token list in ZooKeeper, which every job service follows without a restart."
)
app.add_typer(token_app, name="token")
zk_app = typer.Typer(
    help="Administration straight against ZooKeeper (needs ZOOTRAIN_ZK_HOSTS, ZOOTRAIN_ZK_ROOT "
    "and the credentials in ZOOTRAIN_ZK_AUTH; no job service involved)."
)
app.add_typer(zk_app, name="zk")

# Piped output is not wrapped at 80 columns (rich's default without a terminal): ids stay whole.
out = Console(
    highlight=False,
    width=None if sys.stdout.isatty() or "COLUMNS" in os.environ else 160,
)
err = Console(stderr=True, highlight=False)

Url = Annotated[
    str | None,
    typer.Option(
        "--url",
        envvar="ZOOTRAIN_URL",
        show_envvar=True,
        help="Base URL of the job service \\[default: http://127.0.0.1:8000]",
    ),
]
TOKEN_HELP = (
    "API token, sent as `Authorization: Bearer`. Prefer $ZOOTRAIN_TOKEN: a token on the "
    "command line shows in `ps` and the shell's history."
)
# Per command (like --url) and global (below, with the environment variable): a --token given
# after the command wins over one before it, which wins over $ZOOTRAIN_TOKEN.
Token = Annotated[
    str | None,
    typer.Option(
        "--token",
        help="API token \\[default: $ZOOTRAIN_TOKEN, which is safer: a token on the command "
        "line shows in `ps` and the shell's history].",
        show_default=False,
    ),
]
Json = Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of tables.")]

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


# -- plumbing ----------------------------------------------------------------------------------


def fail(message: str, code: int = 1) -> NoReturn:
    err.print(Text(f"error: {message}", style="red"), soft_wrap=True)
    raise typer.Exit(code)


# The global --token / $ZOOTRAIN_TOKEN, set by the callback below on every invocation.
_global: dict[str, str | None] = {"token": None}


def print_version(value: bool) -> None:
    """--version: print zootrain's version and stop, before any command runs."""
    if value:
        typer.echo(f"zootrain {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            envvar="ZOOTRAIN_TOKEN",
            show_envvar=True,
            help=TOKEN_HELP,
            show_default=False,
        ),
    ] = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Distributed scikit-learn training, coordinated by ZooKeeper: the command-line client."""
    _global["token"] = token


def given_token(token: str | None) -> str | None:
    """The command's --token, else the global one (--token before the command, $ZOOTRAIN_TOKEN)."""
    return token if token is not None else _global["token"]


def problem_message(exc: ZootrainError, has_token: bool) -> str:
    """One line for an error answer; a 401 or 403 says what to do about the token."""
    message = f"{exc.detail} ({exc.status} {exc.title})" if exc.status else exc.detail
    if exc.status == 401:
        hint = (
            "the service refused the API token: check ZOOTRAIN_TOKEN (or --token)"
            if has_token
            else "to send one: export ZOOTRAIN_TOKEN=<token> (or pass --token)"
        )
        return f"{message}; {hint}"
    if exc.status == 403:
        return f"{message}; use a token that holds that scope (ZOOTRAIN_TOKEN or --token)"
    return message


@contextlib.contextmanager
def service(url: str | None, token: str | None = None) -> Iterator[Client]:
    """A client, with every failure turned into one red line and exit code 1."""
    try:
        client = Client(url, token=given_token(token))
    except ValueError as exc:  # an unusable token (the message does not quote it)
        fail(str(exc))
    try:
        yield client
    except ZootrainError as exc:
        fail(problem_message(exc, client.has_token))
    except httpx.TransportError as exc:
        fail(f"cannot reach {client.base_url}: {exc or type(exc).__name__}")
    except httpx.HTTPError as exc:
        fail(f"{client.base_url}: {exc}")
    except pydantic.ValidationError as exc:
        fail(f"unexpected answer from {client.base_url}: {_one_line(str(exc))}")
    except TimeoutError as exc:
        fail(str(exc) or "timed out")
    except OSError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        err.print(Text("interrupted", style="yellow"))
        raise typer.Exit(130) from None
    finally:
        client.close()


def _one_line(text: str) -> str:
    return " ".join(text.split())


def emit_json(value: Any) -> None:
    """JSON on stdout for scripts: pydantic models, lists of them, or plain data."""
    sys.stdout.write(json.dumps(_plain(value), indent=2) + "\n")
    sys.stdout.flush()


def _plain(value: Any) -> Any:
    if isinstance(value, pydantic.BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def styled(state: str) -> Text:
    return Text(str(state), style=STATE_STYLES.get(str(state), ""))


def when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value is not None else ""


def metrics_text(metrics: dict[str, float] | None) -> str:
    return ", ".join(f"{k} {v:.4g}" for k, v in (metrics or {}).items())


def dataset_text(dataset: Any) -> str:
    data = dataset.model_dump(exclude_none=True) if isinstance(dataset, pydantic.BaseModel) else {}
    kind = data.pop("kind", "")
    if kind == "builtin":
        return str(data.get("name"))
    if kind == "uploaded":
        return f"uploaded {data.get('id')} (target {data.get('target')})"
    return " ".join([kind, *(f"{k}={v}" for k, v in data.items())])


def model_text(job: JobRecord) -> str:
    return f"{job.model.name} v{job.model.version}" if job.model else job.spec.model_name


# -- submit ------------------------------------------------------------------------------------


def load_spec(path: Path) -> dict[str, Any]:
    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text()
    except OSError as exc:
        raise typer.BadParameter(str(exc), param_hint="SPEC") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise typer.BadParameter(
            f"{path} is not valid JSON or YAML: {_one_line(str(exc))}", param_hint="SPEC"
        ) from None
    if not isinstance(data, dict):
        raise typer.BadParameter(f"{path} must hold a mapping (a job spec)", param_hint="SPEC")
    return data


def parse_params(values: Sequence[str]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--param")
        try:
            params[key.strip()] = json.loads(raw)  # 50, 0.5, true, null, "a"
        except ValueError:
            params[key.strip()] = raw  # sqrt, log2, ...: a plain string
    return params


def build_spec(
    spec_file: Path | None,
    model_name: str | None,
    algorithm: str | None,
    dataset: str | None,
    shards: int | None,
    params: Sequence[str],
) -> dict[str, Any]:
    spec = load_spec(spec_file) if spec_file is not None else {}
    flags: dict[str, Any] = {"model_name": model_name, "algorithm": algorithm, "shards": shards}
    spec.update({k: v for k, v in flags.items() if v is not None})
    if dataset is not None:
        spec["dataset"] = {"kind": "builtin", "name": dataset}
    if params:
        spec["params"] = {**(spec.get("params") or {}), **parse_params(params)}
    missing = [
        f"--{name.replace('_', '-')}"
        for name in ("model_name", "algorithm", "dataset")
        if name not in spec
    ]
    if missing:
        raise typer.BadParameter(
            f"give a spec file or {', '.join(missing)}", param_hint=", ".join(missing)
        )
    return spec


class ShardProgress:
    """One progress bar per shard, moved by the job's events."""

    def __init__(self, job: JobView) -> None:
        self.job: JobRecord = job
        self.progress = Progress(
            TextColumn("{task.description}", table_column=Column(no_wrap=True)),
            BarColumn(bar_width=24),
            TextColumn("{task.fields[state]}", table_column=Column(no_wrap=True, min_width=7)),
            TimeElapsedColumn(),
            TextColumn(
                "[bright_black]{task.fields[detail]}",
                table_column=Column(no_wrap=True, overflow="ellipsis"),
            ),
            console=out,
        )
        self.tasks: dict[int, TaskID] = {}
        self.headline = Text()
        for shard in job.shards:
            self.shard(shard)
        for index in range(len(job.shards), job.spec.shards):
            self.shard(ShardRecord(index=index))
        self.update_job(job)

    def renderable(self) -> Group:
        return Group(self.headline, self.progress)

    def update_job(self, job: JobRecord) -> None:
        self.job = job
        self.headline = Text.assemble(
            f"job {job.id} ", styled(job.state), f"  {job.spec.algorithm} → {model_text(job)}"
        )

    def shard(self, shard: ShardRecord) -> None:
        state = shard.state
        first_metric = next(iter((shard.metrics or {}).items()), None)
        detail = "  ".join(
            part
            for part in (
                f"attempt {shard.attempts}" if shard.attempts else "",
                shard.worker or "",
                f"{first_metric[0]} {first_metric[1]:.4g}" if first_metric else "",
                _one_line(shard.error or ""),
            )
            if part
        )
        style = STATE_STYLES.get(state, "")
        fields: dict[str, Any] = {"state": f"[{style}]{state}[/]", "detail": escape(detail)}
        total: float | None = 1.0
        completed = 1 if state == ShardState.done else 0
        if state == ShardState.running:
            total = None  # no fraction to report: a pulsing bar
        if shard.index not in self.tasks:
            self.tasks[shard.index] = self.progress.add_task(
                f"shard {shard.index}", total=total, completed=completed, **fields
            )
        else:
            self.progress.update(
                self.tasks[shard.index], total=total, completed=completed, **fields
            )


def follow(client: Client, job: JobView, timeout: float | None) -> JobView:
    """Progress bars fed by the event stream until the job is terminal; then its final view."""
    view = ShardProgress(job)
    with Live(view.renderable(), console=out, refresh_per_second=8) as live:
        if not job.state.terminal:
            for event in client.events(job.id, timeout=timeout):
                if isinstance(event, ShardEvent):
                    view.shard(event)
                else:
                    view.update_job(event)
                live.update(view.renderable())
        final = client.get_job(job.id)
        for shard in final.shards:
            view.shard(shard)
        view.update_job(final)
        live.update(view.renderable())
    if not out.is_terminal:
        out.line()  # Live leaves its last render without one when it is not a terminal
    return final


def conclude(job: JobView, as_json: bool) -> None:
    """Print the finished job; exit 1 unless it succeeded."""
    if as_json:
        emit_json(job)
    elif job.state == JobState.succeeded:
        out.print(
            Text.assemble("job ", job.id, " ", styled(job.state), f": published {model_text(job)}")
        )
    else:
        out.print(
            Text.assemble("job ", job.id, " ", styled(job.state), f": {job.error or job.state}")
        )
    if job.state != JobState.succeeded:
        if as_json:
            err.print(Text(f"error: job {job.id} {job.state}: {job.error or ''}", style="red"))
        raise typer.Exit(1)


@app.command()
def submit(
    spec_file: Annotated[
        Path | None,
        typer.Argument(
            metavar="[SPEC]", help="Job spec, JSON or YAML (- for stdin); flags override it."
        ),
    ] = None,
    model_name: Annotated[str | None, typer.Option(help="Model to publish a version of.")] = None,
    algorithm: Annotated[
        str | None, typer.Option(help="Estimator, e.g. random_forest_classifier.")
    ] = None,
    dataset: Annotated[
        str | None,
        typer.Option(help="Builtin dataset: iris, wine, breast_cancer, digits, diabetes."),
    ] = None,
    shards: Annotated[int | None, typer.Option(help="Number of data shards.", min=1)] = None,
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", help="Estimator parameter KEY=VALUE (repeatable)."),
    ] = None,
    idempotency_key: Annotated[
        str | None, typer.Option(help="Retry-safe submit key \\[default: a fresh uuid4].")
    ] = None,
    wait: Annotated[
        bool,
        typer.Option("--wait", help="Follow the job until it ends; exit 1 unless it succeeds."),
    ] = False,
    timeout: Annotated[
        float | None, typer.Option(help="With --wait: give up after this many seconds.")
    ] = None,
    url: Url = None,
    token: Token = None,
    as_json: Json = False,
) -> None:
    """Submit a training job (from a spec file, or flags)."""
    spec = build_spec(spec_file, model_name, algorithm, dataset, shards, param or [])
    with service(url, token) as client:
        job = client.submit(spec, idempotency_key=idempotency_key)
        if not wait:
            if as_json:
                emit_json(job)
            else:
                out.print(
                    Text.assemble("submitted job ", (job.id, "bold"), " ", styled(job.state)),
                    soft_wrap=True,
                )
                out.print(f"follow it with: zootrain watch {job.id}", style="bright_black")
            return
        final = client.wait(job.id, timeout=timeout) if as_json else follow(client, job, timeout)
    conclude(final, as_json)


# -- jobs --------------------------------------------------------------------------------------


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


@app.command()
def status(
    job_id: Annotated[str, typer.Argument(metavar="JOB")],
    url: Url = None,
    token: Token = None,
    as_json: Json = False,
) -> None:
    """A job: its state, spec, shards and published model."""
    with service(url, token) as client:
        job = client.get_job(job_id)
    if as_json:
        emit_json(job)
    else:
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
    with service(url, token) as client:
        page = client.list_jobs(state=state, limit=limit, cursor=cursor)
    if as_json:
        emit_json(page)
        return
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
    with service(url, token) as client:
        job = client.cancel(job_id)
    if as_json:
        emit_json(job)
    else:
        out.print(Text.assemble("job ", job.id, " ", styled(job.state)))


# -- models ------------------------------------------------------------------------------------


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


@app.command()
def models(
    name: Annotated[str | None, typer.Argument(help="A model: list its versions.")] = None,
    version: Annotated[
        int | None, typer.Option(min=1, help="With NAME: one version in detail.")
    ] = None,
    url: Url = None,
    token: Token = None,
    as_json: Json = False,
) -> None:
    """Models and their latest versions; with NAME, that model's versions."""
    if version is not None and name is None:
        raise typer.BadParameter("--version needs a model NAME", param_hint="--version")
    with service(url, token) as client:
        if name is None:
            summaries = client.models()
            if as_json:
                emit_json(summaries)
                return
            table = Table(box=BOX)
            for column in ("model", "latest version", "versions"):
                table.add_column(column)
            for summary in summaries:
                latest = summary.latest_version
                table.add_row(summary.name, str(latest or ""), str(summary.versions))
            out.print(table)
        elif version is None:
            versions = client.versions(name)
            if as_json:
                emit_json(versions)
            else:
                out.print(version_table(versions))
        else:
            record = client.version(name, version)
            if as_json:
                emit_json(record)
                return
            out.print(version_table([record]))
            shards = Table(title="shard models", title_justify="left", box=BOX)
            for column in ("shard", "rows", "metrics"):
                shards.add_column(column)
            for shard in record.shard_metrics:
                shards.add_row(str(shard.index), str(shard.rows), metrics_text(shard.metrics))
            out.print(shards)
            out.print(
                f"sha256 {record.sha256}  {record.size} bytes", style="bright_black", soft_wrap=True
            )


@app.command("delete-model")
def delete_model(
    name: Annotated[str, typer.Argument(metavar="MODEL")],
    version: Annotated[
        int | None, typer.Option(min=1, help="Only this version (default: every version).")
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    url: Url = None,
    token: Token = None,
) -> None:
    """Delete a model version, or every version of a model (needs the admin scope)."""
    what = f"{name} version {version}" if version is not None else f"every version of {name}"
    if not yes and not typer.confirm(f"Delete {what}? Its file leaves the store", default=False):
        raise typer.Exit(1)
    with service(url, token) as client:
        client.delete_model(name, version)
    err.print(f"deleted {what}")


def read_rows(path: Path) -> list[list[float]]:
    """Numeric CSV rows; a first row that is not all numbers is a header and skipped."""
    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text()
    except OSError as exc:
        raise typer.BadParameter(str(exc), param_hint="--csv") from None
    rows = [row for row in csv.reader(io.StringIO(text)) if any(cell.strip() for cell in row)]
    if rows and not all(_is_number(cell) for cell in rows[0]):
        rows = rows[1:]
    values: list[list[float]] = []
    for number, row in enumerate(rows, start=1):
        try:
            values.append([float(cell) for cell in row])
        except ValueError:
            bad = next(c for c in row if not _is_number(c))
            raise typer.BadParameter(
                f"{path}: data row {number} has a non-numeric value {bad!r}", param_hint="--csv"
            ) from None
    if not values:
        raise typer.BadParameter(f"{path} has no rows of feature values", param_hint="--csv")
    return values


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


@app.command()
def predict(
    model: Annotated[str, typer.Argument(metavar="MODEL")],
    csv_file: Annotated[
        Path,
        typer.Option(
            "--csv", help="Rows of numeric features (- for stdin); a header row is skipped."
        ),
    ],
    version: Annotated[
        int | None, typer.Option(min=1, help="Model version \\[default: latest].")
    ] = None,
    url: Url = None,
    token: Token = None,
    as_json: Json = False,
) -> None:
    """Predictions of a published model for every row of a CSV file."""
    rows = read_rows(csv_file)
    with service(url, token) as client:
        result = client.predict(model, rows, version=version)
    if as_json:
        emit_json(result)
        return
    table = Table(title=f"{result.model} v{result.version}", title_justify="left", box=BOX)
    table.add_column("row", justify="right")
    table.add_column("prediction")
    for number, prediction in enumerate(result.predictions, start=1):
        table.add_row(str(number), str(prediction))
    out.print(table)


@app.command()
def workers(url: Url = None, token: Token = None, as_json: Json = False) -> None:
    """The live workers and what they are training."""
    with service(url, token) as client:
        records = client.workers()
    if as_json:
        emit_json(records)
        return
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


# -- datasets ----------------------------------------------------------------------------------


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


@datasets_app.command("upload")
def datasets_upload(
    file: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="CSV or Parquet.")
    ],
    name: Annotated[
        str | None, typer.Option(help="A name to show \\[default: the file's].")
    ] = None,
    url: Url = None,
    token: Token = None,
    as_json: Json = False,
) -> None:
    """Upload a dataset file (CSV with a header row, or Parquet)."""
    with service(url, token) as client:
        record = client.upload_dataset(file, name=name)
    if as_json:
        emit_json(record)
    elif isinstance(record, dict):
        out.print(dataset_detail(record))
        if "id" in record:
            out.print(
                f'use it in a job spec as {{"kind": "uploaded", "id": "{record["id"]}", '
                '"target": "<column>"}',
                style="bright_black",
                soft_wrap=True,
                markup=False,
            )


@datasets_app.command("list")
def datasets_list(
    limit: Annotated[int | None, typer.Option(min=1, max=500, help="Datasets per page.")] = None,
    cursor: Annotated[str | None, typer.Option(help="next_cursor of the previous page.")] = None,
    url: Url = None,
    token: Token = None,
    as_json: Json = False,
) -> None:
    """Uploaded datasets, newest first."""
    with service(url, token) as client:
        page = client.list_datasets(limit=limit, cursor=cursor)
    if as_json:
        emit_json(page)
        return
    items = page.get("items", []) if isinstance(page, dict) else page
    out.print(dataset_list_table([i for i in items if isinstance(i, dict)]))
    if isinstance(page, dict) and page.get("next_cursor"):
        out.print(
            f"more: zootrain datasets list --cursor {page['next_cursor']}",
            style="bright_black",
            soft_wrap=True,
        )


@datasets_app.command("show")
def datasets_show(
    dataset_id: Annotated[str, typer.Argument(metavar="ID")],
    url: Url = None,
    token: Token = None,
    as_json: Json = False,
) -> None:
    """One uploaded dataset with its columns."""
    with service(url, token) as client:
        record = client.get_dataset(dataset_id)
    if as_json:
        emit_json(record)
    elif isinstance(record, dict):
        out.print(dataset_detail(record))


# -- tokens ------------------------------------------------------------------------------------


def parse_scopes(value: str) -> list[Scope]:
    scopes: list[Scope] = []
    for item in filter(None, (part.strip().lower() for part in value.split(","))):
        try:
            scope = Scope(item)
        except ValueError:
            raise typer.BadParameter(
                f"unknown scope {item!r}: scopes are read, submit, admin", param_hint="--scopes"
            ) from None
        if scope not in scopes:
            scopes.append(scope)
    if not scopes:
        raise typer.BadParameter("give at least one scope", param_hint="--scopes")
    return scopes


Expires = Annotated[
    str | None,
    typer.Option(
        help="When the token stops working: an ISO date (2027-01-31: it works until that day "
        "begins, UTC) or date and time."
    ),
]


@token_app.command("new")
def token_new(
    name: Annotated[
        str,
        typer.Argument(
            metavar="NAME", help="Who or what the token is for: letters, digits and ._@-"
        ),
    ],
    scopes: Annotated[
        str,
        typer.Option(
            help="Comma-separated: read (look, predict), submit (submit, upload, cancel own "
            "jobs), admin (everything)."
        ),
    ] = "read,submit",
    expires: Expires = None,
    as_json: Json = False,
) -> None:
    """Make a new API token and the ZOOTRAIN_TOKENS entry that lets it in (nothing is sent).

    The token is shown once and kept nowhere; only the entry (its SHA-256) goes in the server.
    """
    token, entry, wanted = _made_token(name, scopes, expires)
    if as_json:
        emit_json(_token_json(name, wanted, token, entry, expires))
        return
    listed = ", ".join(sorted(wanted))
    out.print(
        f"API token for {name} (scopes: {listed}). It is shown this once and stored nowhere:",
        soft_wrap=True,
        markup=False,
    )
    out.print(f"  {token}", soft_wrap=True, markup=False, style="bold")
    out.print(
        "\nThe job service's ZOOTRAIN_TOKENS (or a line of ZOOTRAIN_TOKENS_FILE) gets this "
        "entry. It holds only the token's SHA-256: never put the token itself in the server's "
        "configuration.",
        soft_wrap=True,
        markup=False,
    )
    out.print(f"  {entry}", soft_wrap=True, markup=False, style="bold")
    out.print(
        "\nClients send the token: export ZOOTRAIN_TOKEN=<the token above>  (or --token)",
        soft_wrap=True,
        markup=False,
        style="bright_black",
    )


def _made_token(name: str, scopes: str, expires: str | None) -> tuple[str, str, list[Scope]]:
    if not re.match(NAME_PATTERN, name):
        raise typer.BadParameter(
            f"{name!r}: use 1 to 64 letters, digits and ._@- characters", param_hint="NAME"
        )
    wanted = parse_scopes(scopes)
    token = new_token()
    try:
        entry = config_entry(name, token, wanted, expires)
    except TokenConfigError as exc:
        raise typer.BadParameter(str(exc), param_hint="--expires") from None
    return token, entry, wanted


def _token_json(
    name: str, scopes: list[Scope], token: str, entry: str, expires: str | None
) -> dict[str, Any]:
    made: dict[str, Any] = {"name": name, "scopes": sorted(scopes), "token": token}
    if expires is not None:
        made["expires"] = expires
    made["entry"] = entry
    return made


@contextlib.contextmanager
def zookeeper(*, credentials_required: bool) -> Iterator[tuple[KazooClient, Paths]]:
    """A session straight with ZooKeeper, from the ZOOTRAIN_ZK_* settings of the environment."""
    try:
        settings = Settings()
    except pydantic.ValidationError as exc:
        fail(f"the ZOOTRAIN_* settings are not valid: {exc.errors()[0]['msg']}")
    credentials = settings.zk_auth
    if credentials is None:
        if credentials_required:
            fail(
                "this needs the ZooKeeper credentials: set ZOOTRAIN_ZK_AUTH=user:password "
                "(make up keeps them in var/zk-auth)"
            )
        err.print(
            Text(
                "warning: ZOOTRAIN_ZK_AUTH is not set: the token list is open to every client "
                "of ZooKeeper",
                style="yellow",
            ),
            soft_wrap=True,
        )
    client = KazooClient(
        hosts=settings.zk_hosts,
        timeout=settings.zk_session_timeout,
        auth_data=[("digest", credentials)] if credentials else None,
        default_acl=[digest_acl(credentials)] if credentials else None,
    )
    try:
        client.start(timeout=settings.zk_connect_timeout)
    except KazooTimeoutError:
        client.close()
        fail(f"no ZooKeeper session with {settings.zk_hosts} (ZOOTRAIN_ZK_HOSTS)")
    try:
        yield client, Paths(settings.zk_root)
    except NoAuthError:
        if credentials is None:
            fail("this installation's znodes need its credentials: set ZOOTRAIN_ZK_AUTH")
        fail("ZooKeeper refused the credentials in ZOOTRAIN_ZK_AUTH for this installation")
    except TokenConfigError as exc:
        fail(f"{exc}; fix or delete the node (zkCli.sh with the credentials)")
    finally:
        client.stop()
        client.close()


@token_app.command("add")
def token_add(
    name: Annotated[
        str,
        typer.Argument(
            metavar="NAME", help="Who or what the token is for: letters, digits and ._@-"
        ),
    ],
    scopes: Annotated[
        str,
        typer.Option(help="Comma-separated: read, submit, admin."),
    ] = "read,submit",
    expires: Expires = None,
    as_json: Json = False,
) -> None:
    """(admin) Make a token and add it to the live list in ZooKeeper: every job service
    accepts it at once. It replaces a token of the same name, wherever that one is configured."""
    token, entry, wanted = _made_token(name, scopes, expires)
    with zookeeper(credentials_required=False) as (client, paths):
        tokenstore.update(client, paths.tokens, lambda stored: stored.with_entry(entry))
    if as_json:
        emit_json(_token_json(name, wanted, token, entry, expires))
        return
    until = f", until {expires}" if expires else ""
    out.print(
        f"Added {name} (scopes: {', '.join(sorted(wanted))}{until}) to the token list in "
        "ZooKeeper: every job service accepts it now. The token, shown this once:",
        soft_wrap=True,
        markup=False,
    )
    out.print(f"  {token}", soft_wrap=True, markup=False, style="bold")


@token_app.command("revoke")
def token_revoke(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The token's name")],
    as_json: Json = False,
) -> None:
    """(admin) Refuse the token called NAME on every job service from now on: one from the live
    list, or one configured in ZOOTRAIN_TOKENS or ZOOTRAIN_TOKENS_FILE."""
    with zookeeper(credentials_required=False) as (client, paths):
        stored = tokenstore.update(client, paths.tokens, lambda current: current.without(name))
    if as_json:
        emit_json({"revoked": name, "revoked_names": list(stored.revoked)})
        return
    out.print(
        f"Revoked {name}: every job service refuses it from now on (`zootrain token add "
        f"{name}` issues a new one under that name).",
        soft_wrap=True,
        markup=False,
    )


@token_app.command("list")
def token_list(as_json: Json = False) -> None:
    """(admin) The live token list in ZooKeeper: entries (hashes only) and revoked names.
    Tokens configured in a job service's ZOOTRAIN_TOKENS are not listed: they are not here."""
    with zookeeper(credentials_required=False) as (client, paths):
        stored = tokenstore.read(client, paths.tokens)
    now = datetime.now(UTC)
    rows: list[dict[str, Any]] = [
        {
            "name": principal.name,
            "scopes": sorted(principal.scopes),
            "expires": principal.expires.isoformat() if principal.expires else None,
            "expired": principal.expired(now),
            "sha256": digest,
        }
        for digest, principal in stored.table().by_digest.items()
    ]
    if as_json:
        emit_json({"tokens": rows, "revoked": list(stored.revoked)})
        return
    table = Table("name", "scopes", "expires", "sha256", box=BOX)
    for row in rows:
        expiry = str(row["expires"] or "never")
        table.add_row(
            str(row["name"]),
            ",".join(row["scopes"]),
            Text(f"{expiry} (expired)", style="red") if row["expired"] else expiry,
            str(row["sha256"])[:16] + "…",
        )
    out.print(table)
    revoked = ", ".join(stored.revoked) or "none"
    out.print(f"revoked names: {revoked}", soft_wrap=True, markup=False)


@zk_app.command("secure")
def zk_secure(as_json: Json = False) -> None:
    """(admin) Close every existing znode of the installation to all but the credentials in
    ZOOTRAIN_ZK_AUTH: for nodes made before the credentials were set. Idempotent."""
    with zookeeper(credentials_required=True) as (client, paths):
        credentials = Settings().zk_auth
        assert credentials is not None
        if client.exists(paths.root) is None:
            out.print(f"{paths.root} does not exist yet: nothing to secure", markup=False)
            return
        done = acl.secure(client, paths.root, credentials)
    if as_json:
        emit_json(
            {
                "root": paths.root,
                "secured": done.changed,
                "already": done.already,
                "refused": done.refused,
            }
        )
    else:
        out.print(
            f"{paths.root}: closed {done.changed} znodes to all but ZOOTRAIN_ZK_AUTH's user "
            f"({done.already} already were).",
            soft_wrap=True,
            markup=False,
        )
    if done.refused:
        shown = ", ".join(done.refused[:5])
        fail(f"{len(done.refused)} znodes belong to other credentials and were left: {shown}")


if __name__ == "__main__":
    app()
