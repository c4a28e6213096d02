"""The dashboard in real headless Chromium (Debian's package, driven by Playwright)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

from tests.support.stack import ROOT, Stack

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

        page.goto(f"{stack.api_url}/ui/#jobs")
        page.select_option("#state-filter", "succeeded")
        expect(page.locator("#jobs-table tbody tr")).to_have_count(1)
        browser.close()
