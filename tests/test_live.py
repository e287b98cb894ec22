"""/live, the stamp an open dashboard checks: it moves with a trip, only in scope, for the signed-in, in few bytes.

The trips are made at the simulator by fills (another client), and recorded by the watcher's own poll.
"""

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from ogpanel import selectors
from ogpanel.models import AuditEvent
from ogpanel.sharedcache import cache
from ogpanel.watcher import Watcher


def trip(sim, subaccount: int, group_id: str) -> None:
    """Fills over the group's limit: the exchange triggers it by itself."""
    limit = sim.group(group_id)["contracts_limit"]
    sim.fill(sim.place_order(subaccount, group_id, count=limit + 1), limit + 1)
    assert sim.group(group_id)["triggered"]


def stamp(client) -> str:
    answer = client.get("/live", headers={"HX-Request": "true", "HX-Trigger": "live"})
    assert answer.status_code == 200
    return answer.json()["stamp"]


def exchange_calls(sim) -> int:
    return sum(record.path.startswith("/trade-api/") for record in sim.requests)


@pytest.fixture
def watcher(subaccounts) -> Watcher:
    """A watcher that has taken its baseline of every subaccount."""
    watcher = Watcher(interval=5, websocket=False)
    watcher.poll_once()
    return watcher


@pytest.mark.django_db
def test_it_changes_when_the_watcher_records_a_trip_and_not_before(sim, watcher, as_viewer, settings):
    settings.OGPANEL_LIST_CACHE_SECONDS = 0
    group_id = sim.create_group(2, 5)
    watcher.poll_once()  # the new group: a change of its own
    before = stamp(as_viewer)
    assert stamp(as_viewer) == before  # nothing happened: the same stamp

    trip(sim, 2, group_id)
    assert stamp(as_viewer) == before  # the exchange changed, but nobody has seen it yet
    watcher.poll_once()

    assert AuditEvent.objects.filter(action="exchange_triggered", order_group_id=group_id).exists()
    assert stamp(as_viewer) != before


@pytest.mark.django_db
def test_it_changes_only_for_users_who_may_see_the_subaccount(sim, watcher, as_viewer, as_scoped_operator, settings):
    settings.OGPANEL_LIST_CACHE_SECONDS = 0
    elsewhere, mine = sim.create_group(2, 5), sim.create_group(1, 5)
    watcher.poll_once()
    everyone, scoped = stamp(as_viewer), stamp(as_scoped_operator)  # sam sees subaccount 1 only

    trip(sim, 2, elsewhere)
    watcher.poll_once()
    assert stamp(as_viewer) != everyone
    assert stamp(as_scoped_operator) == scoped  # a trip on subaccount 2 tells sam nothing

    trip(sim, 1, mine)
    watcher.poll_once()
    assert stamp(as_scoped_operator) != scoped


@pytest.mark.django_db
def test_it_requires_signing_in_and_tells_a_stranger_nothing(client, subaccounts):
    answer = client.get("/live")

    assert answer.status_code == 302 and answer["Location"].startswith("/accounts/login/")
    assert b"stamp" not in answer.content


@pytest.mark.django_db
def test_it_is_a_few_bytes_from_a_few_queries_and_never_asks_the_exchange(
    sim, watcher, as_viewer, django_assert_max_num_queries
):
    calls = exchange_calls(sim)
    # Signing in takes six (session, user, second factor, role, subaccounts, scope) and saving the
    # session three; the stamp itself four, none of them reading the exchange or the whole log.
    with django_assert_max_num_queries(14):
        answer = as_viewer.get("/live", headers={"HX-Request": "true", "HX-Trigger": "live"})

    assert answer.status_code == 200 and answer["Content-Type"] == "application/json"
    assert len(answer.content) < 64  # {"stamp": "<16 hex digits>"}, not the table
    assert "no-store" in answer["Cache-Control"]
    assert exchange_calls(sim) == calls


@pytest.mark.django_db
def test_a_dashboard_rendered_after_a_trip_shows_it_even_where_its_shared_listing_is_older(
    sim, subaccounts, watcher, as_viewer, settings
):
    # A panel process that does not share the watcher's cache (no Redis) still holds the listing
    # from before the trip: the trip's event is newer, so that listing is read again, not shown.
    settings.OGPANEL_LIST_CACHE_SECONDS = 60
    group_id = sim.create_group(1, 5)
    watcher.poll_subaccounts([1])
    assert f'id="group-1-{group_id}">' in as_viewer.get("/").content.decode()
    before = cache.get(selectors._cache_key(subaccounts[1]))

    trip(sim, 1, group_id)
    watcher.poll_subaccounts([1])  # as after the stream's word: a fresh read, recorded
    cache.set(selectors._cache_key(subaccounts[1]), before, timeout=60)  # the panel's own, older

    page = as_viewer.get("/", headers={"HX-Request": "true", "HX-Trigger": "groups"}).content.decode()
    assert f'id="group-1-{group_id}" class="is-triggered"' in page


@pytest.mark.django_db
def test_the_dashboard_carries_its_stamp_and_the_triggered_count_in_its_title(sim, watcher, as_viewer, settings):
    settings.OGPANEL_LIST_CACHE_SECONDS = 0
    groups = [sim.create_group(3, 5) for _ in range(2)]
    watcher.poll_once()
    for group_id in groups:
        trip(sim, 3, group_id)
    watcher.poll_once()

    page = as_viewer.get("/").content.decode()

    assert "<title>(2 triggered) Order groups · ogpanel</title>" in page
    assert f'data-stamp="{stamp(as_viewer)}" data-triggered="2"' in page
    assert 'data-live-url="/live"' in page


@pytest.mark.django_db
def test_checks_alone_do_not_keep_an_unattended_session_signed_in(settings, subaccounts, viewer, monkeypatch):
    start, idle = timezone.now(), settings.OGPANEL_SESSION_IDLE_SECONDS
    client = Client()
    assert client.post("/accounts/login/", {"username": "vera", "password": "vera-password-1"}).status_code == 302
    for seconds in range(60, idle, 60):  # nobody looks: only the page's checks ask
        monkeypatch.setattr(timezone, "now", lambda seconds=seconds: start + timedelta(seconds=seconds))
        stamp(client)
    monkeypatch.setattr(timezone, "now", lambda: start + timedelta(seconds=idle + 1))

    answer = client.get("/live", headers={"HX-Request": "true", "HX-Trigger": "live"})

    assert answer["HX-Redirect"].startswith("/accounts/login/") and b"stamp" not in answer.content
    assert "_auth_user_id" not in client.session
