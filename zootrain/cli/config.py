"""``zootrain config``: the live configuration (show, ``set``, ``history``)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from zootrain.cli.plumbing import Json, Token, Url, app, call_and_print, out
from zootrain.cli.render import BOX, when

if TYPE_CHECKING:
    from zootrain.config_views import ConfigChange, ConfigView

config_app = typer.Typer(
    help="The live configuration every process follows: show it, `set` settings (admin), "
    "see its `history`.",
    invoke_without_command=True,
)
app.add_typer(config_app, name="config")


@config_app.callback()
def config(ctx: typer.Context, url: Url = None, token: Token = None, as_json: Json = False) -> None:
    """The live settings, where each comes from, and the document's version."""
    if ctx.invoked_subcommand is None:
        call_and_print(url, token, as_json, lambda c: c.config(), print_config)


def parse_assignment(item: str) -> tuple[str, Any]:
    """KEY=VALUE; VALUE is read as JSON when it can be (2, 0.5, true, null), else as text.
    null returns the setting to the environment's value."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise typer.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="SETTING=VALUE")
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    return key.strip(), value


@config_app.command("set")
def config_set(
    assignments: Annotated[
        list[str],
        typer.Argument(
            metavar="SETTING=VALUE...",
            help="e.g. paused=true worker_concurrency=2; SETTING=null returns it to the "
            "environment's value",
        ),
    ],
    if_match: Annotated[
        int | None,
        typer.Option(
            "--if-match",
            help="Only if the configuration is still at this version (else error 412)",
        ),
    ] = None,
    url: Url = None,
    token: Token = None,
    as_json: Json = False,
) -> None:
    """Change live settings (admin): every process applies them within a second."""
    settings = dict(parse_assignment(item) for item in assignments)
    call_and_print(
        url,
        token,
        as_json,
        lambda c: c.update_config(settings, if_match=if_match),
        print_config,
    )


@config_app.command("history")
def config_history(
    limit: Annotated[int | None, typer.Option(min=1, max=1000, help="Changes to show")] = None,
    url: Url = None,
    token: Token = None,
    as_json: Json = False,
) -> None:
    """Changes to the configuration, newest first: who, when, what."""
    call_and_print(url, token, as_json, lambda c: c.config_history(limit), print_history)


def print_config(view: ConfigView) -> None:
    if view.settings.paused:
        out.print(
            Text("PAUSED: workers claim no new work (zootrain config set paused=false)", "bold red")
        )
    if view.rejected is not None:
        out.print(
            Text(
                f"the stored document (version {view.rejected.version}) is ignored: "
                f"{view.rejected.error}",
                "yellow",
            )
        )
    table = Table(box=BOX)
    for column in ("setting", "value", "from"):
        table.add_column(column)
    for key, value in view.settings.model_dump().items():
        source = "configuration" if key in view.overrides else "environment"
        table.add_row(key, json.dumps(value), source)
    out.print(table)
    by = f" by {view.updated_by}" if view.updated_by else ""
    out.print(
        f"version {view.version}{f', {when(view.updated_at)}' if view.updated_at else ''}{by}"
    )


def print_history(changes: list[ConfigChange]) -> None:
    table = Table(box=BOX)
    for column in ("version", "when", "by", "change"):
        table.add_column(column)
    for change in changes:
        settings = change.patch.get("settings") or {}
        text = ", ".join(f"{k}={json.dumps(v)}" for k, v in settings.items()) or "(all reset)"
        table.add_row(str(change.version), when(change.updated_at), change.updated_by or "", text)
    out.print(table)
