"""Token configuration parsing, scope checks and the submit limiter (no server)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.security import HTTPAuthorizationCredentials

from app.auth import Gate, RateLimiter
from zootrain.auth import (
    Principal,
    Scope,
    TokenConfigError,
    TokenTable,
    config_entry,
    new_token,
    token_digest,
)
from zootrain.errors import RateLimited, Unauthorized, Unavailable
from zootrain.settings import Settings
from zootrain.tokenstore import StoredTokens


def test_a_new_token_round_trips_through_its_entry() -> None:
    token = new_token()
    assert token.startswith("zt_") and len(token) > 40
    table = TokenTable.parse(config_entry("ci", token, ["submit", "read"]))
    principal = table.authenticate(token)
    assert principal == Principal("ci", frozenset({Scope.READ, Scope.SUBMIT}))
    assert table.authenticate(token + "x") is None
    assert table.authenticate(token_digest(token)) is None


def test_entries_split_on_whitespace_and_lines_with_comments() -> None:
    a, b, c = new_token(), new_token(), new_token()
    text = (
        f"# operators\n{config_entry('ops', a, ['admin'])}  {config_entry('ci', b, ['read'])}\n"
        f"\n{config_entry('bot', c, ['submit'])} # nightly\n"
    )
    table = TokenTable.parse(text)
    assert {p.name for p in table.by_digest.values()} == {"ops", "ci", "bot"}


def test_admin_holds_every_scope_others_only_theirs() -> None:
    admin = Principal("a", frozenset({Scope.ADMIN}))
    reader = Principal("r", frozenset({Scope.READ}))
    assert all(admin.allows(s) for s in Scope)
    assert reader.allows(Scope.READ)
    assert not reader.allows(Scope.SUBMIT) and not reader.allows(Scope.ADMIN)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ci:abc", "expected name:sha256:scopes"),
        (f"ci:{'0' * 64}:write", "unknown scope 'write'"),
        (f"ci:{'0' * 64}:", "has no scopes"),
        (f"bad/name:{'0' * 64}:read", "invalid token name"),
        (f"ci:{'0' * 64}:read ci:{'1' * 64}:read", "used twice"),
        (f"a:{'0' * 64}:read b:{'0' * 64}:read", "same token"),
    ],
)
def test_bad_entries_are_refused_naming_the_problem(text: str, message: str) -> None:
    with pytest.raises(TokenConfigError, match=message):
        TokenTable.parse(text)


def test_a_pasted_token_is_refused_without_echoing_it() -> None:
    token = new_token()
    with pytest.raises(TokenConfigError) as raised:
        TokenTable.parse(f"ci:{token}:read")
    assert token not in str(raised.value)
    assert "SHA-256" in str(raised.value)


def test_tokens_from_env_and_file_combine(tmp_path: Path) -> None:
    a, b = new_token(), new_token()
    file = tmp_path / "tokens"
    file.write_text(config_entry("b", b, ["read"]) + "\n")
    table = TokenTable.load(config_entry("a", a, ["read"]), file)
    assert table.authenticate(a) and table.authenticate(b)
    with pytest.raises(TokenConfigError, match="both"):
        TokenTable.load(config_entry("b", a, ["read"]), file)
    with pytest.raises(TokenConfigError, match="cannot read"):
        TokenTable.load(None, tmp_path / "missing")


def test_the_gate_refuses_to_run_without_tokens_unless_auth_is_off() -> None:
    with pytest.raises(RuntimeError, match="no API token is configured"):
        Gate.from_settings(Settings(auth="on", tokens=None, tokens_file=None))
    open_gate = Gate.from_settings(Settings(auth="off"))
    assert open_gate.authenticate(None).allows(Scope.ADMIN)
    closed = Gate.from_settings(
        Settings(auth="on", tokens=config_entry("ci", new_token(), ["read"]), tokens_file=None)
    )
    with pytest.raises(Unauthorized):
        closed.authenticate(None)


def test_settings_repr_hides_tokens() -> None:
    entry = config_entry("ci", new_token(), ["read"])
    assert entry.split(":")[1] not in repr(Settings(tokens=entry))


def test_the_limiter_allows_a_burst_then_the_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr("app.auth.time.monotonic", lambda: now[0])
    limiter = RateLimiter(rate=2.0, burst=3)
    for _ in range(3):
        limiter.take("ci")
    with pytest.raises(RateLimited) as raised:
        limiter.take("ci")
    assert raised.value.retry_after == 1
    assert raised.value.headers() == {"Retry-After": "1"}
    limiter.take("other")  # its own bucket
    now[0] += 0.5  # one more token at 2 a second
    limiter.take("ci")
    with pytest.raises(RateLimited):
        limiter.take("ci")
    now[0] += 60  # refills up to the burst, not beyond
    for _ in range(3):
        limiter.take("ci")
    with pytest.raises(RateLimited):
        limiter.take("ci")


def test_a_zero_rate_means_unlimited() -> None:
    limiter = RateLimiter(rate=0, burst=1)
    for _ in range(1000):
        limiter.take("ci")


# -- expiry and the live list ---------------------------------------------------------------


def test_an_entry_may_expire_on_a_date_or_at_a_moment() -> None:
    day, moment = new_token(), new_token()
    table = TokenTable.parse(
        config_entry("day", day, ["read"], "2027-01-31")
        + "\n"
        + config_entry("moment", moment, ["read"], "2027-01-31T12:30:00+02:00")
    )
    by_day = table.authenticate(day)
    at_moment = table.authenticate(moment)
    assert by_day is not None and at_moment is not None
    assert by_day.expires == datetime(2027, 1, 31, tzinfo=UTC)  # the day it no longer works
    assert not by_day.expired(datetime(2027, 1, 30, 23, 59, tzinfo=UTC))
    assert by_day.expired(datetime(2027, 1, 31, tzinfo=UTC))
    assert at_moment.expired(datetime(2027, 1, 31, 10, 30, tzinfo=UTC))
    assert not at_moment.expired(datetime(2027, 1, 31, 10, 29, tzinfo=UTC))
    with pytest.raises(TokenConfigError, match="not an ISO date"):
        TokenTable.parse(f"ci:{'0' * 64}:read:next-week")
    with pytest.raises(TokenConfigError, match="not an ISO date"):
        config_entry("ci", day, ["read"], "31/01/2027")


def test_the_gate_refuses_an_expired_token_naming_it() -> None:
    token = new_token()
    gate = Gate.from_settings(
        Settings(auth="on", tokens=config_entry("old", token, ["read"], "2001-01-01"))
    )
    gate.apply(StoredTokens())
    credentials = HTTPAuthorizationCredentials(scheme="Bearer", credentials=token)
    with pytest.raises(Unauthorized, match="'old' expired at 2001-01-01"):
        gate.authenticate(credentials)


def test_the_gate_answers_503_until_it_has_read_the_live_list() -> None:
    token = new_token()
    gate = Gate.from_settings(Settings(auth="on", tokens=config_entry("ci", token, ["read"])))
    credentials = HTTPAuthorizationCredentials(scheme="Bearer", credentials=token)
    with pytest.raises(Unavailable):
        gate.authenticate(credentials)  # a revocation it has not read yet could let it in
    gate.apply(StoredTokens())
    assert gate.authenticate(credentials).name == "ci"


def test_live_entries_replace_configured_ones_and_revoked_names_go() -> None:
    configured_admin, live_admin, ci, bot = new_token(), new_token(), new_token(), new_token()
    gate = Gate.from_settings(
        Settings(
            auth="on",
            tokens=config_entry("admin", configured_admin, ["admin"])
            + " "
            + config_entry("ci", ci, ["read"]),
        )
    )
    stored = StoredTokens().with_entry(config_entry("bot", bot, ["submit"]))
    gate.apply(stored)
    assert {p.name for p in gate.tokens.by_digest.values()} == {"admin", "ci", "bot"}
    # Rotating the configured admin token: the live entry of that name replaces it.
    stored = stored.with_entry(config_entry("admin", live_admin, ["admin"]))
    gate.apply(stored)
    assert gate.tokens.authenticate(configured_admin) is None
    assert gate.tokens.authenticate(live_admin) is not None
    # Revoking names, from either source.
    stored = stored.without("ci").without("bot")
    gate.apply(stored)
    assert gate.tokens.authenticate(ci) is None and gate.tokens.authenticate(bot) is None
    assert stored.revoked == ("ci", "bot") and stored.names() == ["admin"]
    # A name added again is no longer revoked.
    again = new_token()
    gate.apply(stored.with_entry(config_entry("ci", again, ["read"])))
    assert gate.tokens.authenticate(again) is not None and gate.tokens.authenticate(ci) is None


def test_the_stored_list_round_trips_and_refuses_what_it_cannot_use() -> None:
    stored = StoredTokens().with_entry(config_entry("a", new_token(), ["read"])).without("b")
    assert StoredTokens.load(stored.dump()) == stored
    assert StoredTokens.load(b"") == StoredTokens()
    with pytest.raises(TokenConfigError, match="not valid JSON"):
        StoredTokens.load(b"{nope")
    with pytest.raises(TokenConfigError, match="SHA-256"):
        StoredTokens.load(json.dumps({"entries": ["ci:zt_pasted:read"]}).encode())
