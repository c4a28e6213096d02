"""The dashboard in real headless Chromium (Debian's package, driven by Playwright).

The stack asks for API tokens (testkit/auth.TOKENS): the page must prompt for one, send it
on every request and the event stream, and never put it in a URL.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect, sync_playwright

from testkit.auth import ADMIN_TOKEN, SUBMIT_TOKEN, bearer
from testkit.stack import ROOT, Stack, wait_for, wait_job
from tests.support.specs import POISON_ERROR, poison_spec

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
        # The default partition ("auto") says what it chose and why.
        expect(page.locator("#job-notes")).to_contain_text("partition auto chose replicate")
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


# -- the operations console: every page checked against the API's own answers ---------------

# A shard that fails on every attempt (past its time limit): its job fails after two
# attempts, both on the timeline, and shows in the recent failures.
POISON = poison_spec("console-poison", max_attempts=2)
# Still training when the overview is looked at (many seconds a shard); cancelled afterwards.
SLOW = {
    "model_name": "console-slow",
    "algorithm": "random_forest_classifier",
    "params": {"n_estimators": 300},
    "dataset": {"kind": "synthetic", "task": "classification", "n_samples": 200_000},
    "shards": 1,
}


def forest(trees: int) -> dict[str, Any]:
    return {
        "model_name": "console-forest",
        "algorithm": "random_forest_classifier",
        "params": {"n_estimators": trees, "max_depth": 4},
        "dataset": {"kind": "builtin", "name": "wine"},
        "shards": 3,
        "baseline": True,
    }


def submit(client: httpx.Client, spec: dict[str, Any]) -> str:
    response = client.post("/v1/jobs", json=spec)
    assert response.status_code == 202, response.text
    job_id: str = response.json()["id"]
    return job_id


def test_operations_console_shows_what_the_api_says(stack: Stack) -> None:
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is needed: `make test` installs it"
    stack.start_api()
    stack.start_worker()
    stack.start_worker()
    SCREENSHOTS.mkdir(exist_ok=True)
    client = httpx.Client(base_url=str(stack.api_url), headers=bearer(ADMIN_TOKEN), timeout=30)

    first = submit(client, forest(5))
    assert wait_job(client, first)["state"] == "succeeded"
    second = submit(client, forest(15))
    poison = submit(client, POISON)
    jobs = {i: wait_job(client, i) for i in (second, poison)}
    assert jobs[second]["state"] == "succeeded" and jobs[poison]["state"] == "failed"
    slow = submit(client, SLOW)

    def training_slow() -> bool:
        return any(
            any(k.startswith(slow) for k in w["current"]) for w in client.get("/v1/workers").json()
        )

    wait_for(training_slow, 120, "a worker to train the slow job")

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        violations: list[str] = []
        page.on(
            "console", lambda m: violations.append(m.text) if "Content Security" in m.text else None
        )
        page.goto(f"{stack.api_url}/ui/")
        page.fill("#token-input", ADMIN_TOKEN)
        page.press("#token-input", "Enter")

        # -- the overview (the default page) -------------------------------------------------
        expect(page.locator("#view-overview")).to_be_visible()
        summary = client.get("/v1/overview").json()
        for state, count in summary["jobs"].items():
            item = page.locator(f"#job-counts .count[data-state={state}] strong")
            expect(item).to_have_text(str(count))
        assert summary["jobs"] == counted_by_listing(client)
        expect(page.locator("#queue-depth")).to_have_text(str(summary["queue_depth"]))
        assert summary["queue_depth"] == 1  # the slow job

        workers = client.get("/v1/workers").json()
        rows = page.locator("#overview-workers tbody tr[data-worker]")
        expect(rows).to_have_count(len(workers))
        busy = next(w for w in workers if any(k.startswith(slow) for k in w["current"]))
        row = page.locator(f"#overview-workers tr[data-worker='{busy['id']}']")
        expect(row).to_contain_text(f"{slow} · shard 0")
        expect(row.locator(".state")).to_have_text("training")
        assert f"{slow}/0" in busy["current_since"]
        for worker in workers:
            expect(
                page.locator(f"#overview-workers tr[data-worker='{worker['id']}']")
            ).to_be_visible()

        failures = page.locator("#failures tbody tr[data-job]")
        expect(failures).to_have_count(len(summary["recent_failures"]))
        assert [f["job_id"] for f in summary["recent_failures"]] == [poison]
        expect(failures.first).to_contain_text(POISON_ERROR)

        config = client.get("/v1/config")
        if config.status_code == 404:  # this service has no live configuration
            expect(page.locator("#config-meta")).to_contain_text("not available")
            expect(page.locator("#pause-toggle")).to_be_hidden()
            expect(page.locator("#paused-banner")).to_be_hidden()
        else:
            settings = config.json()["settings"]
            expect(page.locator("#config-table tr[data-key]")).to_have_count(len(settings))
            expect(page.locator("#paused-banner")).to_be_visible(visible=bool(settings["paused"]))
            # An admin token pauses the cluster from the page, and resumes it.
            page.click("#pause-toggle")
            expect(page.locator("#paused-banner")).to_be_visible()
            assert client.get("/v1/config").json()["settings"]["paused"] is True
            page.screenshot(path=str(SCREENSHOTS / "console-overview-paused.png"), full_page=True)
            page.click("#pause-toggle")
            expect(page.locator("#paused-banner")).to_be_hidden()
            assert client.get("/v1/config").json()["settings"]["paused"] is False
        page.screenshot(path=str(SCREENSHOTS / "console-overview.png"), full_page=True)
        assert client.delete(f"/v1/jobs/{slow}").json()["state"] == "cancelled"

        # -- a job page: the timeline, the metrics, the spec ---------------------------------
        job = client.get(f"/v1/jobs/{second}").json()
        page.goto(f"{stack.api_url}/ui/#job/{second}")
        expect(page.locator("#job-state")).to_have_text("succeeded")
        attempts = [(s["index"], a) for s in job["shards"] for a in s["history"]]
        assert len(attempts) == 4  # 3 shards and the baseline, once each
        expect(page.locator("#timeline g.bar.attempt")).to_have_count(len(attempts))
        for index, attempt in attempts:
            bar = page.locator(f"#timeline g.bar.attempt[data-task='{index}']")
            expect(bar).to_have_attribute("data-worker", attempt["worker"])
            expect(bar).to_have_attribute("data-outcome", "done")
        lanes = {a["worker"] for _, a in attempts} | {m["worker"] for m in job["merges"]}
        expect(page.locator("#timeline text.lane-label")).to_have_count(len(lanes))
        expect(page.locator("#timeline g.bar.merge")).to_have_count(len(job["merges"]))
        expect(page.locator("#timeline line.publish")).to_have_count(1)
        model = job["model"]
        version = client.get(f"/v1/models/{model['name']}/versions/{model['version']}").json()
        table = page.locator("#metrics-table")
        expect(table.locator("tbody tr")).to_have_count(2 + len(version["shard_metrics"]))
        merged = table.locator("tr[data-model=merged] td[data-metric=accuracy]")
        expect(merged).to_have_text(f"{version['metrics']['accuracy']:.3f}")
        baseline = table.locator("tr[data-model=baseline] td[data-metric=accuracy]")
        expect(baseline).to_have_text(f"{version['baseline_metrics']['accuracy']:.3f}")
        for shard in version["shard_metrics"]:
            cell = table.locator(
                f"tr[data-model='shard {shard['index']}'] td[data-metric=accuracy]"
            )
            expect(cell).to_have_text(f"{shard['metrics']['accuracy']:.3f}")
        report = version.get("class_report") or {}
        if report.get("merged"):  # per-class metrics, where the service records them
            merged_rows = page.locator("#per-class-table tr[data-model=merged]")
            expect(merged_rows).to_have_count(len(report["merged"]))
            for metrics in report["merged"]:
                row = page.locator(
                    f"#per-class-table tr[data-model=merged][data-class='{metrics['label']}']"
                )
                expect(row).to_contain_text(f"{metrics['recall']:.3f}")
        else:
            expect(page.locator("#job-metrics .not-available")).to_contain_text("Per-class")
        expect(page.locator("#job-spec")).to_contain_text('"n_estimators": 15')
        page.screenshot(path=str(SCREENSHOTS / "console-job.png"), full_page=True)

        # The failed job: both attempts on the timeline, failed, with the reason.
        failed = client.get(f"/v1/jobs/{poison}").json()
        (shard,) = failed["shards"]
        assert [a["outcome"] for a in shard["history"]] == ["failed", "failed"]
        page.goto(f"{stack.api_url}/ui/#job/{poison}")
        expect(page.locator("#job-state")).to_have_text("failed")
        expect(page.locator("#timeline g.bar.attempt.failed")).to_have_count(2)
        expect(page.locator("#timeline g.bar.attempt[data-attempt='2'] title")).to_contain_text(
            POISON_ERROR
        )
        expect(page.locator("#timeline line.publish")).to_have_count(0)
        page.screenshot(path=str(SCREENSHOTS / "console-job-failed.png"), full_page=True)

        # -- the model page: versions over time, aliases, what is served, the input schema ---
        # Where the service has aliases, the champion is v1: then v1 is the version served.
        moved = client.put("/v1/models/console-forest/aliases/champion", json={"version": 1})
        assert moved.status_code in (200, 201, 404, 405), moved.text
        versions = client.get("/v1/models/console-forest/versions").json()
        listed = client.get("/v1/models").json()
        (entry,) = [m for m in listed if m["name"] == "console-forest"]
        page.goto(f"{stack.api_url}/ui/#model/console-forest")
        points = page.locator("#model-chart circle.point")
        expect(points).to_have_count(len(versions))
        assert len(versions) == 2
        for v in versions:
            point = page.locator(f"#model-chart circle.point[data-version='{v['version']}']")
            assert float(point.get_attribute("data-score") or "nan") == v["metrics"]["accuracy"]
            row = page.locator(f"#model-versions tr[data-version='{v['version']}']")
            score = row.locator("td[data-score]").get_attribute("data-score") or "nan"
            assert float(score) == v["metrics"]["accuracy"]
        aliases = entry.get("aliases")
        if aliases is None and not any("aliases" in v for v in versions):
            expect(page.locator("#model-aliases")).to_contain_text("not available")
            served = entry["latest_version"]
        else:
            aliases = aliases or {}
            assert aliases.get("champion") == 1, aliases
            expect(page.locator("#alias-list li")).to_have_count(len(aliases))
            expect(page.locator("#alias-list li[data-alias=champion]")).to_contain_text("v1")
            served = entry.get("serving_version", aliases["champion"])
            assert served == 1
        expect(page.locator("#model-serving")).to_have_attribute("data-version", str(served))
        expect(page.locator("#model-serving")).to_contain_text(f"v{served}")
        served_record = next(v for v in versions if v["version"] == served)
        if "input_schema" not in served_record:
            expect(page.locator("#model-schema")).to_contain_text("not available")
        elif served_record["input_schema"] is None:  # a built-in dataset: encoded rows only
            expect(page.locator("#model-schema")).to_contain_text("encoded feature rows")
        else:
            rows = page.locator("#schema-table tbody tr")
            expect(rows).to_have_count(len(served_record["input_schema"]))
        page.screenshot(path=str(SCREENSHOTS / "console-model.png"), full_page=True)
        browser.close()
    client.close()
    assert violations == [], violations


def counted_by_listing(client: httpx.Client) -> dict[str, int]:
    """Jobs per state as the job listing tells them, page by page."""
    counts = dict.fromkeys(("queued", "running", "merging", "succeeded", "failed", "cancelled"), 0)
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 500}
        if cursor:
            params["cursor"] = cursor
        page = client.get("/v1/jobs", params=params).json()
        for job in page["items"]:
            counts[job["state"]] += 1
        cursor = page["next_cursor"]
        if not cursor:
            return counts
