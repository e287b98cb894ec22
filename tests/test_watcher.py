"""The trip watch against the simulator over HTTP and WebSocket, with a real database and a local webhook receiver.

Polls are driven one at a time (`poll_once`) where a test is about what one poll records; the
WebSocket and restart tests run the watcher's own loop in a thread. While that thread runs, the
test waits only on things outside the database (the webhook receiver, the stream state, the
simulator's request log) and reads the database after stopping it: SQLite's shared in-memory
test database does not take concurrent readers kindly.
"""

import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from django.core import mail
from django.core.management import call_command
from django.db import OperationalError

from ogpanel import alerts, audit, services
from ogpanel.audit import Actor
from ogpanel.kalshi import KalshiError
from ogpanel.models import AuditEvent, ObservedGroup, Subaccount, TripAlert, WatcherHeartbeat, WatcherStatus
from ogpanel.watch_health import stale_after, watch_health
from ogpanel.watcher import Watcher
from tests.panel_fixtures import make_credential, make_user
from tests.panel_process import wait_for

ROOT = Path(__file__).resolve().parent.parent
EXCHANGE_ACTIONS = (
    "exchange_created",
    "exchange_triggered",
    "exchange_reset",
    "exchange_deleted",
    "exchange_limit_updated",
)


# --- helpers ---------------------------------------------------------------------------------------


class Receiver:
    """A webhook endpoint on a loopback port that records every POST and answers with the next planned status."""

    def __init__(self) -> None:
        self.posts: list[tuple[int, dict]] = []  # (status answered, body)
        self.planned: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                status = receiver.planned.pop(0) if receiver.planned else 200
                receiver.posts.append((status, body))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/trips"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    @property
    def delivered(self) -> list[dict]:
        return [body for status, body in self.posts if status == 200]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver(settings) -> Iterator[Receiver]:
    receiver = Receiver()
    settings.OGPANEL_ALERT_WEBHOOK_URL = receiver.url
    yield receiver
    receiver.stop()


@pytest.fixture(autouse=True)
def _watch_settings(settings):
    # Each poll reads the exchange itself unless a test is about the shared listings.
    settings.OGPANEL_LIST_CACHE_SECONDS = 0
    settings.OGPANEL_ALERT_WEBHOOK_URL = ""
    settings.OGPANEL_ALERT_EMAILS = []
    settings.OGPANEL_ALERT_WEBHOOK_FORMAT = "json"
    settings.OGPANEL_PUBLIC_URL = "https://panel.example.com"


@pytest.fixture
def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Running:
    """The watcher's own loop in a thread, as `manage.py watch_order_groups` runs it."""

    def __init__(self, watcher: Watcher) -> None:
        self.watcher = watcher
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=watcher.run, args=(self.stop_event,), daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive()


@pytest.fixture
def running() -> Iterator[Callable[[Watcher], Running]]:
    started: list[Running] = []

    def start(watcher: Watcher) -> Running:
        started.append(Running(watcher))
        return started[-1]

    yield start
    for run in started:
        run.stop()


def exchange_events(action: str | None = None):
    events = AuditEvent.objects.filter(actor_username="exchange").order_by("seq")
    return events.filter(action=action) if action else events.filter(action__in=EXCHANGE_ACTIONS)


def trip(sim, subaccount: int, group_id: str) -> None:
    """Fills over the group's limit: the exchange triggers it by itself."""
    limit = sim.group(group_id)["contracts_limit"]
    sim.fill(sim.place_order(subaccount, group_id, count=limit + 1), limit + 1)
    assert sim.group(group_id)["triggered"]


def list_calls(sim) -> int:
    """List calls the simulator has answered (a request is logged on arrival, its status when answered)."""
    return sum(
        record.method == "GET" and record.path.endswith("/order_groups") and record.status is not None
        for record in sim.requests
    )


def stream_connected(watcher: Watcher) -> bool:
    states = watcher.stream_states()
    return bool(states) and all(state["state"] == "connected" for state in states.values())


# --- a trip, by polling ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_fill_over_the_limit_gives_an_audit_event_one_webhook_and_the_banner_after_one_poll(
    sim,
    subaccounts,
    receiver,
    as_viewer,
):
    group_id = sim.create_group(2, 5)
    watcher = Watcher(interval=5, websocket=False)
    watcher.poll_once()  # the baseline
    trip(sim, 2, group_id)

    watcher.poll_once()  # one interval
    alerts.deliver_due()

    [event] = exchange_events()
    assert (event.action, event.outcome, event.actor_username, event.actor_role) == (
        "exchange_triggered",
        "observed",
        "exchange",
        "system",
    )
    assert (event.subaccount, event.order_group_id, event.api_key_id) == (2, group_id, "test-key")
    assert event.params["via"] == "poll" and event.params["contracts_limit"] == 5
    assert [body for _, body in receiver.posts] == [
        {
            "event": "order_group_tripped",
            "subaccount": 2,
            "subaccount_label": "desk 2",
            "order_group_id": group_id,
            "contracts_limit": 5,
            "observed_at": TripAlert.objects.get().observed_at.isoformat(),
            "environment": "custom",
            "audit_seq": event.seq,
            "url": f"https://panel.example.com/groups/2/{group_id}/",
        }
    ]
    alert = TripAlert.objects.get()
    assert alert.event == event and alert.delivered_at is not None and alert.attempts == 1
    assert event.params["observed_at"] == alert.observed_at.isoformat() and alert.observed_at <= event.at
    assert audit.verify().ok

    for response in (as_viewer.get("/"), as_viewer.get("/", headers={"HX-Request": "true"})):
        page = response.content.decode()
        assert 'data-testid="trip-banner"' in page
        assert "1 order group tripped at the exchange in the last 60 min" in page
        assert f'<a class="mono" href="/groups/2/{group_id}/">{group_id}</a> (limit 5)' in page

    # More polls and delivery rounds change nothing: one trip, one event, one alert.
    watcher.poll_once()
    alerts.deliver_due()
    assert exchange_events().count() == 1 and len(receiver.posts) == 1


@pytest.mark.django_db
def test_the_first_poll_is_a_baseline_without_alerts_for_old_trips(sim, subaccounts, receiver):
    old_trip = sim.create_group(1, 5)
    trip(sim, 1, old_trip)
    calm = sim.create_group(1, 50)

    Watcher(interval=5, websocket=False).poll_once()
    alerts.deliver_due()

    assert exchange_events().count() == 0 and TripAlert.objects.count() == 0 and receiver.posts == []
    baselines = {event.subaccount: event.params for event in exchange_events("exchange_baseline")}
    assert sorted(baselines) == [0, 1, 2, 3]
    assert baselines[1]["groups"] == 2 and baselines[1]["triggered"] == [old_trip]
    assert baselines[1]["triggered_count"] == 1
    assert set(ObservedGroup.objects.values_list("order_group_id", "triggered")) == {(old_trip, True), (calm, False)}


@pytest.mark.django_db
def test_it_records_every_kind_of_change_made_outside_the_panel(sim, subaccounts, receiver):
    limited, doomed, tripped = sim.create_group(0, 10), sim.create_group(0, 10), sim.create_group(3, 10)
    sim.exchange.trigger_group(tripped, 3)
    watcher = Watcher(interval=5, websocket=False)
    watcher.poll_once()

    created = sim.create_group(1, 7)
    sim.exchange.update_limit(limited, 0, 20)
    sim.exchange.delete_group(doomed, 0)
    sim.exchange.reset_group(tripped, 3)
    watcher.poll_once()

    seen = {(e.action, e.subaccount, e.order_group_id) for e in exchange_events()}
    assert seen == {
        ("exchange_created", 1, created),
        ("exchange_limit_updated", 0, limited),
        ("exchange_deleted", 0, doomed),
        ("exchange_reset", 3, tripped),
    }
    assert exchange_events("exchange_limit_updated").get().params | {"observed_at": ""} == {
        "observed_at": "",
        "via": "poll",
        "contracts_limit": 20,
        "previous_limit": 10,
    }
    assert TripAlert.objects.count() == 0  # none of these is a trip
    assert sorted(ObservedGroup.objects.values_list("order_group_id", "contracts_limit", "triggered")) == sorted(
        [(limited, 20, False), (created, 7, False), (tripped, 10, False)]
    )


@pytest.mark.django_db
def test_a_lower_limit_set_outside_that_trips_the_group_is_a_limit_change_then_a_trip(sim, subaccounts):
    group_id = sim.create_group(2, 100)
    sim.fill(sim.place_order(2, group_id, count=50), 50)
    watcher = Watcher(interval=5, websocket=False)
    watcher.poll_once()

    sim.exchange.update_limit(group_id, 2, 10)  # below the 50 filled: the exchange triggers it
    watcher.poll_once()

    assert [e.action for e in exchange_events()] == ["exchange_limit_updated", "exchange_triggered"]
    assert TripAlert.objects.get().contracts_limit == 10


@pytest.mark.django_db
def test_the_banner_shows_only_trips_on_subaccounts_the_user_may_see(sim, subaccounts, client):
    mine, theirs = sim.create_group(1, 5), sim.create_group(2, 5)
    watcher = Watcher(interval=5, websocket=False)
    watcher.poll_once()
    trip(sim, 1, mine)
    trip(sim, 2, theirs)
    watcher.poll_once()

    client.force_login(make_user("desk1", "viewer", subaccounts=[1]))
    page = client.get("/").content.decode()
    assert "1 order group tripped" in page and f"/groups/1/{mine}/" in page and theirs not in page


@pytest.mark.django_db
def test_a_trip_older_than_the_banner_window_leaves_the_banner(sim, subaccounts, settings):
    group_id = sim.create_group(2, 5)
    watcher = Watcher(interval=5, websocket=False)
    watcher.poll_once()
    trip(sim, 2, group_id)
    watcher.poll_once()
    alert = TripAlert.objects.get()
    assert alerts.recent_trips([2]) == [alert]

    settings.OGPANEL_TRIP_BANNER_MINUTES = 1
    later = alert.observed_at + timedelta(minutes=2)
    assert alerts.recent_trips([2], now=later) == []
    assert alerts.recent_trips([0, 1, 3]) == []


# --- changes the panel made ------------------------------------------------------------------------


@pytest.mark.django_db
def test_changes_made_through_the_panel_are_not_reported_as_the_exchanges(sim, subaccounts, as_operator, receiver):
    admin = Actor.system("admin-test")
    target, limited, doomed = sim.create_group(1, 10), sim.create_group(1, 10), sim.create_group(1, 10)
    watcher = Watcher(interval=5, websocket=False)
    watcher.poll_once()

    response = as_operator.post(f"/groups/1/{target}/trigger/", {"reason": "desk asked"})
    assert response.status_code == 302 and sim.group(target)["triggered"]
    created = services.ordergroup_create(actor=admin, subaccount=subaccounts[1], contracts_limit=3).order_group_id
    services.ordergroup_update_limit(
        actor=admin, subaccount=subaccounts[1], order_group_id=limited, contracts_limit=30, previous_limit=10
    )
    services.ordergroup_delete(actor=admin, subaccount=subaccounts[1], order_group_id=doomed, reason="gone")
    watcher.poll_once()
    services.ordergroup_reset(actor=admin, subaccount=subaccounts[1], order_group_id=target, reason="all clear")
    watcher.poll_once()
    alerts.deliver_due()

    assert exchange_events().count() == 0 and TripAlert.objects.count() == 0 and receiver.posts == []
    # The state followed all the same, so the next outside change is measured from it.
    assert sorted(ObservedGroup.objects.values_list("order_group_id", "contracts_limit", "triggered")) == sorted(
        [(target, 10, False), (limited, 30, False), (created, 3, False)]
    )

    trip(sim, 1, target)  # now by itself
    watcher.poll_once()
    assert [(e.action, e.order_group_id) for e in exchange_events()] == [("exchange_triggered", target)]


@pytest.mark.django_db
def test_a_change_while_a_panel_call_is_under_way_waits_for_its_result(sim, subaccounts):
    group_id = sim.create_group(2, 10)
    watcher = Watcher(interval=5, websocket=False)
    watcher.poll_once()

    pending = audit.Pending(Actor.system("ops-test"), "trigger", subaccount=2, order_group_id=group_id)
    sim.exchange.trigger_group(group_id, 2)  # the exchange acted; the panel has not heard back yet
    watcher.poll_once()
    assert exchange_events().count() == 0
    assert ObservedGroup.objects.get(order_group_id=group_id).triggered is False  # undecided, unchanged

    pending.succeeded()
    watcher.poll_once()
    assert exchange_events().count() == 0 and TripAlert.objects.count() == 0
    assert ObservedGroup.objects.get(order_group_id=group_id).triggered is True


@pytest.mark.django_db
def test_a_panel_trigger_that_failed_does_not_explain_a_trip(sim, subaccounts):
    group_id = sim.create_group(2, 5)
    watcher = Watcher(interval=5, websocket=False)
    watcher.poll_once()

    sim.set_fault("error", status=500, path="/trigger")
    with pytest.raises(KalshiError):
        services.ordergroup_trigger(
            actor=Actor.system("ops-test"), subaccount=subaccounts[2], order_group_id=group_id, reason="try"
        )
    sim.clear_faults()
    trip(sim, 2, group_id)
    watcher.poll_once()

    assert [e.action for e in exchange_events()] == ["exchange_triggered"]


# --- restarts ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_restarted_watcher_reports_and_alerts_nothing_twice(sim, subaccounts, receiver):
    group_id = sim.create_group(0, 5)
    first = Watcher(interval=5, websocket=False)
    first.poll_once()
    trip(sim, 0, group_id)
    first.poll_once()  # recorded; the process dies before the alert went out

    second = Watcher(interval=5, websocket=False)
    second.poll_once()
    alerts.deliver_due()
    third = Watcher(interval=5, websocket=False)
    third.poll_once()
    alerts.deliver_due()

    assert exchange_events().count() == 1
    assert len(exchange_events("exchange_baseline")) == 4  # one baseline per subaccount, ever
    assert [body["order_group_id"] for body in receiver.delivered] == [group_id]


@pytest.mark.django_db(transaction=True)
def test_no_duplicate_after_restarting_the_running_watcher(sim, subaccounts, receiver, running):
    group_id = sim.create_group(3, 5)
    first = running(Watcher(interval=0.2, websocket=False))
    wait_for(lambda: list_calls(sim) >= 8, "two rounds of polls")
    trip(sim, 3, group_id)
    wait_for(lambda: len(receiver.delivered) == 1, "the alert")
    first.stop()

    calls = list_calls(sim)
    running(Watcher(interval=0.2, websocket=False))
    wait_for(lambda: list_calls(sim) >= calls + 12, "three rounds of polls by the new watcher")

    assert len(receiver.posts) == 1
    assert [e.action for e in exchange_events()] == ["exchange_triggered"]


# --- the WebSocket path -------------------------------------------------------------------------------


def streaming(running, sim, *, interval: float):
    """A running watcher whose stream is connected and whose first poll and catch-up read are done."""
    run = running(Watcher(interval=interval, websocket=True))
    wait_for(lambda: stream_connected(run.watcher), "the stream")
    wait_for(lambda: list_calls(sim) >= 8, "the first poll and the catch-up read after connecting")
    return run


@pytest.mark.django_db(transaction=True)
def test_the_stream_alone_brings_a_trip_in(sim, subaccounts, receiver, running, as_viewer):
    group_id = sim.create_group(2, 5)
    # An hour between polls: after the first one, only the stream can make the watcher look again.
    run = streaming(running, sim, interval=3600)
    trip(sim, 2, group_id)

    wait_for(lambda: len(receiver.delivered) == 1, "the alert")
    run.stop()

    [event] = exchange_events()
    assert (event.action, event.order_group_id, event.params["via"]) == ("exchange_triggered", group_id, "stream")
    assert receiver.delivered[0]["order_group_id"] == group_id
    assert f'href="/groups/2/{group_id}/"' in as_viewer.get("/").content.decode()


@pytest.mark.django_db(transaction=True)
def test_with_the_stream_down_polling_catches_the_trip_and_the_stream_comes_back(
    sim,
    subaccounts,
    receiver,
    running,
):
    group_id = sim.create_group(1, 5)
    run = streaming(running, sim, interval=0.3)
    sim.websockets_enabled = False
    sim.drop_websockets()
    wait_for(lambda: not stream_connected(run.watcher), "the watcher to notice the outage")

    trip(sim, 1, group_id)
    wait_for(lambda: len(receiver.delivered) == 1, "the alert")
    state = next(iter(run.watcher.stream_states().values()))
    assert state["state"] == "reconnecting" and state["error"]

    sim.websockets_enabled = True
    wait_for(lambda: stream_connected(run.watcher), "the stream to reconnect", timeout=30)
    run.stop()
    [event] = exchange_events()
    assert event.params["via"] == "poll" and len(receiver.posts) == 1


@pytest.mark.django_db(transaction=True)
def test_a_gap_in_the_stream_makes_the_watcher_read_again(sim, subaccounts, receiver, running, caplog):
    group_id = sim.create_group(0, 5)
    run = streaming(running, sim, interval=3600)
    created = sim.create_group(3, 50)  # a first update, from which the stream counts its sequence
    wait_for(lambda: list_calls(sim) >= 12, "the read the new group's update asked for")
    sim.skip_websocket_seq()  # the trip's frame arrives with a seq that skips one: a lost update
    trip(sim, 0, group_id)

    wait_for(lambda: len(receiver.delivered) == 1, "the alert")
    run.stop()
    assert "stream lost an update" in caplog.text
    assert [(e.action, e.order_group_id, e.params["via"]) for e in exchange_events()] == [
        ("exchange_created", created, "stream"),
        ("exchange_triggered", group_id, "stream"),
    ]


@pytest.mark.django_db
def test_the_watcher_shares_the_dashboards_cached_reads(sim, subaccounts, as_viewer, settings):
    settings.OGPANEL_LIST_CACHE_SECONDS = 60
    sim.create_group(0, 5)
    as_viewer.get("/")
    calls = list_calls(sim)

    Watcher(interval=5, websocket=False).poll_once()

    assert calls == 4 and list_calls(sim) == calls
    assert WatcherStatus.objects.filter(last_success_at__isnull=False).count() == 4


# --- surviving trouble -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_it_keeps_going_through_500s_and_timeouts(sim, subaccounts, settings):
    settings.OGPANEL_CONNECT_TIMEOUT = settings.OGPANEL_READ_TIMEOUT = 0.3
    first, second = sim.create_group(1, 5), sim.create_group(2, 5)
    watcher = Watcher(interval=5, websocket=False)
    watcher.poll_once()

    sim.set_fault("error", status=500, subaccount=2)
    sim.set_fault("hang", seconds=2, subaccount=3)
    trip(sim, 1, first)
    watcher.poll_once()
    statuses = {status.subaccount: status for status in WatcherStatus.objects.all()}
    assert statuses[2].last_error.startswith("ServerError: ") and statuses[2].last_error_at
    assert statuses[3].last_error.startswith("Timeout: ")
    assert not statuses[0].last_error and not statuses[1].last_error
    assert [e.order_group_id for e in exchange_events()] == [first]

    trip(sim, 2, second)  # while subaccount 2 cannot be read
    watcher.poll_once()
    sim.clear_faults()
    watcher.poll_once()
    assert [e.order_group_id for e in exchange_events()] == [first, second]
    assert {number: watch.ok for number, watch in watch_health().subaccounts.items()} == {
        0: True,
        1: True,
        2: True,
        3: True,
    }


@pytest.mark.django_db(transaction=True)
def test_the_running_loop_keeps_going_through_500s_and_timeouts(sim, subaccounts, receiver, running, settings):
    settings.OGPANEL_CONNECT_TIMEOUT = settings.OGPANEL_READ_TIMEOUT = 0.3
    healthy, failing = sim.create_group(1, 5), sim.create_group(2, 5)
    run = running(Watcher(interval=0.2, websocket=False))
    wait_for(lambda: list_calls(sim) >= 4, "the first poll")
    sim.set_fault("error", status=500, subaccount=2)
    sim.set_fault("hang", seconds=1, subaccount=3)

    def troubled_polls() -> int:
        return min(sum(r.status == 500 for r in sim.requests), sum(r.status is None for r in sim.requests))

    wait_for(lambda: troubled_polls() >= 6, "several polls meeting 500s and timeouts")
    trip(sim, 1, healthy)
    wait_for(lambda: len(receiver.delivered) == 1, "the alert for the subaccount that still answers")
    trip(sim, 2, failing)
    sim.clear_faults()
    wait_for(lambda: len(receiver.delivered) == 2, "the alert once subaccount 2 answers again")
    run.stop()

    assert [e.order_group_id for e in exchange_events()] == [healthy, failing]
    assert [body["order_group_id"] for body in receiver.delivered] == [healthy, failing]


@pytest.mark.django_db
def test_a_revoked_key_stops_only_its_own_subaccounts(sim, subaccounts, rsa_public_pem, rsa_pem):
    sim.add_key("desk-key", rsa_public_pem)
    desk = make_credential(sim.base_url, rsa_pem, label="desk", key_id="desk-key")
    Subaccount.objects.filter(number=3).update(credential=desk)
    calm, busy = sim.create_group(3, 5), sim.create_group(0, 5)
    watcher = Watcher(interval=5, websocket=False)
    watcher.poll_once()

    sim.set_fault("error", status=401, key_id="desk-key")  # the exchange no longer knows the key
    trip(sim, 0, busy)
    watcher.poll_once()

    assert WatcherStatus.objects.get(subaccount=3).last_error.startswith("Unauthorized: ")
    assert [e.order_group_id for e in exchange_events()] == [busy]
    assert ObservedGroup.objects.filter(order_group_id=calm).exists()  # not taken for deleted


@pytest.mark.django_db(transaction=True)
def test_a_database_hiccup_costs_one_round_not_the_watcher(sim, subaccounts, receiver, running, monkeypatch, caplog):
    group_id = sim.create_group(2, 5)
    real_poll = Watcher.poll_once
    failures = []

    def flaky_poll(self) -> None:
        if len(failures) < 2:
            failures.append(1)
            raise OperationalError("database is locked")
        real_poll(self)

    monkeypatch.setattr(Watcher, "poll_once", flaky_poll)
    caplog.set_level(logging.ERROR, logger="ogpanel.watcher")
    run = running(Watcher(interval=0.2, websocket=False))
    wait_for(lambda: list_calls(sim) >= 8, "polls after the hiccups")
    trip(sim, 2, group_id)
    wait_for(lambda: len(receiver.delivered) == 1, "the alert")
    run.stop()
    assert sum("poll failed" in record.message for record in caplog.records) == 2


# --- alerts ------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_an_email_alert_goes_out_once_through_djangos_mailer(sim, subaccounts, settings):
    settings.OGPANEL_ALERT_EMAILS = ["desk@example.com", "risk@example.com"]
    group_id = sim.create_group(2, 5)
    watcher = Watcher(interval=5, websocket=False)
    watcher.poll_once()
    trip(sim, 2, group_id)
    watcher.poll_once()

    alerts.deliver_due()
    alerts.deliver_due()

    [message] = mail.outbox
    assert message.to == ["desk@example.com", "risk@example.com"]
    assert message.subject == f"[ogpanel] Order group {group_id} on subaccount 2 (desk 2) tripped"
    assert "limit 5 contracts" in message.body and f"https://panel.example.com/groups/2/{group_id}/" in message.body
    assert TripAlert.objects.get().email_sent_at is not None


@pytest.mark.django_db
def test_a_failing_webhook_is_retried_with_backoff_and_delivered_once(sim, subaccounts, receiver, settings, caplog):
    settings.OGPANEL_ALERT_EMAILS = ["desk@example.com"]
    receiver.planned = [500, 503]
    group_id = sim.create_group(2, 5)
    watcher = Watcher(interval=5, websocket=False)
    watcher.poll_once()
    trip(sim, 2, group_id)
    watcher.poll_once()

    alerts.deliver_due()
    alert = TripAlert.objects.get()
    assert (alert.attempts, alert.delivered_at, alert.last_error) == (1, None, "webhook answered HTTP 500")
    assert alert.email_sent_at is not None and len(mail.outbox) == 1  # the channel that worked is done
    assert "not delivered (attempt 1)" in caplog.text
    first_retry = alert.next_attempt_at
    assert alerts.deliver_due() == 0 and len(receiver.posts) == 1  # not due yet

    alerts.deliver_due(now=first_retry)
    alert.refresh_from_db()
    assert alert.attempts == 2 and alert.next_attempt_at - first_retry == alerts.retry_delay(2)
    alerts.deliver_due(now=alert.next_attempt_at)
    alerts.deliver_due(now=alert.next_attempt_at + timedelta(hours=1))

    alert.refresh_from_db()
    assert alert.delivered_at is not None and alert.attempts == 3 and alert.last_error == ""
    assert [status for status, _ in receiver.posts] == [500, 503, 200]
    assert len(receiver.delivered) == 1 and len(mail.outbox) == 1


@pytest.mark.django_db
def test_an_unreachable_webhook_never_shows_its_secret_url(sim, subaccounts, settings, unused_port, caplog):
    settings.OGPANEL_ALERT_WEBHOOK_URL = f"http://127.0.0.1:{unused_port}/services/T000/B000/s3cr3t-token"
    group_id = sim.create_group(2, 5)
    watcher = Watcher(interval=5, websocket=False)
    watcher.poll_once()
    trip(sim, 2, group_id)
    watcher.poll_once()

    assert alerts.deliver_due() == 0
    alert = TripAlert.objects.get()
    assert alert.last_error == "webhook: ConnectionError" and alert.next_attempt_at is not None
    assert "s3cr3t" not in caplog.text


@pytest.mark.django_db
def test_the_slack_format_sends_a_text_body(sim, subaccounts, receiver, settings):
    settings.OGPANEL_ALERT_WEBHOOK_FORMAT = "slack"
    group_id = sim.create_group(1, 5)
    watcher = Watcher(interval=5, websocket=False)
    watcher.poll_once()
    trip(sim, 1, group_id)
    watcher.poll_once()
    alerts.deliver_due()

    [(_, body)] = receiver.posts
    assert list(body) == ["text"]
    assert body["text"].startswith(f"Order group {group_id} on subaccount 1 (desk 1) tripped at the exchange")


# --- health --------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_healthz_and_the_dashboard_report_the_watcher(sim, subaccounts, client, as_viewer):
    assert "watcher" not in client.get("/healthz").json()  # never ran: nothing to say
    assert re.search(
        r'Trip watch:\s+<span class="status-error">not running</span>\.', as_viewer.get("/").content.decode()
    )

    sim.set_fault("error", status=500, subaccount=1)
    watcher = Watcher(interval=5, websocket=False)
    watcher.poll_once()
    watcher.beat()

    answer = client.get("/healthz").json()
    assert answer["status"] == "ok" and answer["watcher"]["status"] == "running"
    assert answer["watcher"]["last_poll_at"] == WatcherHeartbeat.objects.get().beat_at.isoformat()
    assert answer["watcher"]["undelivered_alerts"] == 0 and answer["watcher"]["streams"] == {}
    assert {n: s["ok"] for n, s in answer["watcher"]["subaccounts"].items()} == {
        "0": True,
        "1": False,
        "2": True,
        "3": True,
    }
    page = as_viewer.get("/").content.decode()
    assert re.search(r"Trip watch:\s+last poll \d+ s ago\.", page)
    assert page.count('<span class="status-error">failing</span>') == 1

    watcher.beat(stopped=True)
    assert client.get("/healthz").json()["watcher"]["status"] == "not running"


@pytest.mark.django_db
def test_a_watcher_that_stopped_beating_is_stale(sim, subaccounts, settings):
    Watcher(interval=5, websocket=False).beat()
    beat = WatcherHeartbeat.objects.get()
    assert watch_health(now=beat.beat_at + timedelta(seconds=stale_after(5) - 1)).state == "running"
    assert watch_health(now=beat.beat_at + timedelta(seconds=stale_after(5) + 1)).state == "stale"


# --- the command ---------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_command_polls_once(sim, subaccounts):
    call_command("watch_order_groups", "--once")
    assert WatcherStatus.objects.filter(last_success_at__isnull=False).count() == 4
    assert WatcherHeartbeat.objects.get().stopped_at is not None


def test_the_command_stops_cleanly_on_sigterm(tmp_path):
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "PYTHONUNBUFFERED": "1",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'watch.sqlite3'}",
        "OGPANEL_WATCH_WEBSOCKET": "0",
    }
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--no-input"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    process = subprocess.Popen(
        [sys.executable, "manage.py", "watch_order_groups", "--interval", "0.2"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout.readline().startswith("Watching order groups every 0.2 s")
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert out.strip() == "Stopped."
