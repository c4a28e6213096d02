"""API tokens: how they are made, stored as hashes, parsed from configuration and checked.

A token is a random secret (``zt_`` + 32 random bytes, URL-safe). The service never stores it:
the configuration holds ``name:sha256:scopes[:expires]`` entries, one per token, in
``ZOOTRAIN_TOKENS`` (whitespace- or newline-separated), in the file named by
``ZOOTRAIN_TOKENS_FILE`` (one per line, ``#`` comments), or in ZooKeeper (zootrain.tokenstore,
edited live with ``zootrain token add|revoke``). ``expires`` is an ISO date (the token works
until that day begins, UTC) or an ISO date and time.

A plain SHA-256 is the right hash here, unlike for passwords: the tokens carry 256 bits of
entropy, so there is nothing for a slow hash to protect against, and a fast one keeps the check
off the request's critical path.
"""

from __future__ import annotations

import enum
import hashlib
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

TOKEN_PREFIX = "zt_"
NAME_PATTERN = r"^[A-Za-z0-9._@-]{1,64}$"
_DIGEST = re.compile(r"^[0-9a-f]{64}$")


class Scope(enum.StrEnum):
    READ = "read"  # look at jobs, models, datasets, workers; predict
    SUBMIT = "submit"  # submit jobs, upload datasets, cancel one's own jobs
    ADMIN = "admin"  # everything: cancel others' jobs, delete datasets and model versions


class TokenConfigError(ValueError):
    """The token configuration cannot be used; the message names the entry."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request acts as: the token's name and the scopes it holds."""

    name: str
    scopes: frozenset[Scope]
    expires: datetime | None = field(default=None, compare=False)

    def allows(self, scope: Scope) -> bool:
        # admin holds every scope: an operator's token should not need a list.
        return scope in self.scopes or Scope.ADMIN in self.scopes

    def expired(self, now: datetime) -> bool:
        return self.expires is not None and now >= self.expires


# Without authentication (ZOOTRAIN_AUTH=off) every request acts as this principal.
ANONYMOUS = Principal("anonymous", frozenset(Scope))


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def config_entry(
    name: str, token: str, scopes: Iterable[Scope | str], expires: str | None = None
) -> str:
    """The ``name:sha256:scopes[:expires]`` line that lets ``token`` in; it holds no secret."""
    listed = ",".join(sorted(str(Scope(s)) for s in scopes))
    entry = f"{name}:{token_digest(token)}:{listed}"
    if expires is not None:
        parse_expiry(expires, "expires")  # refuse what the service could not read
        entry += f":{expires}"
    return entry


def parse_expiry(text: str, where: str) -> datetime:
    """An ISO date (midnight UTC that day: the token works the day before) or date and time
    (UTC unless it names its offset)."""
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            day = date.fromisoformat(text)
            return datetime(day.year, day.month, day.day, tzinfo=UTC)
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise TokenConfigError(
            f"{where}: the expiry {text[:40]!r} is not an ISO date (2027-01-31) or date and time"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class TokenTable:
    """The configured tokens, by digest."""

    by_digest: dict[str, Principal]

    @classmethod
    def parse(cls, text: str, *, origin: str = "ZOOTRAIN_TOKENS") -> TokenTable:
        by_digest: dict[str, Principal] = {}
        names: set[str] = set()
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.split("#", 1)[0]
            for entry in line.split():
                principal, digest = _parse_entry(entry, f"{origin} line {number}")
                if principal.name in names:
                    raise TokenConfigError(
                        f"{origin} line {number}: the name {principal.name!r} is used twice"
                    )
                if digest in by_digest:
                    raise TokenConfigError(
                        f"{origin} line {number}: {principal.name!r} has the same token as "
                        f"{by_digest[digest].name!r}"
                    )
                names.add(principal.name)
                by_digest[digest] = principal
        return cls(by_digest)

    @classmethod
    def load(cls, inline: str | None, file: Path | None) -> TokenTable:
        table = cls.parse(inline or "")
        if file is not None:
            try:
                text = file.read_text(encoding="utf-8")
            except OSError as exc:
                raise TokenConfigError(
                    f"ZOOTRAIN_TOKENS_FILE: cannot read {file}: {exc.strerror}"
                ) from None
            extra = cls.parse(text, origin="ZOOTRAIN_TOKENS_FILE")
            clash = {p.name for p in table.by_digest.values()} & {
                p.name for p in extra.by_digest.values()
            }
            if clash:
                raise TokenConfigError(
                    f"token names defined in both ZOOTRAIN_TOKENS and ZOOTRAIN_TOKENS_FILE: "
                    f"{', '.join(sorted(clash))}"
                )
            table = cls({**table.by_digest, **extra.by_digest})
        return table

    def __len__(self) -> int:
        return len(self.by_digest)

    def authenticate(self, token: str) -> Principal | None:
        """The token's principal, expired or not (Principal.expired says)."""
        # The lookup is keyed by a digest of what was presented, so its timing tells an
        # attacker nothing about the configured tokens (no character-by-character compare).
        return self.by_digest.get(token_digest(token))

    def names(self) -> set[str]:
        return {p.name for p in self.by_digest.values()}

    def merged(self, live: TokenTable, revoked: Iterable[str]) -> TokenTable:
        """This (configured) table with the live one from ZooKeeper: a live entry replaces a
        configured one of the same name (a token rotated without a restart), and a revoked
        name is refused whichever source holds it."""
        gone = set(revoked) | live.names()
        kept = {d: p for d, p in self.by_digest.items() if p.name not in gone}
        dropped = set(revoked)
        kept.update({d: p for d, p in live.by_digest.items() if p.name not in dropped})
        return TokenTable(kept)


def _parse_entry(entry: str, where: str) -> tuple[Principal, str]:
    # At most four fields: an expiry with a time of day has colons of its own.
    parts = entry.split(":", 3)
    if len(parts) not in (3, 4):
        raise TokenConfigError(
            f"{where}: expected name:sha256:scopes[:expires] (zootrain token new prints one), "
            f"got {len(parts)} field(s)"
        )
    name, digest, listed = parts[:3]
    expires = parse_expiry(parts[3], where) if len(parts) == 4 else None
    if not re.match(NAME_PATTERN, name):
        raise TokenConfigError(f"{where}: invalid token name {name!r} (letters, digits, ._@-)")
    digest = digest.lower().removeprefix("sha256=")
    if not _DIGEST.match(digest):
        # Never echo the field: someone may have pasted the token itself here.
        raise TokenConfigError(
            f"{where}: the second field of {name!r} must be the token's SHA-256 in hex "
            "(64 characters), not the token"
        )
    scopes: set[Scope] = set()
    for item in filter(None, listed.split(",")):
        try:
            scopes.add(Scope(item))
        except ValueError:
            raise TokenConfigError(
                f"{where}: unknown scope {item!r} for {name!r}; scopes are read, submit, admin"
            ) from None
    if not scopes:
        raise TokenConfigError(f"{where}: {name!r} has no scopes")
    return Principal(name, frozenset(scopes), expires), digest
