"""Browser fixtures: Debian's Chromium driven by Playwright (sync API) against pytest-django's live server.

Playwright's own browser download is never used. The sync API runs an asyncio loop in the test's
thread, which makes Django think the ORM is being called from async code; it is not.
"""

import os
from pathlib import Path

os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="session")
def browser() -> Browser:
    if not CHROMIUM.exists():
        # On a developer's machine the browser tests may be skipped; CI must run them.
        (pytest.fail if os.environ.get("CI") else pytest.skip)(
            f"{CHROMIUM} is not installed (apt-get install chromium)"
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser) -> Page:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(10_000)
    page = context.new_page()
    yield page
    context.close()


def login(page: Page, live_server, user) -> None:
    """Sign in through the real login form (personas' passwords are `<username>-password-1`)."""
    page.goto(f"{live_server.url}/accounts/login/")
    page.get_by_label("Username").fill(user.get_username())
    page.get_by_label("Password").fill(f"{user.get_username()}-password-1")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{live_server.url}/")
