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
    expect(page.locator("#auth-prompt")).to_be_visible()  # the scripts and styles ran
    # The jobs page's own requests end first: its list, then the paused banner's /v1/config,
    # the last a route asks for. (A "networkidle" wait does not do this: that load state was
    # reached before the token was entered, and waiting for it again returns at once.)
    with page.expect_response(lambda response: "/v1/config" in response.url):
        page.fill("#token-input", SUBMIT_TOKEN)
        page.press("#token-input", "Enter")
    expect(page.locator("#view-jobs")).to_be_visible()
    # A link made to send the token elsewhere: the path would resolve to /v1/workers.
    requests.clear()
    page.goto(f"{api_url}/ui/#job/..%2F..%2Fworkers")
    expect(page.locator("#status")).to_contain_text("not a valid job id")
    expect(page.locator("#view-job")).to_be_hidden()
    assert not [url for url in requests if "/v1/" in url], requests
    assert violations == [], violations


def test_a_late_refusal_of_a_tokenless_request_keeps_the_token_just_entered(
    api_url: str, browser: Browser
) -> None:
    """The page's first request goes out before the user has a token in; its 401 may come back
    after the token is entered. That refusal is of no token, not of the new one: the new one is
    kept and the views stay shown."""
    page = browser.new_page()
    held: list[Route] = []

    def hold_tokenless(route: Route) -> None:
        if "authorization" in route.request.headers:
            route.continue_()
        else:
            held.append(route)

    page.route("**/v1/jobs*", hold_tokenless)
    with page.expect_request("**/v1/jobs*"):
        page.goto(f"{api_url}/ui/#jobs")
    with page.expect_response(lambda response: "/v1/config" in response.url):
        page.fill("#token-input", SUBMIT_TOKEN)
        page.press("#token-input", "Enter")
    expect(page.locator("#view-jobs")).to_be_visible()
    assert len(held) == 1, [route.request.url for route in held]

    with page.expect_response(lambda response: response.status == 401):
        held[0].continue_()
    expect(page.locator("#signed-in")).to_be_visible()
    expect(page.locator("#view-jobs")).to_be_visible()
    expect(page.locator("#auth-prompt")).to_be_hidden()
    assert page.evaluate("() => Object.values(localStorage)") == [SUBMIT_TOKEN]


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
