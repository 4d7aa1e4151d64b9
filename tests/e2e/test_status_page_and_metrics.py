"""The live status page in a real browser (headless Chromium), and /metrics through the
official Prometheus text-format parser."""

from __future__ import annotations

import os
import shutil
import time
import urllib.request
from pathlib import Path

import anthropic
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import REPO_ROOT, set_plan

PROMPT = [{"role": "user", "content": "Say hello"}]
CHROMIUM = os.environ.get("SWITCHYARD_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


def scrape(gateway: str) -> dict:
    text = urllib.request.urlopen(gateway + "/metrics", timeout=5).read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples: dict, name: str, **labels) -> float:
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))


def test_metrics_parse_and_counters_move_with_failovers(gateway, primary, fallback):
    before = scrape(gateway)
    assert value(before, "switchyard_requests_total", route="claude-main") == 0
    set_plan(primary, [], then={"kind": "status", "status": 529})
    client = anthropic.Anthropic(base_url=gateway, api_key="k", max_retries=0, timeout=20)
    for _ in range(3):
        client.messages.create(model="claude-main", max_tokens=16, messages=PROMPT)
    after = scrape(gateway)
    assert value(after, "switchyard_requests_total", route="claude-main", backend="fallback", outcome="served") == 3
    assert value(after, "switchyard_failovers_total", route="claude-main", to="fallback") >= 1
    assert value(after, "switchyard_attempts_total", backend="primary", result="overloaded") >= 2
    assert value(after, "switchyard_backend_state", backend="primary", scope="backend") == 2, "primary should be cooling down"
    assert value(after, "switchyard_in_flight_requests") == 0
    assert value(after, "switchyard_upstream_duration_seconds_count", backend="fallback") >= 3
    client.close()


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (scripts/test installs it)")
def test_status_page_shows_the_primary_cooling_down_and_the_fallback_serving(gateway, primary, fallback):
    from playwright.sync_api import sync_playwright

    shot = REPO_ROOT / "target" / "status-page.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"],
        )
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(gateway + "/")
        page.wait_for_selector("#conn:has-text('live')", timeout=10_000)
        assert page.locator("#overall").inner_text() == "all backends healthy"

        # Drive a failover through the mocks while the page is open.
        set_plan(primary, [], then={"kind": "status", "status": 529})
        client = anthropic.Anthropic(base_url=gateway, api_key="k", max_retries=0, timeout=20)
        for _ in range(2):
            client.messages.create(model="claude-main", max_tokens=16, messages=PROMPT)
        client.close()

        primary_hop = page.locator(".route[data-route='claude-main'] .hop[data-backend='primary']")
        fallback_hop = page.locator(".route[data-route='claude-main'] .hop[data-backend='fallback']")
        primary_hop.and_(page.locator("[data-state='cooling_down']")).wait_for(timeout=10_000)
        fallback_hop.and_(page.locator(".serving")).wait_for(timeout=10_000)
        assert "cooling down" in primary_hop.inner_text()
        assert "serving" in fallback_hop.inner_text()
        row = page.locator("#backends tr[data-backend='primary']")
        assert row.get_attribute("data-state") == "cooling_down"
        assert "overloaded" in row.inner_text()
        # Tokens served per backend: the fallback's bill is on the page.
        tokens = page.locator("#backends tr[data-backend='fallback'] td[data-tokens-out]")
        assert int(tokens.get_attribute("data-tokens-out")) > 0, tokens.inner_text()
        timeline = page.locator("#timeline li[data-route='claude-main']").first.inner_text()
        assert "primary" in timeline and "fallback" in timeline
        assert "down" in page.locator("#overall").inner_text()
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    assert shot.exists() and shot.stat().st_size > 10_000


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (scripts/test installs it)")
def test_status_page_counts_a_half_open_backend_as_recovering_not_down(gateway_with, primary, fallback):
    """A backend whose cooldown ended is half-open (the next request probes it): the page calls
    it recovering, and the headline does not count it as down."""
    from playwright.sync_api import sync_playwright

    gateway = gateway_with(
        "health: { failure_threshold: { default: 1 }, cooldown: { base: 2s, max: 2s } }\n"
    )
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"],
        )
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(gateway + "/")
        page.wait_for_selector("#conn:has-text('live')", timeout=10_000)

        set_plan(primary, [], then={"kind": "status", "status": 529})
        client = anthropic.Anthropic(base_url=gateway, api_key="k", max_retries=0, timeout=20)
        client.messages.create(model="claude-main", max_tokens=16, messages=PROMPT)
        client.close()

        row = page.locator("#backends tr[data-backend='primary']")
        overall = page.locator("#overall")
        page.locator("#backends tr[data-backend='primary'][data-state='cooling_down']").wait_for(timeout=10_000)
        page.wait_for_selector("#overall[data-down='1']", timeout=5_000)
        assert overall.inner_text() == "1 backend down"

        # No traffic: when the cooldown ends the primary waits, half-open, for its probe.
        page.locator("#backends tr[data-backend='primary'][data-state='half_open']").wait_for(timeout=10_000)
        page.wait_for_selector("#overall[data-down='0'][data-recovering='1']", timeout=5_000)
        assert overall.inner_text() == "1 backend recovering"
        assert "down" not in overall.inner_text()
        assert "half_open" in overall.get_attribute("class")
        assert "recovering" in row.inner_text()
        hop = page.locator(".route[data-route='claude-main'] .hop[data-backend='primary']")
        assert "recovering" in hop.inner_text()
        browser.close()
