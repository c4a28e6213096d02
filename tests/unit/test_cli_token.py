"""``zootrain token new`` (offline) and how the command passes a token to the service.

The token command is checked end to end through zootrain.auth: the entry it prints must let the
token it prints in, with the scopes asked for. The service side is httpx.MockTransport here;
tests/integration/test_cli.py runs the command against the real job service.
"""

from __future__ import annotations

import functools
import json
import re

import httpx
import pytest
from typer.testing import CliRunner

from zootrain import cli
from zootrain import client as client_module
from zootrain.auth import TOKEN_PREFIX, Scope, TokenTable
from zootrain.client import Client

URL = "http://zootrain.test"
TOKEN = "zt_unit-cli-token-0123456789abcdefghijklmnopqrstu"


def run(*argv: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli.app, list(argv), env=env)
    return result.exit_code, result.stdout, result.stderr


def test_token_new_prints_a_token_and_the_entry_that_lets_it_in() -> None:
    code, out, _ = run("token", "new", "alice")
    assert code == 0, out
    (token,) = re.findall(rf"^\s+({TOKEN_PREFIX}\S+)$", out, re.MULTILINE)
    (entry,) = re.findall(r"^\s+(alice:[0-9a-f]{64}:\S+)$", out, re.MULTILINE)
    principal = TokenTable.parse(entry).authenticate(token)
    assert principal is not None and principal.name == "alice"
    assert principal.scopes == {Scope.READ, Scope.SUBMIT}  # the default
    assert token not in entry  # the server's side holds only the hash
    assert "shown this once" in out and "ZOOTRAIN_TOKENS" in out
    assert "never put the token itself" in out and "export ZOOTRAIN_TOKEN" in out


def test_each_token_is_new() -> None:
    tokens = {json.loads(run("token", "new", "bob", "--json")[1])["token"] for _ in range(3)}
    assert len(tokens) == 3


def test_token_new_json_and_scopes() -> None:
    code, out, _ = run("token", "new", "ops@example", "--scopes", "admin", "--json")
    assert code == 0
    made = json.loads(out)  # the whole of stdout
    assert made["name"] == "ops@example" and made["scopes"] == ["admin"]
    principal = TokenTable.parse(made["entry"]).authenticate(made["token"])
    assert principal is not None and principal.allows(Scope.SUBMIT)  # admin implies all

    code, out, _ = run("token", "new", "ci", "--scopes", " Read ,read", "--json")
    assert code == 0 and json.loads(out)["scopes"] == ["read"]
    read_only = TokenTable.parse(json.loads(out)["entry"]).authenticate(json.loads(out)["token"])
    assert read_only is not None and not read_only.allows(Scope.SUBMIT)


@pytest.mark.parametrize(
    "argv",
    [
        ["token", "new"],  # no name
        ["token", "new", "two words"],
        ["token", "new", "x" * 65],
        ["token", "new", "a:b"],  # would break the entry's fields
        ["token", "new", "ci", "--scopes", "write"],
        ["token", "new", "ci", "--scopes", ","],
    ],
)
def test_token_new_usage_errors_exit_2(argv: list[str]) -> None:
    code, out, _ = run(*argv)
    assert code == 2 and TOKEN_PREFIX not in out


# -- the token on requests -----------------------------------------------------------------------


class Service:
    """A MockTransport job service that records the Authorization header of each request."""

    def __init__(self, status: int = 200, detail: str = "") -> None:
        self.status = status
        self.detail = detail
        self.authorization: list[str | None] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.authorization.append(request.headers.get("Authorization"))
        if self.status != 200:
            body = {"title": "Denied", "status": self.status, "detail": self.detail}
            return httpx.Response(
                self.status, json=body, headers={"content-type": "application/problem+json"}
            )
        return httpx.Response(200, json=[])


@pytest.fixture
def service(monkeypatch: pytest.MonkeyPatch) -> Service:
    recorded = Service()
    transport = httpx.MockTransport(lambda request: recorded(request))
    # The CLI imports the client when a command runs (not at start-up): patch it where it is found.
    monkeypatch.setattr(client_module, "Client", functools.partial(Client, transport=transport))
    monkeypatch.delenv("ZOOTRAIN_TOKEN", raising=False)
    return recorded


def test_the_token_comes_from_the_environment_or_either_flag(service: Service) -> None:
    assert run("workers", "--url", URL, env={"ZOOTRAIN_TOKEN": TOKEN})[0] == 0
    assert run("--token", "zt_global", "workers", "--url", URL)[0] == 0
    # A flag wins over the environment; one after the command over one before it.
    assert (
        run("--token", "zt_global", "workers", "--url", URL, env={"ZOOTRAIN_TOKEN": TOKEN})[0] == 0
    )
    assert run("--token", "zt_global", "workers", "--token", "zt_local", "--url", URL)[0] == 0
    assert run("workers", "--url", URL)[0] == 0
    assert service.authorization == [
        f"Bearer {TOKEN}",
        "Bearer zt_global",
        "Bearer zt_global",
        "Bearer zt_local",
        None,
    ]


def test_a_401_without_a_token_says_how_to_give_one(service: Service) -> None:
    service.status, service.detail = 401, "this operation needs an API token"
    code, out, err = run("workers", "--url", URL)
    assert code == 1 and out == ""
    assert "this operation needs an API token (401 Denied)" in err
    assert "export ZOOTRAIN_TOKEN=<token>" in err and "--token" in err


def test_a_refused_token_is_not_echoed(service: Service) -> None:
    service.status, service.detail = 401, "the bearer token is not valid (unknown or revoked)"
    code, _, err = run("workers", "--url", URL, env={"ZOOTRAIN_TOKEN": TOKEN})
    assert code == 1 and "refused the API token" in err and TOKEN not in err


def test_a_403_names_the_scope_problem(service: Service) -> None:
    service.status, service.detail = 403, "token 'ci' lacks the 'submit' scope"
    code, _, err = run("workers", "--url", URL, env={"ZOOTRAIN_TOKEN": TOKEN})
    assert code == 1 and "lacks the 'submit' scope (403 Denied)" in err
    assert "use a token that holds that scope" in err


def test_an_unusable_token_is_one_error_line(service: Service) -> None:
    code, _, err = run("workers", "--url", URL, "--token", "zt_has space")
    assert code == 1 and "zt_has space" not in err and "token" in err
    assert service.authorization == []
