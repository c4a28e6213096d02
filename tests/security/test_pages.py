"""The pages a browser renders, hardened and offline: every dashboard response carries its
security headers, the dashboard checks the ids it is given before it asks the API anything, and
/docs renders in Chromium (Debian's) with every request off this machine blocked."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Route, expect, sync_playwright

from testkit.auth import SUBMIT_TOKEN
from testkit.stack import ROOT, Stack
from tests.integration.test_dashboard import CHROMIUM_FLAGS

pytestmark = pytest.mark.integration

DASHBOARD = ["/ui", "/ui/", "/ui/index.html", "/ui/app.js", "/ui/style.css", "/ui/no-such-file.js"]


@pytest.fixture
def api_url(stack: Stack) -> str:
    stack.start_api()
    assert stack.api_url is not None
    return stack.api_url


@pytest.fixture
def browser() -> Iterator[Browser]:
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is needed: `make test` installs it"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        yield launched
        launched.close()


def test_every_dashboard_response_carries_the_security_headers(api_url: str) -> None:
    with httpx.Client(base_url=api_url, timeout=30) as client:
        for path in DASHBOARD:
            response = client.get(path)
            headers = response.headers
            csp = headers.get("content-security-policy", "")
            assert "script-src 'self'" in csp and "style-src 'self'" in csp, (path, csp)
            assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp, (path, csp)
            assert "unsafe-inline" not in csp and "unsafe-eval" not in csp, (path, csp)
            assert headers.get("x-frame-options") == "DENY", path
            assert headers.get("x-content-type-options") == "nosniff", path
            assert headers.get("referrer-policy") == "no-referrer", path
        docs = client.get("/docs").headers
        assert docs.get("x-frame-options") == "DENY"
        assert "frame-ancestors 'none'" in docs.get("content-security-policy", "")
        # Every other answer (JSON, problems) is never sniffed into something else either.
        assert client.get("/v1/jobs").headers.get("x-content-type-options") == "nosniff"


def test_the_dashboard_runs_under_its_policy_and_refuses_a_crafted_id(
    api_url: str, browser: Browser
) -> None:
    page = browser.new_page()
    violations: list[str] = []
    page.on("console", lambda m: _collect_violation(m, violations))
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto(f"{api_url}/ui/#jobs")
    page.fill("#token-input", SUBMIT_TOKEN)
    page.press("#token-input", "Enter")
    expect(page.locator("#view-jobs")).to_be_visible()  # the scripts and styles ran

    # The jobs page's own requests (its list, then the paused banner's /v1/config) end first.
    page.wait_for_load_state("networkidle")
    # A link made to send the token elsewhere: the path would resolve to /v1/workers.
    requests.clear()
    page.goto(f"{api_url}/ui/#job/..%2F..%2Fworkers")
    expect(page.locator("#status")).to_contain_text("not a valid job id")
    expect(page.locator("#view-job")).to_be_hidden()
    assert not [url for url in requests if "/v1/" in url], requests
    assert violations == [], violations


def test_docs_render_with_the_network_off(api_url: str, browser: Browser) -> None:
    operations = sum(
        1
        for methods in json.loads((ROOT / "openapi.json").read_text())["paths"].values()
        for method in methods
        if method in ("get", "post", "put", "patch", "delete")
    )
    page = browser.new_page()
    blocked: list[str] = []
    violations: list[str] = []
    page.on("console", lambda m: _collect_violation(m, violations))

    def local_only(route: Route) -> None:
        url = route.request.url
        if url.startswith(api_url) or url.startswith("data:"):
            route.continue_()
        else:  # no internet: what a cluster without it would do to a CDN request
            blocked.append(url)
            route.abort("internetdisconnected")

    page.route("**/*", local_only)
    page.goto(f"{api_url}/docs")
    expect(page.locator(".opblock")).to_have_count(operations, timeout=60_000)
    expect(page.locator(".opblock-summary-path").first).to_contain_text("/v1/")
    assert blocked == [], blocked
    assert violations == [], violations


def _collect_violation(message: ConsoleMessage, found: list[Any]) -> None:
    if "Content Security Policy" in message.text:
        found.append(message.text)
