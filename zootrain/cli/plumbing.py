"""The command's app and plumbing: the Typer apps, the options every command shares, the
consoles, one red line per failure, the service and ZooKeeper sessions, JSON output."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.text import Text

from zootrain import __version__

# The client (httpx, the records, pydantic), the settings and kazoo are imported by the commands
# that use them, not here: every command imports this module, and loading them all took about
# 0.2 s of a command's start-up whether it spoke to the service, to ZooKeeper, or to neither.
if TYPE_CHECKING:
    from kazoo.client import KazooClient

    from zootrain.client import Client, ZootrainError
    from zootrain.paths import Paths

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
    import httpx
    import pydantic

    from zootrain.client import Client, ZootrainError

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
        fail(f"unexpected answer from {client.base_url}: {one_line(str(exc))}")
    except TimeoutError as exc:
        fail(str(exc) or "timed out")
    except OSError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        err.print(Text("interrupted", style="yellow"))
        raise typer.Exit(130) from None
    finally:
        client.close()


def one_line(text: str) -> str:
    return " ".join(text.split())


def emit_json(value: Any) -> None:
    """JSON on stdout for scripts: pydantic models, lists of them, or plain data."""
    sys.stdout.write(json.dumps(_plain(value), indent=2) + "\n")
    sys.stdout.flush()


def _plain(value: Any) -> Any:
    import pydantic

    if isinstance(value, pydantic.BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


T = TypeVar("T")


def call_and_print(
    url: str | None,
    token: str | None,
    as_json: bool,
    call: Callable[[Client], T],
    show: Callable[[T], object],
) -> None:
    """The body of most commands: one call to the service, then its answer as JSON (``--json``)
    or as ``show`` prints it for people."""
    with service(url, token) as client:
        answer = call(client)
    if as_json:
        emit_json(answer)
    else:
        show(answer)


@contextlib.contextmanager
def zookeeper(*, credentials_required: bool) -> Iterator[tuple[KazooClient, Paths]]:
    """A session straight with ZooKeeper, from the ZOOTRAIN_ZK_* settings of the environment."""
    import pydantic
    from kazoo.client import KazooClient
    from kazoo.exceptions import NoAuthError
    from kazoo.handlers.threading import KazooTimeoutError

    from zootrain.acl import digest_acl
    from zootrain.auth import TokenConfigError
    from zootrain.paths import Paths
    from zootrain.settings import Settings

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
