"""ZOOTRAIN_SUBMIT_GROUP_COMMIT: off by default (each submit's multi straight through the
bridge), a group of that many submits a multi above 1. The group itself is tested against a
real ZooKeeper in tests/integration/test_group_commit.py."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.deps import _group_commit
from zootrain.settings import Settings
from zootrain.zk import ZooKeeper


def test_group_commit_is_off_by_default_and_sized_by_the_setting() -> None:
    zk = ZooKeeper("127.0.0.1:1")  # never started: only handed to the group
    assert Settings().submit_group_commit == 1
    assert _group_commit(zk, Settings()) is None
    group = _group_commit(zk, Settings(submit_group_commit=16))
    assert group is not None and group.max_members == 16
    with pytest.raises(ValidationError):
        Settings(submit_group_commit=0)
