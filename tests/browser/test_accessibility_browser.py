"""axe-core on every page, on a desk screen and on a phone: no critical and no serious violation.

axe-core comes bundled in axe-playwright-python (a PyPI package in requirements-dev.txt), so
this runs on a fresh machine from the project's own files; nothing is fetched at run time. axe is
injected through Playwright's evaluate, which the pages' Content-Security-Policy does not govern.
"""

import re
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser, Page, expect

from ogpanel import jobs
from tests.browser.pages import DESK, PHONE, admin_pages, make_book, new_page, sign_in, viewer_pages

pytestmark = pytest.mark.browser
BLOCKING = ("critical", "serious")
AXE = Axe()


@pytest.fixture(autouse=True)
def _settings(settings):
    settings.OGPANEL_LIST_CACHE_SECONDS = 0
    settings.OGPANEL_REFRESH_SECONDS = 60
    settings.OGPANEL_REAUTH_SECONDS = 0  # the re-authentication page shows instead of going straight on
    yield
    assert jobs.wait_idle(timeout=60)


def blocking_violations(page: Page) -> list[str]:
    """What axe finds critical or serious on the page as it is now, one line per rule and element."""
    found = AXE.run(page).response["violations"]
    return [
        f"{violation['id']} ({violation['impact']}): {node['target']} {node.get('failureSummary', '')}"
        for violation in found
        if violation["impact"] in BLOCKING
        for node in violation["nodes"]
    ]


@contextmanager
def signed_in(browser: Browser, viewport: dict, base_url: str, user) -> Iterator[Page]:
    page = new_page(browser, viewport)
    try:
        sign_in(page, base_url, user)
        yield page
    finally:
        page.context.close()


@pytest.mark.parametrize("viewport", [DESK, PHONE], ids=["desk", "phone"])
def test_axe_finds_no_serious_violation_on_any_page(
    viewport, browser: Browser, live_server, sim, subaccounts, credential, administrator, operator, viewer
):
    book = make_book(sim, subaccounts, credential)
    found: dict[str, list[str]] = {}

    page = new_page(browser, viewport)
    page.goto(f"{live_server.url}/accounts/login/")
    found["login"] = blocking_violations(page)
    page.context.close()

    with signed_in(browser, viewport, live_server.url, administrator) as page:
        for name, path in admin_pages(book):
            page.goto(live_server.url + path)
            found[f"admin: {name}"] = blocking_violations(page)
        if viewport is PHONE:
            page.get_by_role("button", name="Menu").tap()  # the header's menu, open
            found["admin: menu open"] = blocking_violations(page)

    with signed_in(browser, viewport, live_server.url, operator) as page:
        page.locator(f"#group-1-{book.active}").get_by_role("link", name=re.compile("^Trigger…")).click()
        expect(page.locator("#action-panel textarea")).to_be_focused()
        found["ops: dashboard, confirmation open in place"] = blocking_violations(page)

    with signed_in(browser, viewport, live_server.url, viewer) as page:
        for name, path in viewer_pages(book):
            page.goto(live_server.url + path)
            found[f"viewer: {name}"] = blocking_violations(page)

    assert len(found) >= 25  # every page was looked at
    assert {name: lines for name, lines in found.items() if lines} == {}
