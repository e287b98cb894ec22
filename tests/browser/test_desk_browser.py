"""The risk desk's screen in Chromium: what is loud, what comes first, what stays put, what fits a phone.

A desk screen is 1440x900 and a phone 390x844 (tests/browser/pages.py).
"""

import re
from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import Browser, Page, expect

from ogpanel import jobs
from ogpanel.models import WatcherHeartbeat, WatcherStatus
from tests.browser.pages import DESK, PHONE, admin_pages, make_book, new_page, sign_in, viewer_pages

pytestmark = pytest.mark.browser


@pytest.fixture(autouse=True)
def _settings(settings):
    settings.OGPANEL_LIST_CACHE_SECONDS = 0
    settings.OGPANEL_REFRESH_SECONDS = 60  # nothing refreshes by itself unless a test asks
    yield
    assert jobs.wait_idle(timeout=60)


@pytest.fixture
def screen(browser: Browser):
    """Opens pages at a given size; closes them all at the end."""
    pages: list[Page] = []

    def open_page(viewport: dict = DESK) -> Page:
        pages.append(new_page(browser, viewport))
        return pages[-1]

    yield open_page
    for page in pages:
        page.context.close()


def beat(age_seconds: float, *, interval: float = 5.0) -> None:
    """The trip watch's heartbeat, as a watcher that last polled `age_seconds` ago would have left it."""
    now = datetime.now(UTC)
    WatcherHeartbeat.objects.update_or_create(
        pk=1,
        defaults={
            "host": "test",
            "interval_seconds": interval,
            "started_at": now - timedelta(hours=1),
            "beat_at": now - timedelta(seconds=age_seconds),
            "streams": {},
        },
    )


def style(page: Page, selector: str, prop: str) -> str:
    return page.eval_on_selector(selector, f"el => getComputedStyle(el).{prop}")


def row_ids(page: Page) -> list[str]:
    return page.eval_on_selector_all("table.groups tbody tr[id]", "rows => rows.map(row => row.id)")


def trip(sim, subaccount: int, limit: int = 10) -> str:
    group = sim.create_group(subaccount, limit)
    sim.fill(sim.place_order(subaccount, group, count=1), limit + 1)
    return group


# --- the trip watch down --------------------------------------------------------------------------


def test_a_trip_watch_that_is_down_is_a_banner_as_loud_as_a_trip(screen, live_server, sim, subaccounts, operator):
    trip(sim, 1)
    page = screen()
    sign_in(page, live_server.url, operator)

    banner = page.get_by_test_id("watch-banner")  # no watcher has ever run
    expect(banner).to_contain_text("Trip watch not running: trips at the exchange are not being noticed")
    expect(banner).to_contain_text("It has never polled.")
    # As loud as a trip: the triggered red as its edge, a heading's size, the page's alarm colours.
    assert style(page, "[data-testid=watch-banner]", "borderLeftColor") == style(
        page, ".state-triggered", "backgroundColor"
    )
    assert style(page, "[data-testid=watch-banner]", "borderLeftWidth") == "6px"
    assert float(style(page, "#watch-banner-title", "fontSize").removesuffix("px")) >= 15

    beat(600)  # polled ten minutes ago, every 5 s: stalled
    page.reload()
    expect(banner).to_contain_text("Trip watch stalled")
    expect(banner).to_contain_text("Its last poll was 10 min ago.")

    beat(1)
    now = datetime.now(UTC)
    WatcherStatus.objects.create(subaccount=0, last_success_at=now)
    WatcherStatus.objects.create(subaccount=2, last_success_at=now - timedelta(minutes=5))
    page.reload()
    expect(banner).to_have_count(0)  # running: no banner
    reads = page.get_by_test_id("watch-read")
    expect(reads.nth(0)).not_to_contain_text("stale")
    expect(reads.nth(2)).to_contain_text("stale: last read 5 min ago")  # an old read is an error mark
    assert reads.nth(2).locator(".status-error").first.get_attribute("aria-label") == "error"


# --- flash messages -------------------------------------------------------------------------------


def test_a_failing_action_after_a_successful_one_shows_only_the_failure(
    screen, live_server, sim, subaccounts, operator
):
    first, second = sim.create_group(1, 50), sim.create_group(2, 50)
    page = screen()
    sign_in(page, live_server.url, operator)

    page.locator(f"#group-1-{first}").get_by_role("link", name=re.compile("^Trigger…")).click()
    page.locator("#action-panel").get_by_label("Reason").fill("drill one")
    page.get_by_role("button", name="Trigger group — cancels all its orders").click()
    expect(page.locator("#flash")).to_contain_text(f"Triggered order group {first} on subaccount 1.")

    sim.set_fault("error", path=f"/{second}/trigger", method="PUT", status=500)
    page.locator(f"#group-2-{second}").get_by_role("link", name=re.compile("^Trigger…")).click()
    expect(page.locator("#flash")).to_be_empty()  # opening the next action already cleared it
    page.locator("#action-panel").get_by_label("Reason").fill("drill two")
    page.get_by_role("button", name="Trigger group — cancels all its orders").click()

    expect(page.locator("#action-panel [role=alert]")).to_contain_text("exchange")
    expect(page.locator("#flash")).to_be_empty()
    assert page.get_by_text("Triggered order group").count() == 0
    assert sim.group(second)["triggered"] is False


# --- order and density ----------------------------------------------------------------------------


def test_triggered_rows_come_first_then_by_subaccount(screen, live_server, sim, subaccounts, viewer):
    active = {number: sim.create_group(number, 100) for number in (3, 0, 2, 1)}
    tripped = {number: trip(sim, number) for number in (2, 0)}
    page = screen()
    sign_in(page, live_server.url, viewer)

    expected = [f"group-{n}-{tripped[n]}" for n in (0, 2)] + [f"group-{n}-{active[n]}" for n in (0, 1, 2, 3)]
    assert row_ids(page) == expected
    expect(page.locator("table.groups thead")).not_to_contain_text("Exchange index")
    expect(page.locator("table.groups thead")).not_to_contain_text("Actions")  # a viewer has none


def test_a_desk_screen_shows_thirty_rows_and_trigger_buttons_do_not_outshout_the_state(
    screen, live_server, sim, subaccounts, operator
):
    for number in range(4):
        for _ in range(10):
            sim.create_group(number, 100)
    trip(sim, 2)
    beat(1)  # the trip watch runs, as on a normal day (its banner would take two rows)
    page = screen(DESK)
    sign_in(page, live_server.url, operator)

    visible = page.eval_on_selector_all(
        "table.groups tbody tr", "rows => rows.filter(row => row.getBoundingClientRect().bottom <= innerHeight).length"
    )
    assert visible >= 30
    trigger = page.locator("table.groups a", has_text="Trigger…").first
    badge = page.locator("table.groups .state-triggered").first
    assert trigger.evaluate("el => getComputedStyle(el).backgroundColor") == "rgb(255, 255, 255)"  # an outline
    assert badge.evaluate("el => getComputedStyle(el).backgroundColor") == "rgb(179, 20, 27)"  # the loud red


# --- focus and scroll -----------------------------------------------------------------------------

COUNT_REFRESHES = """() => {
  window.refreshes = 0;
  document.body.addEventListener("htmx:afterSettle", e => { if (e.detail.target.id === "groups") window.refreshes++; });
}"""


def test_focus_and_scroll_stay_across_three_refreshes_while_a_confirmation_is_open(
    screen, live_server, sim, subaccounts, operator, settings
):
    settings.OGPANEL_REFRESH_SECONDS = 1
    groups = [sim.create_group(number, 100) for number in range(4) for _ in range(12)]
    page = screen(DESK)
    sign_in(page, live_server.url, operator)
    page.evaluate(COUNT_REFRESHES)

    row = page.locator(f"#group-3-{groups[-4]}")
    row.scroll_into_view_if_needed()
    page.mouse.wheel(0, 120)
    row.get_by_role("link", name=re.compile("^Trigger…")).click()
    reason = page.locator("#action-panel textarea[name=reason]")
    expect(reason).to_be_focused()
    reason.press_sequentially("half a reas")
    page.evaluate("document.activeElement.dataset.mark = 'typed here'")
    scrolled = page.evaluate("scrollY")
    assert scrolled > 0
    start = page.evaluate("window.refreshes")

    page.wait_for_function("wanted => window.refreshes >= wanted", arg=start + 3, timeout=30_000)

    assert page.evaluate("document.activeElement.dataset.mark") == "typed here"  # the same field, focused
    assert reason.input_value() == "half a reas"
    assert page.evaluate("scrollY") == scrolled
    expect(row).to_have_attribute("data-acting", "")  # still highlighted
    panel_top = page.eval_on_selector("#action-panel", "el => el.getBoundingClientRect().top")
    row_bottom = row.evaluate("el => el.getBoundingClientRect().bottom")
    assert abs(panel_top - row_bottom) <= 4  # the confirmation sits right under its row


def test_esc_closes_the_panel_and_the_focus_returns_to_the_row_acted_on(
    screen, live_server, sim, subaccounts, operator
):
    target, other = sim.create_group(1, 100), sim.create_group(2, 100)
    page = screen()
    sign_in(page, live_server.url, operator)
    row = page.locator(f"#group-1-{target}")

    row.get_by_role("link", name=re.compile("^Trigger…")).click()
    expect(page.locator("#action-panel textarea")).to_be_focused()
    expect(row).to_have_attribute("data-acting", "")
    page.keyboard.press("Escape")
    expect(page.locator("#action-panel")).to_be_empty()
    expect(row).not_to_have_attribute("data-acting", "")
    assert page.evaluate(
        "document.activeElement.closest('tr') && document.activeElement.closest('tr').id"
    ) == row.get_attribute("id")

    # After the action itself, in place: the focus comes back to the row, which now says TRIGGERED.
    row.get_by_role("link", name=re.compile("^Trigger…")).click()
    page.locator("#action-panel textarea").fill("drill")
    page.keyboard.press("Enter")  # a newline in the reason, not a submit
    page.get_by_role("button", name="Trigger group — cancels all its orders").click()
    expect(row.locator(".state")).to_have_text("TRIGGERED")
    assert page.evaluate(
        "document.activeElement.closest('tr') && document.activeElement.closest('tr').id"
    ) == row.get_attribute("id")
    assert sim.group(other)["triggered"] is False


# --- errors in DEBUG mode --------------------------------------------------------------------------


def _blank_reason(page: Page, base: str, book) -> None:
    page.goto(f"{base}/")
    page.locator(f"#group-1-{book.active}").get_by_role("link", name=re.compile("^Trigger…")).click()
    page.locator("#action-panel textarea").fill("   ")  # passes the browser's `required`; the server strips it
    page.get_by_role("button", name="Trigger group — cancels all its orders").click()
    expect(page.locator("#action-panel")).to_contain_text("Give a reason: it goes into the audit log.")


def _bad_limit(page: Page, base: str, book) -> None:
    page.goto(f"{base}/groups/1/{book.active}/")
    page.get_by_role("link", name="Change limit…").click()
    page.locator("#action-panel").get_by_label("New contracts limit").fill("1.5")
    page.locator("#action-panel").get_by_label("Reason").fill("tighten")
    page.get_by_role("button", name="Set new limit").click()
    expect(page.locator("#action-panel .errorlist, #action-panel [role=alert]").first).to_be_visible()


def _wrong_password(page: Page, base: str, book) -> None:
    page.goto(f"{base}/kill-switch/")
    reset = page.locator(
        "section", has=page.get_by_role("heading", name="Reset every triggered group on one subaccount")
    )
    reset.get_by_label("Subaccount").select_option("1")
    reset.get_by_label("Reason").fill("all clear")
    reset.get_by_label(re.compile("RESET")).fill("RESET")
    reset.get_by_label("Your password").fill("not-my-password")
    reset.get_by_role("button", name="Reset every triggered group on this subaccount").click()
    expect(page.locator("#kill-console")).to_contain_text("That password or authenticator code is not right")


def _whole_document(page: Page, base: str, book) -> None:
    """A refusal the panel's views never wrote (Django's CSRF failure page) arrives as a whole document."""
    page.goto(f"{base}/")
    page.locator(f"#group-1-{book.active}").get_by_role("link", name=re.compile("^Trigger…")).click()
    page.locator("#action-panel textarea").fill("drill")
    page.evaluate("""() => {
      document.body.setAttribute("hx-headers", '{"X-CSRFToken": "stale"}');
      document.querySelectorAll("#action-panel input[name=csrfmiddlewaretoken]").forEach(el => el.remove());
    }""")
    page.get_by_role("button", name="Trigger group — cancels all its orders").click()
    expect(page.locator("#flash [role=alert]")).to_contain_text("The panel answered HTTP 403")
    expect(page.locator("#action-panel textarea")).to_have_value("drill")  # the form is still there


@pytest.mark.parametrize(
    "fail", [_blank_reason, _bad_limit, _wrong_password, _whole_document], ids=lambda f: f.__name__.strip("_")
)
def test_a_400_on_an_htmx_form_in_debug_mode_keeps_the_page(
    fail, screen, live_server, sim, subaccounts, credential, administrator, settings
):
    settings.DEBUG = True
    settings.OGPANEL_REAUTH_SECONDS = 0  # the kill switch's reset asks for the password
    book = make_book(sim, subaccounts, credential)
    page = screen()
    sign_in(page, live_server.url, administrator)
    assert page.locator("script[src*='django-htmx']").count() == 0
    statuses: list[int] = []
    page.on(
        "response", lambda response: statuses.append(response.status) if response.request.method == "POST" else None
    )

    page.evaluate("window.ogpanelNoReload = true")
    fail(page, live_server.url, book)
    page.evaluate("window.ogpanelNoReload = window.ogpanelNoReload")  # still the same document

    assert statuses and statuses[-1] in (400, 403)
    assert page.evaluate("window.ogpanelNoReload") in (True, None)
    expect(page.locator("header.topbar")).to_be_visible()
    assert style(page, "header.topbar", "backgroundColor") == "rgb(29, 39, 51)"  # still styled: not wiped
    expect(page.locator("main h1")).to_be_visible()


# --- the phone ------------------------------------------------------------------------------------

# Every control, focused and scrolled to: does it land on the screen? (The skip link shows when focused.)
OFF_SCREEN = """() => {
  const wanted = "a[href], button, input:not([type=hidden]), select, textarea, [tabindex='0']";
  const controls = document.querySelectorAll(wanted);
  const off = [];
  for (const el of controls) {
    if (!el.getClientRects().length || getComputedStyle(el).visibility === "hidden") continue;
    if (el.closest(".visually-hidden, .sr-only")) continue;
    el.focus({ preventScroll: true });
    el.scrollIntoView({ block: "center", inline: "nearest" });
    const box = el.getBoundingClientRect();
    if (box.left < -1 || box.right > innerWidth + 1) off.push(el.outerHTML.slice(0, 120));
  }
  document.activeElement.blur();
  return off;
}"""


def check_phone(page: Page, url: str) -> None:
    page.goto(url)
    page.wait_for_load_state()
    assert page.evaluate("document.documentElement.scrollWidth <= innerWidth"), f"{url} is wider than the phone"
    menu = page.get_by_role("button", name="Menu")
    if menu.count():
        expect(page.get_by_role("navigation", name="Main")).to_be_hidden()  # folded
        menu.tap()
        expect(page.get_by_role("navigation", name="Main")).to_be_visible()
    assert page.evaluate(OFF_SCREEN) == [], url
    assert page.evaluate("document.documentElement.scrollWidth <= innerWidth"), f"{url} is wider than the phone"


def test_every_page_fits_a_phone_and_every_control_is_reachable(
    screen, live_server, sim, subaccounts, credential, administrator, viewer, settings
):
    settings.OGPANEL_REAUTH_SECONDS = 0  # the re-authentication page shows instead of going straight on
    book = make_book(sim, subaccounts, credential)
    phone = screen(PHONE)
    check_phone(phone, f"{live_server.url}/accounts/login/")
    sign_in(phone, live_server.url, administrator)
    for _, path in admin_pages(book):
        check_phone(phone, live_server.url + path)

    # An action panel opened in place, on the phone.
    phone.goto(live_server.url + "/")
    phone.locator(f"#group-1-{book.active}").get_by_role("link", name=re.compile("^Trigger…")).tap()
    expect(phone.locator("#action-panel textarea")).to_be_focused()
    assert phone.evaluate("document.documentElement.scrollWidth <= innerWidth")
    assert phone.evaluate(OFF_SCREEN) == []

    other = screen(PHONE)
    sign_in(other, live_server.url, viewer)
    for _, path in viewer_pages(book):
        check_phone(other, live_server.url + path)


# --- the tiles ------------------------------------------------------------------------------------


def test_the_subaccount_tiles_are_coloured_by_each_subaccounts_worst_state(
    screen, live_server, sim, subaccounts, operator, settings
):
    settings.OGPANEL_MAX_SUBACCOUNT = 32
    sim.create_group(0, 100)  # ok
    sim.create_group(1, 100)
    trip(sim, 1)  # triggered beats ok
    sim.set_fault("error", path="/portfolio/order_groups", method="GET", subaccount=2, status=500)  # error
    sim.create_group(3, 100)
    now = datetime.now(UTC)
    WatcherStatus.objects.create(  # the trip watch cannot read subaccount 3: an error too
        subaccount=3, last_success_at=now - timedelta(minutes=3), last_error_at=now, last_error="timed out"
    )
    page = screen()
    sign_in(page, live_server.url, operator)

    tiles = page.get_by_test_id("tiles").locator(".tile")
    expect(tiles).to_have_count(33)  # the whole book: 0..32
    states = tiles.evaluate_all("tiles => tiles.map(tile => tile.dataset.state)")
    assert states[:4] == ["ok", "triggered", "error", "error"]
    assert set(states[4:]) == {"unread"}

    colours = {
        state: tiles.nth(index).evaluate("el => getComputedStyle(el).backgroundColor")
        for state, index in (("ok", 0), ("triggered", 1), ("error", 2), ("unread", 4))
    }
    assert colours == {
        "ok": "rgb(227, 244, 230)",
        "triggered": "rgb(179, 20, 27)",
        "error": "rgb(253, 232, 232)",
        "unread": "rgb(230, 231, 234)",
    }
    assert tiles.nth(3).evaluate("el => getComputedStyle(el).backgroundColor") == colours["error"]
    marks = tiles.evaluate_all("tiles => tiles.slice(0, 5).map(tile => tile.querySelector('.tile-mark').textContent)")
    assert marks == ["✓", "!", "×", "×", "–"]  # never colour alone
    expect(tiles.nth(1)).to_have_attribute("title", re.compile(r"Subaccount 1: 1 of 2 groups triggered"))

    tiles.nth(1).click()  # a tile leads to its subaccount's rows
    expect(page).to_have_url(re.compile(r"\?subaccount=1$"))
    assert row_ids(page) and all(row.startswith("group-1-") for row in row_ids(page))
    expect(page.get_by_test_id("tiles").locator(".tile")).to_have_count(33)  # the book stays in view
    expect(page.get_by_test_id("tiles").locator(".tile[aria-current]")).to_have_text(re.compile(r"^1"))
