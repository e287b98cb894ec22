"""Flows a person clicks through, in Chromium: trigger from the dashboard, pause (the kill switch:
test_kill_switch_browser.py)."""

import os
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from playwright.sync_api import expect

from ogpanel.models import WatcherHeartbeat, WatcherStatus
from tests.browser.conftest import login

# The README's screenshot is refreshed only on request (OGPANEL_SCREENSHOTS=1), so a test run leaves the tree clean.
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"

pytestmark = pytest.mark.browser


@pytest.fixture(autouse=True)
def _console_settings(settings):
    settings.OGPANEL_LIST_CACHE_SECONDS = 0
    # Long enough that nothing in these tests is refreshed by the timer, unless a test asks.
    settings.OGPANEL_REFRESH_SECONDS = 60


def test_it_triggers_a_group_from_the_dashboard_without_reloading_the_page(
    page, live_server, sim, subaccounts, operator
):
    for number, limit in ((0, 500), (1, 100), (2, 250), (3, 40)):
        sim.create_group(number, limit)
    target = sim.create_group(1, 25)
    sim.place_order(1, target, count=5)
    if os.environ.get("OGPANEL_SCREENSHOTS"):
        watching(subaccounts)  # the README shows a desk on a normal day: the trip watch running
    login(page, live_server, operator)
    page.evaluate("window.ogpanelNoReload = true")  # gone if the page were reloaded

    row = page.locator(f"#group-1-{target}")
    expect(row.locator(".state")).to_have_text("ACTIVE")
    row.get_by_role("link", name=re.compile(r"^Trigger…")).click()
    panel = page.locator("#action-panel")
    expect(panel).to_contain_text(f"Trigger order group {target} on subaccount 1")
    panel.get_by_label("Reason").fill("browser drill")
    panel.get_by_role("button", name="Trigger group — cancels all its orders").click()

    expect(row.locator(".state")).to_have_text("TRIGGERED")
    expect(row).to_have_class("is-triggered")
    expect(page.locator("#flash")).to_contain_text(f"Triggered order group {target} on subaccount 1.")
    expect(panel).to_be_empty()
    expect(page.get_by_text("1 TRIGGERED")).to_be_visible()
    assert page.evaluate("window.ogpanelNoReload") is True
    assert sim.group(target)["triggered"] is True
    shot = page.screenshot(full_page=True)
    assert shot.startswith(b"\x89PNG")
    if os.environ.get("OGPANEL_SCREENSHOTS"):
        (SCREENSHOTS / "dashboard.png").write_bytes(shot)


def watching(subaccounts) -> None:
    """What a trip watch that just polled every subaccount leaves in the database."""
    now = datetime.now(UTC)
    defaults = {"host": "screenshot", "interval_seconds": 5, "started_at": now, "beat_at": now, "streams": {}}
    WatcherHeartbeat.objects.update_or_create(pk=1, defaults=defaults)
    for sub in subaccounts:
        WatcherStatus.objects.update_or_create(subaccount=sub.number, defaults={"last_success_at": now})


def test_pausing_stops_the_dashboard_refreshing_itself(page, live_server, sim, subaccounts, operator, settings):
    settings.OGPANEL_REFRESH_SECONDS = 1
    login(page, live_server, operator)
    status = page.locator("#refresh-status time")
    first = status.get_attribute("datetime")
    expect(status).not_to_have_attribute("datetime", first)  # it refreshes by itself

    page.get_by_label("Pause auto-refresh").check()
    page.wait_for_timeout(300)  # a request already in flight may still land
    paused_at = status.get_attribute("datetime")
    page.wait_for_timeout(1600)  # more than one refresh interval
    assert status.get_attribute("datetime") == paused_at

    page.get_by_label("Pause auto-refresh").uncheck()
    expect(status).not_to_have_attribute("datetime", paused_at)
