"""``zootrain token new``, ``add``, ``revoke`` and ``list``: API tokens, offline or in the live
list in ZooKeeper."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from zootrain.auth import NAME_PATTERN, Scope, TokenConfigError, config_entry, new_token
from zootrain.cli.plumbing import Json, emit_json, out, token_app, zookeeper
from zootrain.cli.render import BOX


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


TokenName = Annotated[
    str,
    typer.Argument(metavar="NAME", help="Who or what the token is for: letters, digits and ._@-"),
]
Expires = Annotated[
    str | None,
    typer.Option(
        help="When the token stops working: an ISO date (2027-01-31: it works until that day "
        "begins, UTC) or date and time."
    ),
]


@token_app.command("new")
def token_new(
    name: TokenName,
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


@token_app.command("add")
def token_add(
    name: TokenName,
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
    from zootrain import tokenstore  # kazoo and the asyncio bridge: only for these commands

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
    from zootrain import tokenstore  # kazoo and the asyncio bridge: only for these commands

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
    from zootrain import tokenstore  # kazoo and the asyncio bridge: only for these commands

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
