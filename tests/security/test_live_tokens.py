"""Tokens managed live: `zootrain token add|revoke|list` edit the token list in ZooKeeper, and
every job-service process follows it by a watch, with no restart. Two real job services."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import NoAuthError

from testkit.auth import READ_TOKEN, bearer
from testkit.stack import Stack, wait_for
from tests.security.test_zookeeper_acl import CREDENTIALS, zootrain_cli

pytestmark = pytest.mark.integration


def statuses(urls: list[str], token: str) -> list[int]:
    return [
        httpx.get(f"{url}/v1/jobs", headers=bearer(token), timeout=10).status_code for url in urls
    ]


def test_tokens_added_and_revoked_live_on_every_job_service(
    stack: Stack, kazoo: KazooClient, zk_root: str
) -> None:
    stack.settings["ZOOTRAIN_ZK_AUTH"] = CREDENTIALS
    urls = []
    for _ in range(2):
        stack.start_api()
        assert stack.api_url is not None
        urls.append(stack.api_url)
    admin = {**stack.settings}

    added = zootrain_cli(admin, "token", "add", "ci", "--scopes", "read", "--json")
    assert added.returncode == 0, added.stderr
    made = json.loads(added.stdout)
    token = made["token"]
    assert made["entry"].startswith("ci:") and token not in made["entry"]
    wait_for(lambda: statuses(urls, token) == [200, 200], 30, "both services to accept it")

    revoked = zootrain_cli(admin, "token", "revoke", "ci")
    assert revoked.returncode == 0, revoked.stderr
    refused_from = time.monotonic()
    # A watch, not a poll: both refuse within milliseconds. The wait is slack for a loaded box.
    wait_for(lambda: statuses(urls, token) == [401, 401], 10, "both services to refuse it")
    print(f"revoked token refused by both services {time.monotonic() - refused_from:.3f}s after")

    # A token from ZOOTRAIN_TOKENS is revoked by its name, with no restart either.
    assert statuses(urls, READ_TOKEN) == [200, 200]
    assert zootrain_cli(admin, "token", "revoke", "test-read").returncode == 0
    wait_for(lambda: statuses(urls, READ_TOKEN) == [401, 401], 10, "the configured token to go")

    # An entry past its expiry is refused, saying so.
    old = zootrain_cli(admin, "token", "add", "old", "--expires", "2001-01-01", "--json")
    assert old.returncode == 0, old.stderr
    expired = json.loads(old.stdout)["token"]

    def refused_as_expired() -> bool:
        answer = httpx.get(f"{urls[0]}/v1/jobs", headers=bearer(expired), timeout=10)
        return answer.status_code == 401 and "expired" in answer.json()["detail"]

    wait_for(refused_as_expired, 10, "the expired token's refusal")

    listed = zootrain_cli(admin, "token", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    report = json.loads(listed.stdout)
    assert [t["name"] for t in report["tokens"]] == ["old"] and report["tokens"][0]["expired"]
    assert report["revoked"] == ["ci", "test-read"]
    assert token not in listed.stdout and expired not in listed.stdout  # hashes only

    # The list itself is under the ACL: hashes and names are the credentials' business only.
    with pytest.raises(NoAuthError):
        kazoo.get(f"{zk_root}/tokens")
