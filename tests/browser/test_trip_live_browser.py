"""A trip made at the exchange reaches an open dashboard by itself: its row turns red, the tab title counts it.

The watcher runs as `manage.py watch_order_groups` runs it (its loop in a thread here), with its
stream connected and an hour between polls: only the stream can bring the trip in. The trip is a
fill over the group's limit at the simulator, never an action through the panel, and the page's
own slower refresh is an hour too: what shows it is the change stamp the page checks.
"""

import threading
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from ogpanel import jobs
from ogpanel.watcher import Watcher
from tests.browser.pages import DESK, new_page, sign_in
from tests.panel_process import wait_for

pytestmark = pytest.mark.browser

# Stands in for the browser's Notification: records what would be shown and whether permission
# was asked (headless Chromium answers "denied" without asking anyone).
FAKE_NOTIFICATION = """
window.__notifications = [];
window.__permissionAsked = 0;
class FakeNotification {
  constructor(title, options) { window.__notifications.push({ title: title, body: (options || {}).body || "" }); }
}
FakeNotification.permission = "default";
FakeNotification.requestPermission = function () {
  window.__permissionAsked += 1;
  FakeNotification.permission = "granted";
  return Promise.resolve("granted");
};
window.Notification = FakeNotification;
"""


@pytest.fixture(autouse=True)
def _settings(settings):
    settings.OGPANEL_REFRESH_SECONDS = 3600  # the fallback refresh never comes during a test
    settings.OGPANEL_LIVE_SECONDS = 0.5
    yield
    assert jobs.wait_idle(timeout=60)


@pytest.fixture
def streaming_watcher(subaccounts) -> Iterator[Watcher]:
    """The watcher's own loop with its stream connected and its first poll done; an hour to the next poll."""
    watcher = Watcher(interval=3600, websocket=True)
    stop = threading.Event()
    thread = threading.Thread(target=watcher.run, args=(stop,), daemon=True)
    thread.start()

    def connected() -> bool:
        states = watcher.stream_states()
        return bool(states) and all(state["state"] == "connected" for state in states.values())

    wait_for(connected, "the stream")
    yield watcher
    stop.set()
    thread.join(timeout=30)
    assert not thread.is_alive()


@pytest.fixture
def desk(browser: Browser) -> Iterator[Page]:
    page = new_page(browser, DESK)
    page.add_init_script(FAKE_NOTIFICATION)
    yield page
    page.context.close()


def trip(sim, subaccount: int, group_id: str) -> None:
    """Another client's fill over the group's limit: the exchange triggers the group by itself."""
    limit = sim.group(group_id)["contracts_limit"]
    sim.fill(sim.place_order(subaccount, group_id, count=limit + 1), limit + 1)


def test_a_trip_at_the_exchange_turns_its_row_red_and_counts_in_the_tab_title_without_a_reload(
    desk, live_server, sim, subaccounts, viewer, streaming_watcher
):
    group_id = sim.create_group(2, 5)
    streaming_watcher.notice(subaccounts[2].credential_id)  # as a stream update would: read it now
    sign_in(desk, live_server.url, viewer)
    row = desk.locator(f"#group-2-{group_id}")
    expect(row).to_be_visible()
    expect(row).not_to_have_class("is-triggered")
    expect(desk).to_have_title("Order groups · ogpanel")
    desk.evaluate("window.__sameDocument = true")  # gone if the page reloads

    trip(sim, 2, group_id)

    expect(row).to_have_class("is-triggered")
    expect(row.locator(".state")).to_have_text("TRIGGERED")
    expect(desk).to_have_title("(1 triggered) Order groups · ogpanel")
    expect(desk.get_by_test_id("trip-banner")).to_contain_text(group_id)
    assert desk.evaluate("window.__sameDocument") is True


def test_a_new_trip_raises_a_notification_once_asked_for_and_permission_is_never_asked_on_load(
    desk, live_server, sim, subaccounts, viewer, streaming_watcher
):
    first, second = sim.create_group(1, 5), sim.create_group(1, 5)
    streaming_watcher.notice(subaccounts[1].credential_id)
    sign_in(desk, live_server.url, viewer)
    expect(desk.locator(f"#group-1-{second}")).to_be_visible()
    button = desk.get_by_role("button", name="Notify me of trips")
    expect(button).to_be_visible()

    trip(sim, 1, first)  # before anyone asked for notifications: none
    expect(desk.locator(f"#group-1-{first}")).to_have_class("is-triggered")
    assert desk.evaluate("window.__permissionAsked") == 0
    assert desk.evaluate("window.__notifications") == []

    button.click()
    expect(desk.get_by_role("button", name="Trip notifications on")).to_be_disabled()
    trip(sim, 1, second)

    expect(desk.locator(f"#group-1-{second}")).to_have_class("is-triggered")
    expect(desk).to_have_title("(2 triggered) Order groups · ogpanel")
    notes = desk.evaluate("window.__notifications")
    assert [note["title"] for note in notes] == ["Order group tripped"]
    assert second in notes[0]["body"] and "subaccount 1" in notes[0]["body"]
    assert desk.evaluate("window.__permissionAsked") == 1


def test_a_paused_table_waits_for_the_person_and_then_shows_the_trip(
    desk, browser, live_server, sim, subaccounts, viewer, streaming_watcher
):
    group_id = sim.create_group(3, 5)
    streaming_watcher.notice(subaccounts[3].credential_id)
    sign_in(desk, live_server.url, viewer)
    row = desk.locator(f"#group-3-{group_id}")
    expect(row).to_be_visible()
    desk.get_by_label("Pause auto-refresh").check()
    fetches: list[str] = []  # the table's own requests (the stamp is still checked while paused)
    desk.on(
        "request",
        lambda request: fetches.append(request.url) if request.headers.get("hx-trigger") == "groups" else None,
    )
    other = new_page(browser, DESK)  # a second screen, not paused
    sign_in(other, live_server.url, viewer)

    trip(sim, 3, group_id)

    expect(other.locator(f"#group-3-{group_id}")).to_have_class("is-triggered")
    other.context.close()
    expect(row).not_to_have_class("is-triggered")
    assert not fetches
    desk.get_by_label("Pause auto-refresh").uncheck()
    expect(row).to_have_class("is-triggered")
