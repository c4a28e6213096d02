"""``zootrain submit``: a job spec from a file and flags, submitted, and followed with progress
bars (``--wait``)."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Group
from rich.live import Live
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Column
from rich.text import Text

from zootrain.cli.plumbing import Json, Token, Url, app, emit_json, err, one_line, out, service
from zootrain.cli.render import STATE_STYLES, model_text, styled
from zootrain.states import JobState, ShardState

if TYPE_CHECKING:
    from zootrain.client import Client
    from zootrain.records import JobRecord, ShardRecord
    from zootrain.views import JobView


def load_spec(path: Path) -> dict[str, Any]:
    import yaml

    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text()
    except OSError as exc:
        raise typer.BadParameter(str(exc), param_hint="SPEC") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise typer.BadParameter(
            f"{path} is not valid JSON or YAML: {one_line(str(exc))}", param_hint="SPEC"
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


def round_text(job: JobRecord) -> str:
    """A job training in rounds: its round, objective and change (gradient norm or shift)."""
    progress = job.rounds
    if progress is None:
        return ""
    parts = [f"  round {progress.round}"]
    if progress.objective is not None:
        parts.append(f"objective {progress.objective:.6g}")
    if progress.change is not None:
        parts.append(f"change {progress.change:.3g}")
    return "  ".join(parts)


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
        from zootrain.records import ShardRecord

        for index in range(len(job.shards), job.spec.shards):
            self.shard(ShardRecord(index=index))
        self.update_job(job)

    def renderable(self) -> Group:
        return Group(self.headline, self.progress)

    def update_job(self, job: JobRecord) -> None:
        self.job = job
        self.headline = Text.assemble(
            f"job {job.id} ",
            styled(job.state),
            f"  {job.spec.algorithm} → {model_text(job)}",
            round_text(job),
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
                one_line(shard.error or ""),
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
    from zootrain.client import ShardEvent

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
