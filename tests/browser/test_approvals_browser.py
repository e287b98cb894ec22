"""Four eyes in Chromium: one operator asks for a reset, a second approves it, and it runs."""

import re

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import login
from tests.policy_fixtures import *  # noqa: F403  (fixtures: second_operator)
from tests.policy_fixtures import set_policy

pytestmark = pytest.mark.browser


@pytest.fixture(autouse=True)
def _console_settings(settings):
    settings.OGPANEL_LIST_CACHE_SECONDS = 0
    settings.OGPANEL_REFRESH_SECONDS = 60


def test_a_reset_is_requested_by_one_operator_approved_by_another_and_executed(
    browser, page, live_server, sim, subaccounts, operator, second_operator
):
    set_policy()  # the suggested default policy: a reset needs a second person
    group = sim.create_group(1, 1)
    sim.fill(sim.place_order(1, group, count=2), 2)

    # otto asks: the confirmation says a second person must approve, and who may.
    login(page, live_server, operator)
    row = page.locator(f"#group-1-{group}")
    expect(row.locator(".state")).to_have_text("TRIGGERED")
    row.get_by_role("link", name=re.compile(r"^Reset…")).click()
    panel = page.locator("#action-panel")
    expect(panel.locator(".four-eyes")).to_contain_text("needs a second person")
    expect(panel.locator(".four-eyes")).to_contain_text("olga may approve")
    panel.get_by_label("Reason").fill("fills reconciled, reopen")
    panel.get_by_role("button", name="Reset group — accepts new orders again").click()

    page.wait_for_url(re.compile(r"/requests/\d+/$"))
    request_url = page.url
    expect(page.locator(".request-status")).to_have_text("Pending")
    expect(page.locator("#flash")).to_contain_text("Filed request")
    expect(page.get_by_text("you cannot approve your own request")).to_be_visible()
    expect(page.get_by_role("button", name="Approve and run it")).to_have_count(0)
    assert sim.group(group)["triggered"] is True

    # olga approves from the Requests page.
    other = browser.new_context(viewport={"width": 1280, "height": 900})
    other.set_default_timeout(10_000)
    second = other.new_page()
    login(second, live_server, second_operator)
    second.get_by_role("link", name="Requests", exact=True).click()
    pending = second.locator("table.requests").first
    expect(pending).to_contain_text(f"Reset order group {group} on subaccount 1")
    expect(pending).to_contain_text("you may decide")
    pending.get_by_role("link", name=f"Reset order group {group} on subaccount 1").click()
    second.get_by_label("Note (optional)").fill("checked the fills")
    second.get_by_role("button", name="Approve and run it").click()

    expect(second.locator(".request-status")).to_have_text("Approved and executed")
    expect(second.locator(".request-result")).to_have_text(f"Reset order group {group} on subaccount 1.")
    expect(second.locator("#flash")).to_contain_text("Approved request")
    assert sim.group(group)["triggered"] is False
    other.close()

    # otto sees it done, with both names.
    page.goto(request_url)
    expect(page.locator(".request-status")).to_have_text("Approved and executed")
    expect(page.locator("dl.facts")).to_contain_text("olga")
    expect(page.locator("dl.facts")).to_contain_text("otto")
    page.goto(f"{live_server.url}/")
    expect(page.locator(f"#group-1-{group} .state")).to_have_text("ACTIVE")
