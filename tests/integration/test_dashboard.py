"""The dashboard in real headless Chromium (Debian's package, driven by Playwright).

The stack asks for API tokens (testkit/auth.TOKENS): the page must prompt for one, send it
on every request and the event stream, and never put it in a URL.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect, sync_playwright

from testkit.auth import ADMIN_TOKEN, SUBMIT_TOKEN, bearer
from testkit.stack import ROOT, Stack, wait_for

pytestmark = pytest.mark.integration

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = ROOT / "test-artifacts"


def test_submit_through_the_form_and_watch_shards_finish(stack: Stack, tmp_path: Path) -> None:
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is needed: `make test` installs it"
    stack.start_api()
    stack.start_worker()
    stack.start_worker()
    SCREENSHOTS.mkdir(exist_ok=True)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        urls: list[str] = []
        page.on("request", lambda request: urls.append(request.url))

        # Without a token: a prompt to enter one, not a half-loaded page.
        page.goto(f"{stack.api_url}/ui/#jobs")
        expect(page.locator("#auth-prompt")).to_be_visible()
        expect(page.locator("#auth-prompt h2")).to_have_text("Enter an API token")
        expect(page.locator("#view-jobs")).to_be_hidden()
        expect(page.locator("#token-input")).to_be_focused()
        page.screenshot(path=str(SCREENSHOTS / "dashboard-token.png"))

        # A wrong token is refused, said so and not kept.
        page.fill("#token-input", "zt_not-a-token")
        page.press("#token-input", "Enter")
        expect(page.locator("#auth-reason")).to_contain_text("refused")
        assert page.evaluate("localStorage.getItem('zootrain.token')") is None

        # A real one (read and submit scopes) lets every view in, and is kept for the next visit.
        page.fill("#token-input", SUBMIT_TOKEN)
        page.click("#token-form button[type=submit]")
        expect(page.locator("#auth-prompt")).to_be_hidden()
        expect(page.locator("#view-jobs")).to_be_visible()
        expect(page.locator("#sign-out")).to_be_visible()
        assert page.evaluate("localStorage.getItem('zootrain.token')") == SUBMIT_TOKEN

        page.goto(f"{stack.api_url}/ui/#submit")
        page.fill("input[name=model_name]", "dash-forest")
        page.select_option("select[name=algorithm]", "random_forest_classifier")
        page.select_option("select[name=dataset]", "wine")
        page.fill("input[name=shards]", "3")
        page.fill("input[name=params]", '{"n_estimators": 10}')
        page.click("form#submit-form button[type=submit]")

        # The job page follows the event stream: every shard bar turns done, the job succeeds.
        expect(page.locator("#job-state")).to_have_text("succeeded", timeout=120_000)
        expect(page.locator(".shard[data-state=done]")).to_have_count(3, timeout=30_000)
        assert "dash-forest v1" in page.locator("#job-summary").inner_text()
        page.screenshot(path=str(SCREENSHOTS / "dashboard-job.png"), full_page=True)

        page.goto(f"{stack.api_url}/ui/#models")
        expect(page.locator("#models h3")).to_contain_text("dash-forest")
        expect(page.locator("#models svg.chart rect")).to_have_count(4)  # 3 shards + merged
        page.screenshot(path=str(SCREENSHOTS / "dashboard-models.png"), full_page=True)

        page.goto(f"{stack.api_url}/ui/#workers")
        expect(page.locator("#workers-table tbody tr")).to_have_count(2)
        expect(page.locator("#paused-banner")).to_be_hidden()

        # Paused live (PATCH /v1/config, admin): every page shows the banner, workers say so.
        paused = httpx.patch(
            f"{stack.api_url}/v1/config",
            json={"settings": {"paused": True}},
            headers={**bearer(ADMIN_TOKEN), "Content-Type": "application/merge-patch+json"},
        )
        assert paused.status_code == 200, paused.text

        def workers_paused() -> bool:
            records = httpx.get(f"{stack.api_url}/v1/workers", headers=bearer(ADMIN_TOKEN)).json()
            return all(r["state"] == "paused" for r in records)

        wait_for(workers_paused, 30, "the workers to apply paused")
        page.reload()
        expect(page.locator("#paused-banner")).to_be_visible()
        expect(page.locator("#workers-table tbody tr").first).to_contain_text("paused")
        page.screenshot(path=str(SCREENSHOTS / "dashboard-paused.png"), full_page=True)
        resumed = httpx.patch(
            f"{stack.api_url}/v1/config",
            json={"settings": {"paused": None}},
            headers={**bearer(ADMIN_TOKEN), "Content-Type": "application/merge-patch+json"},
        )
        assert resumed.status_code == 200, resumed.text

        page.goto(f"{stack.api_url}/ui/#jobs")
        page.select_option("#state-filter", "succeeded")
        expect(page.locator("#jobs-table tbody tr")).to_have_count(1)

        # Signing out forgets the token and brings the prompt back.
        page.click("#sign-out")
        expect(page.locator("#auth-prompt")).to_be_visible()
        expect(page.locator("#view-jobs")).to_be_hidden()
        assert page.evaluate("localStorage.getItem('zootrain.token')") is None
        page.reload()
        expect(page.locator("#auth-prompt")).to_be_visible()
        browser.close()

    assert any("/events" in url for url in urls), urls  # the job page followed the stream
    assert not [url for url in urls if SUBMIT_TOKEN in url or "zt_not-a-token" in url]
