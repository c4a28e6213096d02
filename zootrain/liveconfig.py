"""Live configuration: the cluster's runtime settings as one JSON document in ZooKeeper.

``<root>/config`` holds ``{"settings": {...}, "updated_at": ..., "updated_by": ...}``, under the
installation's ACL like every other znode (``zkCli.sh get`` shows it, with the credentials). The
environment (``ZOOTRAIN_*``) gives every process its start-up values; a key present in the
document wins over it, and a key removed from it (a merge patch's ``null``) falls back to the
process's environment again. Every process keeps a data watch on the node (``ConfigWatch``), so
a change reaches each of them one round trip after the write, with no restart and no polling.

Only the settings in ``LIVE_KEYS`` can change this way. The others are read once at start-up;
some could never move live (a process needs the ZooKeeper hosts, root and credentials before it
can read this node at all), and the PATCH refuses each with its reason.

``<root>/config/history`` keeps the last ``MAX_HISTORY`` changes, newest first: who, when, the
patch, and the version it made. It is written in the same multi as the document, so a change and
its history entry exist together or not at all.

A document written by hand that does not validate is never applied: each process logs the error,
counts it (``zootrain_config_rejected_total``) and keeps the last good document it had.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import Annotated, Any, ClassVar

from kazoo.exceptions import BadVersionError, NoNodeError
from prometheus_client import Counter, Gauge
from pydantic import TypeAdapter, ValidationError

from zootrain.errors import InvalidRequest, PreconditionFailed
from zootrain.following import NodeFollower
from zootrain.paths import Paths
from zootrain.records import utcnow
from zootrain.settings import Settings
from zootrain.zk import TransactionFailed, ZooKeeper

log = logging.getLogger(__name__)

# The settings that take effect in every process as soon as the document changes. Each key is
# its environment variable's name without ZOOTRAIN_ (task_time_limit is the default time_limit
# of a job that sets none), and is validated by that variable's own rules (zootrain.settings).
LIVE_KEYS: tuple[str, ...] = (
    "paused",
    "worker_concurrency",
    "submit_rate",
    "submit_burst",
    "max_queue",
    "retry_backoff",
    "retry_backoff_max",
    "task_time_limit",
    "job_retention",
    "max_versions",
)

# Why a setting that exists in the environment cannot change live: the PATCH says so.
_BOOTSTRAP = "a process needs it to reach ZooKeeper before it can read the configuration there"
_CREDENTIALS = (
    "credentials stay in the environment; API tokens change live with `zootrain token add` "
    "and `zootrain token revoke`"
)
_ENV_ONLY_REASONS: dict[str, str] = {
    "zk_hosts": _BOOTSTRAP,
    "zk_root": _BOOTSTRAP,
    "zk_auth": _BOOTSTRAP + "; it is a credential, which never goes in a znode",
    "zk_session_timeout": _BOOTSTRAP,
    "zk_connect_timeout": _BOOTSTRAP,
    "auth": _CREDENTIALS,
    "tokens": _CREDENTIALS,
    "tokens_file": _CREDENTIALS,
    "worker_id": "it names one worker process, not the cluster",
    "metrics_port": "it is one process's listening port, opened at start-up",
    "artifacts": "every process opens the artifact store at start-up, and all must agree on it",
}
_RESTART = "it is read once at start-up: change ZOOTRAIN_{name} and restart the processes"

MAX_HISTORY = 100  # changes kept in <root>/config/history (each is a few hundred bytes)


class ConfigInvalid(InvalidRequest):
    """A setting (or the patch's shape) is not acceptable; ``key`` names it."""

    def __init__(self, key: str, detail: str) -> None:
        super().__init__(detail)
        self.key = key


def env_only_reason(key: str) -> str | None:
    """Why ``key`` (a setting of the environment) cannot change live; None if it can."""
    if key in LIVE_KEYS:
        return None
    if key in _ENV_ONLY_REASONS:
        return _ENV_ONLY_REASONS[key]
    if key in Settings.model_fields:
        return _RESTART.format(name=key.upper())
    return None


@cache
def _adapter(key: str) -> TypeAdapter[Any]:
    # The field's own annotation and constraints (ge, le, ...): the environment variable's rules.
    info = Settings.model_fields[key]
    return TypeAdapter(Annotated[info.annotation, info])  # type: ignore[arg-type]


def validate_setting(key: str, value: Any) -> Any:
    """``value`` checked (and normalised: "2" is 2) as ZOOTRAIN_<KEY> would be; ConfigInvalid
    names the key and what is wrong."""
    if key not in LIVE_KEYS:
        reason = env_only_reason(key)
        if reason is not None:
            raise ConfigInvalid(key, f"setting {key!r} cannot change live: {reason}")
        raise ConfigInvalid(
            key, f"unknown setting {key!r}; the live settings are: {', '.join(LIVE_KEYS)}"
        )
    if value is None:
        raise ConfigInvalid(key, f"setting {key!r} cannot be null in the stored document")
    # pydantic's lax mode reads JSON true as 1 and 1 as true; a patch's JSON types must match
    # the setting's own (a string stays accepted: it is how the environment spells every value).
    wants_bool = Settings.model_fields[key].annotation is bool
    if not isinstance(value, str) and isinstance(value, bool) != wants_bool:
        kind = "a boolean" if wants_bool else "a number"
        raise ConfigInvalid(key, f"setting {key!r} must be {kind} (got {json.dumps(value)})")
    try:
        return _adapter(key).validate_python(value)
    except ValidationError as exc:
        message = exc.errors()[0]["msg"]
        raise ConfigInvalid(key, f"setting {key!r}: {message} (got {value!r})") from None


def validate_settings(values: Mapping[str, Any]) -> dict[str, Any]:
    return {key: validate_setting(key, value) for key, value in values.items()}


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396 JSON merge patch: ``patch`` applied to ``target`` (neither is modified).

    The RFC's own algorithm (section 2), written out rather than taken from a package: it is
    these few lines, and the one package for it (json-merge-patch) implements the obsoleted
    RFC 7386 and ships no types. tests/unit/test_liveconfig.py checks the RFC's examples.
    """
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for name, value in patch.items():
        if value is None:
            result.pop(name, None)
        else:
            result[name] = merge_patch(result.get(name), value)
    return result


# -- the stored document ----------------------------------------------------------------------


@dataclass(frozen=True)
class ConfigDocument:
    settings: dict[str, Any] = field(default_factory=dict)
    updated_at: datetime | None = None
    updated_by: str | None = None

    @classmethod
    def load(cls, data: bytes) -> ConfigDocument:
        """Parse the znode (empty: nothing set yet); ConfigInvalid names what is wrong."""
        if not data.strip():
            return cls()
        try:
            raw = json.loads(data)
        except ValueError as exc:
            raise ConfigInvalid("settings", f"the document is not valid JSON: {exc}") from None
        if not isinstance(raw, dict) or not isinstance(raw.get("settings", {}), dict):
            raise ConfigInvalid(
                "settings", 'the document must be an object with a "settings" object'
            )
        extra = sorted(set(raw) - {"settings", "updated_at", "updated_by"})
        if extra:
            raise ConfigInvalid(extra[0], f"unknown field {extra[0]!r} in the document")
        updated_at = raw.get("updated_at")
        try:
            when = None if updated_at is None else datetime.fromisoformat(str(updated_at))
        except ValueError:
            raise ConfigInvalid("updated_at", f"updated_at is not a date: {updated_at!r}") from None
        by = raw.get("updated_by")
        settings = validate_settings(raw.get("settings", {}))
        return cls(settings, when, None if by is None else str(by))

    def dump(self) -> bytes:
        return json.dumps(
            {
                "settings": self.settings,
                "updated_at": None if self.updated_at is None else self.updated_at.isoformat(),
                "updated_by": self.updated_by,
            },
            indent=1,  # zkCli.sh shows it to people
        ).encode()


def load_history(data: bytes) -> list[dict[str, Any]]:
    """The history node's entries, newest first (an unreadable node reads as empty)."""
    try:
        raw = json.loads(data) if data.strip() else {}
        entries = raw.get("entries", []) if isinstance(raw, dict) else []
    except ValueError:
        return []
    return [e for e in entries if isinstance(e, dict)]


# -- the writer's side: one version-checked change (the job service's PATCH) --------------------


def _check_patch(patch: Any) -> dict[str, Any]:
    """The patch's settings part, its shape and every non-null value checked before anything is
    read or written: a bad patch is refused fast and changes nothing."""
    if not isinstance(patch, dict):
        raise ConfigInvalid("body", 'the merge patch must be a JSON object: {"settings": {...}}')
    for key in patch:
        if key != "settings":
            hint = (
                f'; settings go under "settings": {{"settings": {{"{key}": ...}}}}'
                if key in LIVE_KEYS or key in Settings.model_fields
                else ""
            )
            detail = (
                f"{key!r} is read-only"
                if key in ("version", "updated_at", "updated_by")
                else f"unknown field {key!r}{hint}"
            )
            raise ConfigInvalid(key, detail)
    settings = patch.get("settings", {})
    if settings is None:
        return {name: None for name in LIVE_KEYS}  # the RFC's null: remove every setting
    if not isinstance(settings, dict):
        raise ConfigInvalid("settings", '"settings" must be an object of setting: value')
    for key, value in settings.items():
        if value is not None:
            validate_setting(key, value)
        elif key not in LIVE_KEYS:
            validate_setting(key, 0)  # removing an unknown or env-only key: the same refusal
    return settings


async def write_patch(
    zk: ZooKeeper,
    paths: Paths,
    patch: Any,
    *,
    who: str,
    if_match: int | None,
    fallback: ConfigDocument,
) -> tuple[ConfigDocument, int]:
    """Apply ``patch`` to the stored document; the new document and its znode version.

    ``if_match`` (a version): PreconditionFailed unless the node is still at it. Without it,
    the write is still version-checked (setData with the version read), and done again on the
    newer document when another change got in between, so two admins never lose each other's
    change. A stored document that does not validate (written by hand) is patched from
    ``fallback``, the last good document this process applies.
    """
    changes = _check_patch(patch)
    while True:
        try:
            data, stat = await zk.retry(lambda: zk.get(paths.config))
            history_data, history_stat = await zk.retry(lambda: zk.get(paths.config_history))
        except NoNodeError:
            # Deleted by hand (the layout makes both): make them again, empty, and go on.
            await zk.ensure_path(paths.config_history)
            continue
        if if_match is not None and stat.version != if_match:
            raise PreconditionFailed(
                f"the configuration is at version {stat.version}, not {if_match} (If-Match): "
                "read it again and resend your change"
            )
        try:
            current, valid = ConfigDocument.load(data), True
        except ConfigInvalid as exc:
            log.warning("patching over an invalid configuration document: %s", exc.detail)
            current, valid = fallback, False
        settings = validate_settings(merge_patch(current.settings, changes))
        if settings == current.settings and valid and data.strip():
            return current, stat.version  # nothing changes: no new version, no history entry
        document = ConfigDocument(settings, utcnow(), who)
        entry = {
            "version": stat.version + 1,  # setData adds exactly one
            "updated_at": document.updated_at.isoformat() if document.updated_at else None,
            "updated_by": who,
            "patch": {"settings": changes},
            "settings": settings,
        }
        entries = [entry, *load_history(history_data)][:MAX_HISTORY]
        tx = zk.transaction()
        tx.set_data(paths.config, document.dump(), version=stat.version)
        tx.set_data(
            paths.config_history, json.dumps({"entries": entries}).encode(), history_stat.version
        )
        try:
            await zk.commit(tx)
        except TransactionFailed as exc:
            if not isinstance(exc.error, BadVersionError | NoNodeError):
                raise
            if if_match is not None:
                raise PreconditionFailed(
                    f"the configuration changed while this change was written (If-Match "
                    f"{if_match}): read it again and resend your change"
                ) from None
            continue  # another change got in first: apply ours on top of it
        return document, stat.version + 1


# -- every process's side: a watch that keeps the settings current ------------------------------

CONFIG_VERSION = Gauge(
    "zootrain_config_version",
    "Version of the <root>/config znode this process applies (0: never written)",
)
CONFIG_APPLIED_AT = Gauge(
    "zootrain_config_applied_timestamp_seconds",
    "Unix time at which this process applied its current configuration version",
)
CONFIG_REJECTED = Counter(
    "zootrain_config_rejected_total",
    "Configuration documents read from ZooKeeper and ignored because they do not validate",
)
CONFIG_PAUSED = Gauge("zootrain_config_paused", "1 while this process applies paused=true")


class LiveSettings:
    """Applies documents to a process's Settings object, in place: every holder of it (the
    worker, its housekeeper, the job service's handlers) reads the new values on its next use.
    A key absent from the document falls back to the value the environment gave at start-up."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.baseline = {key: getattr(settings, key) for key in LIVE_KEYS}
        self.document = ConfigDocument()
        self.version = -1  # none applied yet

    def effective(self) -> dict[str, Any]:
        return {key: getattr(self.settings, key) for key in LIVE_KEYS}

    def apply(self, document: ConfigDocument, version: int) -> set[str]:
        """The keys whose value changed."""
        changed = set()
        for key in LIVE_KEYS:
            value = document.settings.get(key, self.baseline[key])
            if getattr(self.settings, key) != value:
                setattr(self.settings, key, value)
                changed.add(key)
        self.document = document
        self.version = version
        CONFIG_VERSION.set(max(version, 0))
        CONFIG_APPLIED_AT.set(utcnow().timestamp())
        CONFIG_PAUSED.set(1 if self.settings.paused else 0)
        return changed


Listener = Callable[[set[str]], None]


@dataclass
class ConfigWatch(NodeFollower):
    """Keeps ``live`` current from a data watch on ``<root>/config``; ``listeners`` hear which
    keys changed."""

    following: ClassVar[str] = "the configuration"
    paths: Paths
    live: LiveSettings
    listeners: list[Listener] = field(default_factory=list)
    _seen: int = -2  # the last version read, good or bad (a bad one is logged once)

    async def _read_once(self) -> None:
        # exists() sets the watch whether or not the node is there: its creation is seen too.
        present = await self.zk.retry(
            lambda: self.zk.exists(self.paths.config, watch=self._changed)
        )
        if present is None:
            self._apply(ConfigDocument(), 0)
            return
        try:
            data, stat = await self.zk.retry(lambda: self.zk.get(self.paths.config))
        except NoNodeError:
            return  # deleted between the two reads: its watch fired, and reads again
        if stat.version == self._seen:
            self.loaded.set()
            return
        self._seen = stat.version
        try:
            document = ConfigDocument.load(data)
        except ConfigInvalid as exc:
            # Keep the last good document: a typo by hand must not stop the cluster.
            CONFIG_REJECTED.inc()
            log.error(
                "ignoring the configuration in ZooKeeper (%s, version %d): %s; still applying "
                "version %d",
                self.paths.config,
                stat.version,
                exc.detail,
                max(self.live.version, 0),
            )
            self.loaded.set()
            return
        self._apply(document, stat.version)

    def _apply(self, document: ConfigDocument, version: int) -> None:
        if version == self.live.version and document == self.live.document:
            self.loaded.set()
            return
        changed = self.live.apply(document, version)
        log.info(
            "configuration version %d applied%s",
            version,
            f": {', '.join(f'{k}={getattr(self.live.settings, k)!r}' for k in sorted(changed))}"
            if changed
            else "",
        )
        for listener in list(self.listeners):
            try:
                listener(changed)
            except Exception:
                log.exception("a configuration listener failed")
        self.loaded.set()
