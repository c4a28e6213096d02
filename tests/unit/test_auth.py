"""Token configuration parsing, scope checks and the submit limiter (no server)."""

from __future__ import annotations

from pathlib import Path

import pytest

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
from zootrain.errors import RateLimited, Unauthorized
from zootrain.settings import Settings


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
