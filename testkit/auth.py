"""Fixed API tokens for the tests (test-only secrets; the services only ever see their hashes)."""

from __future__ import annotations

from zootrain.auth import config_entry

ADMIN_TOKEN = "zt_test-admin-0000000000000000000000000000000"
SUBMIT_TOKEN = "zt_test-submit-000000000000000000000000000000"
OTHER_SUBMIT_TOKEN = "zt_test-other-0000000000000000000000000000000"
READ_TOKEN = "zt_test-read-00000000000000000000000000000000"

TOKENS = "\n".join(
    [
        config_entry("test-admin", ADMIN_TOKEN, ["admin"]),
        config_entry("test-submit", SUBMIT_TOKEN, ["read", "submit"]),
        config_entry("test-other", OTHER_SUBMIT_TOKEN, ["read", "submit"]),
        config_entry("test-read", READ_TOKEN, ["read"]),
    ]
)


def bearer(token: str = ADMIN_TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


AUTH = bearer(ADMIN_TOKEN)
