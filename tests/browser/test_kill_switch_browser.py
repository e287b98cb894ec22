"""The kill switch in Chromium: from the header to a verified end, on a desk screen and on a phone."""

import re

import pytest
from playwright.sync_api import Browser, Page, expect

from ogpanel import jobs
from tests.browser.conftest import login

pytestmark = pytest.mark.browser
PHONE = {"width": 390, "height": 844}


@pytest.fixture(autouse=True)
def _settings(settings):
    settings.OGPANEL_LIST_CACHE_SECONDS = 0
    settings.OGPANEL_REFRESH_SECONDS = 60  # nothing on the dashboard refreshes by itself during a test
    yield
    assert jobs.wait_idle(timeout=60)


def fits(page: Page) -> bool:
    """Nothing on the page is wider than the screen (no sideways scrolling)."""
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def test_the_kill_switch_goes_from_the_header_to_a_verified_end_while_the_page_watches(
    page, live_server, sim, subaccounts, operator
):
    groups = [sim.create_group(number, 10) for number in range(4) for _ in range(2)]
    lost = groups[3]
    sim.set_fault("ignore", path=f"/{lost}/trigger", method="PUT", times=1)  # the read-back must catch this one
    sim.set_fault("latency", path="/trigger", method="PUT", seconds=0.2)  # slow enough to watch it go
    login(page, live_server, operator)

    page.get_by_role("link", name="Kill switch").click()
    expect(page.get_by_test_id("kill-preview")).to_contain_text("8")
    page.evaluate("window.ogpanelNoReload = true")
    page.get_by_role("button", name="Trigger all 8 groups on 4 subaccounts").click()

    progress = page.locator("#sweep-progress")
    expect(progress).to_contain_text(re.compile(r"Sweep \d+: trigger of every group on 4 subaccounts"))
    expect(page).to_have_url(re.compile(r"/kill-switch/sweeps/\d+/$"))
    number = page.url.rstrip("/").rsplit("/", 1)[1]
    expect(page.get_by_test_id("sweep-totals")).to_contain_text("Verified at the exchange: 8 of 8", timeout=30_000)
    expect(progress).to_have_attribute("data-phase", "done")
    expect(progress).to_contain_text("Done")
    rows = page.locator("table.sweep tbody tr")
    expect(rows).to_have_count(8)
    expect(page.locator(f'tr[data-group="{lost}"]')).to_contain_text("Triggered, verified at the exchange (2 calls)")
    assert page.evaluate("window.ogpanelNoReload") is True  # all of it in place, no reload
    assert all(sim.group(group)["triggered"] for group in groups)

    page.get_by_role("textbox", name="Reason").fill("end-of-day drill")
    page.get_by_role("button", name="Add the reason").click()
    expect(page.locator("#flash")).to_contain_text(f"Reason added to sweep {number}.")
    expect(page.locator("#sweep-view")).to_contain_text("“end-of-day drill” — otto")


def test_on_a_phone_the_kill_switch_its_preview_and_its_progress_are_fully_usable(
    browser: Browser, live_server, sim, subaccounts, operator
):
    mine = [sim.create_group(1, 10) for _ in range(3)]
    other = sim.create_group(2, 10)
    context = browser.new_context(viewport=PHONE, has_touch=True)
    context.set_default_timeout(10_000)
    phone = context.new_page()
    try:
        login(phone, live_server, operator)
        header_control = phone.locator("a.kill-control")
        expect(header_control).to_be_in_viewport()

        phone.locator('a[href="/kill-switch/?subaccount=1"]').tap()  # "Kill this subaccount…" on its row
        expect(phone).to_have_url(re.compile(r"/kill-switch/\?subaccount=1$"))
        button = phone.get_by_role("button", name="Trigger all 3 groups on subaccount 1")
        button.scroll_into_view_if_needed()
        assert fits(phone)
        box = button.bounding_box()
        assert box is not None and box["width"] >= 300 and box["height"] >= 40  # a thumb-sized target
        button.tap()

        totals = phone.get_by_test_id("sweep-totals")
        expect(totals).to_contain_text("Verified at the exchange: 3 of 3", timeout=30_000)
        expect(phone.locator("#sweep-progress")).to_contain_text("Done")
        assert fits(phone)
        for group in mine:
            expect(phone.locator(f'tr[data-group="{group}"]')).to_contain_text("Triggered, verified at the exchange")
        assert sim.group(other)["triggered"] is False

        phone.get_by_role("textbox", name="Reason").fill("desk 1 runaway")
        phone.get_by_role("button", name="Add the reason").tap()
        expect(phone.locator("#sweep-view")).to_contain_text("“desk 1 runaway”")
        assert fits(phone)
    finally:
        context.close()
