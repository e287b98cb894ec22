"""The desk's screen, server side: tiles, order, the trip chart and banner, and the small things of issue 16.

Browser flows are in tests/browser/test_desk_browser.py; these read the HTML the panel sends.
"""

import re
from datetime import UTC, datetime, timedelta
from urllib.parse import unquote

import pytest
import segno
from django.urls import reverse

from ogpanel import audit, dashboard
from ogpanel.models import AuditEvent, TripAlert

HTMX = {"HX-Request": "true"}
EXCHANGE = audit.Actor.system("exchange")


@pytest.fixture(autouse=True)
def _no_listing_cache(settings):
    settings.OGPANEL_LIST_CACHE_SECONDS = 0


def text(response) -> str:
    return response.content.decode()


def tiles(page: str) -> dict[int, str]:
    return {int(n): state for state, n in re.findall(r'data-state="(\w+)" data-subaccount="(\d+)"', page)}


def trip_seen(subaccount: int, group: str) -> AuditEvent:
    return audit.append(
        EXCHANGE, action="exchange_triggered", outcome=AuditEvent.Outcome.OBSERVED, subaccount=subaccount,
        order_group_id=group,
    )  # fmt: skip


# --- the dashboard ---------------------------------------------------------------------------------


def test_it_puts_triggered_groups_first_then_orders_by_subaccount(sim, subaccounts, as_viewer):
    later = sim.create_group(0, 10)
    tripped = sim.create_group(3, 10)
    sim.fill(sim.place_order(3, tripped, count=1), 11)
    page = text(as_viewer.get("/", headers=HTMX))
    assert re.findall(r'<tr id="group-(\d)-', page) == ["3", "0"]
    assert page.index(tripped) < page.index(later)


def test_a_viewer_gets_no_actions_column_and_nobody_an_exchange_index_column(sim, subaccounts, as_viewer, as_operator):
    sim.create_group(1, 10)
    for client, actions in ((as_viewer, False), (as_operator, True)):
        page = text(client.get("/"))
        assert ('<th scope="col">Actions</th>' in page) is actions
        assert "Exchange index" not in page


def test_every_subaccount_a_user_may_see_has_a_tile_coloured_by_its_worst_state(
    sim, subaccounts, as_operator, as_scoped_operator, settings
):
    settings.OGPANEL_MAX_SUBACCOUNT = 32
    sim.create_group(0, 10)
    tripped = sim.create_group(1, 10)
    sim.fill(sim.place_order(1, tripped, count=1), 11)
    sim.set_fault("error", path="/portfolio/order_groups", method="GET", subaccount=2, status=503)

    states = tiles(text(as_operator.get("/")))
    assert sorted(states) == list(range(33))
    assert [states[n] for n in range(4)] == ["ok", "triggered", "error", "ok"]
    assert {states[n] for n in range(4, 33)} == {"unread"}
    assert tiles(text(as_scoped_operator.get("/"))) == {1: "triggered"}  # only what they may see


def test_a_tile_leads_to_its_subaccounts_rows_and_the_tiles_still_show_the_whole_book(sim, subaccounts, as_viewer):
    mine, other = sim.create_group(2, 10), sim.create_group(0, 10)
    page = text(as_viewer.get("/?subaccount=2"))
    assert 'href="/?subaccount=2"' in page and 'aria-current="true"' in page
    assert mine in page and other not in page.split('<table class="groups">')[1].split("</table>")[0]
    assert len(tiles(page)) == 33


def test_the_trip_chart_counts_the_trip_watchs_trips_per_subaccount_and_hour(db):
    for subaccount, group in ((1, "a"), (1, "b"), (3, "c")):
        trip_seen(subaccount, group)
    audit.append(EXCHANGE, action="exchange_reset", outcome=AuditEvent.Outcome.OBSERVED, subaccount=2)
    chart = dashboard.trip_chart([1, 2, 3], now=datetime.now(UTC) + timedelta(hours=5))

    assert [(line.subaccount, line.total) for line in chart.lines] == [(1, 2), (3, 1)]  # resets are not trips
    hours = [cell.count for cell in chart.lines[0].cells]
    assert sum(hours) == 2 and hours.index(2) == 24 - 6  # five hours ago, in the hour cell it fell in
    assert chart.lines[0].cells[18].level == 4 and chart.lines[1].cells[18].level == 2
    assert "action=exchange_triggered" in chart.lines[0].url and "subaccount=1" in chart.lines[0].url
    assert dashboard.trip_chart([2]).lines == []  # nobody sees other subaccounts' trips
    assert dashboard.trip_chart([1], now=datetime.now(UTC) + timedelta(hours=25)).lines == []  # older than 24 h


def test_the_dashboard_draws_trips_as_inline_svg_linking_to_their_events(sim, subaccounts, as_viewer):
    trip_seen(2, "gone")
    page = text(as_viewer.get("/"))
    svg = page.split('<svg viewBox="', 1)[1].split("</svg>", 1)[0]
    link = re.search(r'<a href="([^"]+)" aria-label="Subaccount 2: 1 trip in the last 24 h', svg).group(1)
    assert link.startswith("/audit/?action=exchange_triggered&amp;subaccount=2")
    assert "<script" not in svg and "level-4" in svg


def test_a_recent_trip_of_a_group_no_longer_at_the_exchange_is_listed_without_a_link(sim, subaccounts, as_viewer):
    here = sim.create_group(1, 10)
    for group in (here, "0e5c26e2-0000-4000-8000-00000000dead"):
        event = trip_seen(1, group)
        TripAlert.objects.create(event=event, subaccount=1, order_group_id=group, observed_at=event.at)
    page = text(as_viewer.get("/"))
    banner = page.split('data-testid="trip-banner"', 1)[1].split("</section>", 1)[0]
    assert f'href="/groups/1/{here}/"' in banner
    assert "/groups/1/0e5c26e2-0000-4000-8000-00000000dead/" not in banner
    assert "no longer at the exchange" in banner


# --- small things (item 8) ------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_login_page_answers_head_with_200(client):
    response = client.head(reverse("login"))
    assert response.status_code == 200 and response.content == b""


def test_a_wrong_kill_switch_password_says_so(sim, subaccounts, as_operator, settings):
    settings.OGPANEL_REAUTH_SECONDS = 0
    reset = {"operation": "reset_one", "subaccount": "1", "reason": "all clear", "confirm": "RESET"}

    wrong = text(as_operator.post("/kill-switch/", {**reset, "reauth_password": "nope"}, headers=HTMX))
    assert "That password or authenticator code is not right" in wrong
    missing = text(as_operator.post("/kill-switch/", reset, headers=HTMX))
    assert "Confirm it's you" in missing and "not right" not in missing


def test_two_factor_enrolment_shows_a_qr_code_of_the_setup_address(as_operator):
    page = text(as_operator.get(reverse("otp_setup")))
    address = re.search(r'<dt>Setup address</dt><dd><code class="mono">([^<]+)</code>', page).group(1)
    image = re.search(r'<img class="qr" src="(data:image/svg\+xml[^"]+)"', page).group(1)
    assert unquote(image).split(",", 1)[1].startswith("<svg")
    expected = segno.make(address.replace("&amp;", "&"), error="m")
    assert image == expected.svg_data_uri(scale=4, border=4, dark="#000", light="#fff")


def test_the_reauth_page_says_what_it_is_for(as_operator, settings):
    settings.OGPANEL_REAUTH_SECONDS = 0
    assert "To run the kill switch" in text(as_operator.get(reverse("reauth") + "?next=/kill-switch/"))
    assert "which credential a subaccount uses" in text(as_operator.get(reverse("reauth") + "?next=/subaccounts/"))


def test_error_and_confirmation_pages_have_a_heading(sim, subaccounts, as_operator):
    group = sim.create_group(1, 10)
    assert "<h1>Not found</h1>" in text(as_operator.get("/groups/1/not-a-group!/"))
    assert "<h1>Trigger order group</h1>" in text(as_operator.get(f"/groups/1/{group}/trigger/"))


def test_unmapping_a_subaccount_asks_first(subaccounts, as_admin):
    page = text(as_admin.get(reverse("subaccounts")))
    assert re.search(r'value="unassign" hx-confirm="Unmap subaccount 1\?', page)


def test_the_django_admin_link_is_offered_only_to_those_it_lets_in(as_admin, administrator):
    assert 'href="/admin/"' not in text(as_admin.get("/"))
    administrator.is_staff = administrator.is_superuser = True
    administrator.save()
    assert 'href="/admin/"' in text(as_admin.get("/"))
    assert as_admin.get("/admin/").status_code == 200
