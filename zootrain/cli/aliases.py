"""``zootrain alias``: a model's movable names (champion, staging), and what it serves."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from zootrain.cli.plumbing import Json, Token, Url, app, call_and_print, out
from zootrain.cli.render import BOX

if TYPE_CHECKING:
    from zootrain.views import ModelView

alias_app = typer.Typer(
    help="Model aliases: set, delete, list (setting or deleting needs admin, or the model's "
    "owner with the submit scope).",
    no_args_is_help=True,
)
app.add_typer(alias_app, name="alias")

IfMatch = Annotated[
    int | None,
    typer.Option(
        "--if-match",
        min=0,
        help="Only if the aliases are still at this version (aliases_version from `alias "
        "list`): otherwise the service refuses with a conflict.",
    ),
]


@alias_app.command("list")
def list_aliases(
    model: Annotated[str, typer.Argument(metavar="MODEL")],
    url: Url = None,
    token: Token = None,
    as_json: Json = False,
) -> None:
    """The model's aliases and the version it serves by default."""
    call_and_print(url, token, as_json, lambda c: c.model(model), print_model)


@alias_app.command("set")
def set_alias(
    model: Annotated[str, typer.Argument(metavar="MODEL")],
    alias: Annotated[str, typer.Argument(metavar="ALIAS")],
    version: Annotated[int, typer.Argument(metavar="VERSION", min=1)],
    if_match: IfMatch = None,
    url: Url = None,
    token: Token = None,
    as_json: Json = False,
) -> None:
    """Point ALIAS at VERSION (a champion alias is what the model serves by default)."""
    call_and_print(
        url,
        token,
        as_json,
        lambda c: c.set_alias(model, alias, version, if_match=if_match),
        print_model,
    )


@alias_app.command("delete")
def delete_alias(
    model: Annotated[str, typer.Argument(metavar="MODEL")],
    alias: Annotated[str, typer.Argument(metavar="ALIAS")],
    if_match: IfMatch = None,
    url: Url = None,
    token: Token = None,
    as_json: Json = False,
) -> None:
    """Remove ALIAS from the model."""
    call_and_print(
        url, token, as_json, lambda c: c.delete_alias(model, alias, if_match=if_match), print_model
    )


def print_model(model: ModelView) -> None:
    table = Table(title=f"{model.name} aliases", title_justify="left", box=BOX)
    table.add_column("alias")
    table.add_column("version", justify="right")
    for alias, version in sorted(model.aliases.items()):
        table.add_row(alias, str(version))
    out.print(table)
    served = "nothing" if model.serving_version is None else f"v{model.serving_version}"
    out.print(
        f"serves {served} by default ({model.serving or 'no version'}); "
        f"aliases_version {model.aliases_version}",
        style="bright_black",
    )
