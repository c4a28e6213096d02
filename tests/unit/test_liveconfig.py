"""The live configuration's pure logic: RFC 7396 merge patch, validation, the document."""

from __future__ import annotations

import json
from typing import Any

import pytest

from zootrain.liveconfig import (
    LIVE_KEYS,
    ConfigDocument,
    ConfigInvalid,
    LiveSettings,
    _check_patch,
    env_only_reason,
    merge_patch,
    validate_setting,
)
from zootrain.settings import Settings

# RFC 7396, Appendix A: every example, as (target, patch, result).
RFC_EXAMPLES: list[tuple[Any, Any, Any]] = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    (["a", "b"], ["c", "d"], ["c", "d"]),
    ({"a": "b"}, ["c"], ["c"]),
    ({"a": "foo"}, None, None),
    ({"a": "foo"}, "bar", "bar"),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]


@pytest.mark.parametrize(("target", "patch", "result"), RFC_EXAMPLES)
def test_merge_patch_follows_rfc_7396(target: Any, patch: Any, result: Any) -> None:
    before = json.dumps(target)
    assert merge_patch(target, patch) == result
    assert json.dumps(target) == before  # the target is not modified


def test_values_are_checked_by_their_environment_variables_rules() -> None:
    assert validate_setting("worker_concurrency", "2") == 2  # as ZOOTRAIN_WORKER_CONCURRENCY=2
    assert validate_setting("paused", "true") is True
    assert validate_setting("retry_backoff", 0.5) == 0.5
    for key, bad in [
        ("worker_concurrency", 0),
        ("worker_concurrency", 65),
        ("worker_concurrency", "many"),
        ("submit_rate", -1),
        ("submit_burst", 0),
        ("task_time_limit", 0),
        ("paused", "perhaps"),
        ("max_versions", {"a": 1}),
        ("submit_rate", True),  # lax pydantic would store 1.0
        ("max_queue", False),
        ("paused", 0),
    ]:
        with pytest.raises(ConfigInvalid) as caught:
            validate_setting(key, bad)
        assert caught.value.key == key
        assert repr(key) in caught.value.detail
        assert caught.value.status == 422


def test_environment_only_settings_are_refused_with_a_reason() -> None:
    for key in ("zk_hosts", "zk_root", "zk_auth", "tokens", "artifacts", "max_shards"):
        with pytest.raises(ConfigInvalid) as caught:
            validate_setting(key, "x")
        assert caught.value.key == key
        assert "cannot change live" in caught.value.detail
        assert (env_only_reason(key) or "") in caught.value.detail
    assert "ZooKeeper" in (env_only_reason("zk_hosts") or "")
    assert "restart" in (env_only_reason("max_shards") or "")


def test_unknown_settings_are_refused_and_the_live_ones_listed() -> None:
    with pytest.raises(ConfigInvalid) as caught:
        validate_setting("colour", "blue")
    assert caught.value.key == "colour"
    assert "unknown setting" in caught.value.detail
    assert "worker_concurrency" in caught.value.detail


def test_every_live_key_is_a_setting_of_the_environment() -> None:
    for key in LIVE_KEYS:
        assert key in Settings.model_fields


@pytest.mark.parametrize(
    ("patch", "key"),
    [
        ([1], "body"),
        ({"paused": True}, "paused"),  # a setting outside "settings"
        ({"version": 3}, "version"),
        ({"settings": [1]}, "settings"),
        ({"settings": {"zk_hosts": None}}, "zk_hosts"),
        ({"settings": {"nope": None}}, "nope"),
        ({"settings": {"worker_concurrency": -3}}, "worker_concurrency"),
    ],
)
def test_bad_patches_name_what_is_wrong(patch: Any, key: str) -> None:
    with pytest.raises(ConfigInvalid) as caught:
        _check_patch(patch)
    assert caught.value.key == key


def test_null_returns_a_setting_to_the_environment() -> None:
    settings = Settings(worker_concurrency=3, paused=False)
    live = LiveSettings(settings)
    changed = live.apply(ConfigDocument({"worker_concurrency": 1, "paused": True}), 4)
    assert changed == {"worker_concurrency", "paused"}
    assert (settings.worker_concurrency, settings.paused) == (1, True)
    stored = merge_patch(live.document.settings, _check_patch({"settings": {"paused": None}}))
    live.apply(ConfigDocument(stored), 5)
    assert (settings.worker_concurrency, settings.paused) == (1, False)
    live.apply(ConfigDocument(merge_patch(stored, _check_patch({"settings": None}))), 6)
    assert settings.worker_concurrency == 3


def test_documents_round_trip_and_bad_ones_are_refused() -> None:
    document = ConfigDocument({"paused": True, "max_queue": 5}, updated_by="ops")
    assert ConfigDocument.load(document.dump()) == document
    assert ConfigDocument.load(b"") == ConfigDocument()
    for data, key in [
        (b"{not json", "settings"),
        (b"[1, 2]", "settings"),
        (b'{"settings": {"worker_concurrency": 0}}', "worker_concurrency"),
        (b'{"settings": {"zk_hosts": "elsewhere:2181"}}', "zk_hosts"),
        (b'{"settings": {}, "extra": 1}', "extra"),
        (b'{"settings": {}, "updated_at": "yesterday"}', "updated_at"),
    ]:
        with pytest.raises(ConfigInvalid) as caught:
            ConfigDocument.load(data)
        assert caught.value.key == key


def test_the_cli_reads_values_as_json_when_it_can() -> None:
    import typer

    from zootrain.cli.config import parse_assignment

    assert parse_assignment("paused=true") == ("paused", True)
    assert parse_assignment("worker_concurrency=2") == ("worker_concurrency", 2)
    assert parse_assignment("retry_backoff=0.5") == ("retry_backoff", 0.5)
    assert parse_assignment("paused=null") == ("paused", None)
    assert parse_assignment("colour=blue") == ("colour", "blue")  # the service names it
    with pytest.raises(typer.BadParameter):
        parse_assignment("paused")
