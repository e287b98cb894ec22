"""The trip watch against any history another client makes at the exchange, and against its own failures.

Another client is a trading bot with its own key, talking to the simulator over HTTP; fills come
from the simulator's control API (the exchange's matching). Polls are driven one at a time.
"""

import logging
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest

from ogpanel import notices, watch_lease, watch_outage, watcher
from ogpanel.kalshi import KalshiClient
from ogpanel.models import AuditEvent, Notice, TripAlert, WatcherHeartbeat, WatcherStatus
from ogpanel.watch_health import stale_after, watch_health
from ogpanel.watcher import Watcher
from tests.panel_process import wait_for
from tests.test_watcher import Receiver, Running, exchange_events, list_calls, stream_connected, trip

# Fixtures, asked for by name (request.getfixturevalue) where a test also needs their type.
from tests.test_watcher import receiver as receiver
from tests.test_watcher import running as running

BOT_KEY = "bot-key"


@pytest.fixture(autouse=True)
def _watch_settings(settings):
    settings.OGPANEL_LIST_CACHE_SECONDS = 0
    settings.OGPANEL_ALERT_WEBHOOK_URL = ""
    settings.OGPANEL_ALERT_EMAILS = []
    settings.OGPANEL_PUBLIC_URL = ""


@pytest.fixture
def bot(sim, rsa_public_pem, rsa_pem) -> Iterator[KalshiClient]:
    """Another client of the same account with a key of its own: the panel never hears of what it does."""
    sim.add_key(BOT_KEY, rsa_public_pem)
    client = KalshiClient(sim.base_url, BOT_KEY, rsa_pem, timeout=(1.0, 2.0), retries=0)
    yield client
    client.close()


def seen() -> list[tuple[str, int, str]]:
    return [(e.action, e.subaccount, e.order_group_id) for e in exchange_events()]


# --- the crash found on `make demo` --------------------------------------------------------------------


@pytest.mark.django_db
def test_it_reports_a_group_created_and_tripped_between_two_reads_instead_of_crashing(sim, subaccounts, bot, caplog):
    caplog.set_level(logging.ERROR, logger="ogpanel.watcher")
    watch = Watcher(interval=5, websocket=False)
    watch.poll_once()  # the baseline
    group_id = bot.create_order_group(5, subaccount=2).order_group_id
    trip(sim, 2, group_id)  # before the watcher's next read
    calm = bot.create_order_group(9, subaccount=3).order_group_id  # a later subaccount is still read

    watch.poll_once()

    assert seen() == [
        ("exchange_created", 2, group_id),
        ("exchange_triggered", 2, group_id),
        ("exchange_created", 3, calm),
    ]
    assert TripAlert.objects.get().order_group_id == group_id
    assert not caplog.records
    assert {status.subaccount: status.record_failures for status in WatcherStatus.objects.all()} == dict.fromkeys(
        range(4), 0
    )


# --- every history between two reads -----------------------------------------------------------------

Step = Callable[[object, KalshiClient, str], None]


def _fill_over(sim, bot: KalshiClient, group_id: str) -> None:
    trip(sim, 1, group_id)


HISTORIES: dict[str, tuple[list[Step], list[str], int]] = {
    # history on an existing group (limit 10, not triggered) -> the exchange_* actions seen, trip alerts
    "fill over the limit": ([_fill_over], ["exchange_triggered"], 1),
    "trigger": ([lambda sim, bot, g: bot.trigger_order_group(g, subaccount=1)], ["exchange_triggered"], 1),
    "limit changed once": (
        [lambda sim, bot, g: bot.update_order_group_limit(g, 20, subaccount=1)],
        ["exchange_limit_updated"],
        0,
    ),
    "limit changed twice": (
        [
            lambda sim, bot, g: bot.update_order_group_limit(g, 20, subaccount=1),
            lambda sim, bot, g: bot.update_order_group_limit(g, 30, subaccount=1),
        ],
        ["exchange_limit_updated"],  # polling sees 10 -> 30: one change
        0,
    ),
    "delete": ([lambda sim, bot, g: bot.delete_order_group(g, subaccount=1)], ["exchange_deleted"], 0),
    "trip then delete": (
        [_fill_over, lambda sim, bot, g: bot.delete_order_group(g, subaccount=1)],
        ["exchange_deleted"],  # the trip never showed in a read
        0,
    ),
    "trip and reset": (
        [_fill_over, lambda sim, bot, g: bot.reset_order_group(g, subaccount=1)],
        [],  # invisible to polling alone (README): the stream catches it, see below
        0,
    ),
}


@pytest.mark.django_db
@pytest.mark.parametrize("name", list(HISTORIES))
def test_it_reports_each_visible_change_of_any_history_once_and_never_raises(sim, subaccounts, bot, name):
    steps, expected, trips = HISTORIES[name]
    group_id = bot.create_order_group(10, subaccount=1).order_group_id
    watch = Watcher(interval=5, websocket=False)
    watch.poll_once()
    for step in steps:
        step(sim, bot, group_id)

    watch.poll_once()
    watch.poll_once()  # a second read changes nothing

    assert [action for action, _, _ in seen()] == expected
    assert TripAlert.objects.count() == trips
    assert not WatcherStatus.objects.exclude(last_error="").exists()


@pytest.mark.django_db
def test_a_reset_and_a_new_trip_of_a_tripped_group_are_both_reported(sim, subaccounts, bot):
    group_id = bot.create_order_group(5, subaccount=0).order_group_id
    watch = Watcher(interval=5, websocket=False)
    watch.poll_once()
    trip(sim, 0, group_id)
    watch.poll_once()
    bot.reset_order_group(group_id, subaccount=0)
    watch.poll_once()
    bot.trigger_order_group(group_id, subaccount=0)
    watch.poll_once()

    assert [action for action, _, _ in seen()] == ["exchange_triggered", "exchange_reset", "exchange_triggered"]
    assert TripAlert.objects.count() == 2


@pytest.mark.django_db
def test_a_group_created_and_deleted_between_two_reads_leaves_nothing_to_report(sim, subaccounts, bot):
    watch = Watcher(interval=5, websocket=False)
    watch.poll_once()
    group_id = bot.create_order_group(5, subaccount=0).order_group_id
    bot.delete_order_group(group_id, subaccount=0)
    watch.poll_once()
    assert seen() == []


@pytest.mark.django_db(transaction=True)
def test_the_stream_catches_a_reset_and_a_new_trip_between_two_polls(sim, subaccounts, bot, request):
    receiver: Receiver = request.getfixturevalue("receiver")
    running: Callable[[Watcher], Running] = request.getfixturevalue("running")
    group_id = bot.create_order_group(5, subaccount=2).order_group_id
    trip(sim, 2, group_id)
    # An hour between polls: only what the stream heard can show the reset in between.
    run = running(Watcher(interval=3600, websocket=True))
    wait_for(lambda: stream_connected(run.watcher), "the stream")
    wait_for(lambda: WatcherStatus.objects.filter(last_success_at__isnull=False).count() == 4, "the baseline")
    bot.reset_order_group(group_id, subaccount=2)
    bot.trigger_order_group(group_id, subaccount=2)

    wait_for(lambda: len(receiver.delivered) == 1, "the alert for the new trip")
    run.stop()
    assert [action for action, _, _ in seen()] == ["exchange_reset", "exchange_triggered"]
    assert TripAlert.objects.count() == 1


# --- failures stay local -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_one_subaccount_raising_costs_it_alone_its_round(sim, subaccounts, bot, monkeypatch, caplog, client):
    groups = {n: bot.create_order_group(5, subaccount=n).order_group_id for n in (1, 2, 3)}
    watch = Watcher(interval=5, websocket=False)
    watch.poll_once()
    watch.beat()
    for number, group_id in groups.items():
        trip(sim, number, group_id)
    real = watcher.changes_between

    def broken_for_two(subaccount, *args, **kwargs):
        if subaccount == 2:
            raise RuntimeError("a bug that only subaccount 2's listing reaches")
        return real(subaccount, *args, **kwargs)

    monkeypatch.setattr(watcher, "changes_between", broken_for_two)
    caplog.set_level(logging.ERROR, logger="ogpanel.watcher")

    watch.poll_once()  # one round

    assert seen() == [("exchange_triggered", 1, groups[1]), ("exchange_triggered", 3, groups[3])]
    [record] = [r for r in caplog.records if "recording subaccount 2 failed" in r.getMessage()]
    assert record.exc_info and "a bug that only subaccount 2" in caplog.text  # the traceback, in the log
    status = WatcherStatus.objects.get(subaccount=2)
    assert (status.record_failures, status.last_error) == (1, "Recording failed: RuntimeError")
    assert not watch_health().subaccounts[2].ok and watch_health().subaccounts[1].ok
    answer = client.get("/healthz").json()["watcher"]["subaccounts"]
    assert (answer["2"]["ok"], answer["2"]["record_failures"], answer["1"]["record_failures"]) == (False, 1, 0)

    monkeypatch.setattr(watcher, "changes_between", real)
    watch.poll_once()
    assert seen()[-1] == ("exchange_triggered", 2, groups[2]) and TripAlert.objects.count() == 3
    assert watch_health().subaccounts[2].ok


@pytest.mark.django_db
def test_a_policy_check_that_raises_stays_local_too(sim, subaccounts, bot, monkeypatch, caplog):
    group_id = bot.create_order_group(5, subaccount=3).order_group_id
    watch = Watcher(interval=5, websocket=False)
    watch.poll_once()
    trip(sim, 3, group_id)

    def broken(sub, listing):
        raise ValueError("policy bug")

    monkeypatch.setattr(watcher.breaches, "record_breaches", broken)
    watch.poll_once()

    assert seen() == [("exchange_triggered", 3, group_id)]
    assert caplog.text.count("could not check subaccount") == 4


# --- a dead watcher is an alert ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_watcher_that_stops_beating_gives_one_down_and_one_recovered_alert(sim, subaccounts, request, settings):
    receiver: Receiver = request.getfixturevalue("receiver")
    settings.OGPANEL_WATCH_DOWN_SECONDS = 30
    watch = Watcher(interval=5, websocket=False)
    watch.poll_once()
    watch.beat()
    beat = WatcherHeartbeat.objects.get().beat_at
    assert watch_outage.check(now=beat + timedelta(seconds=29)) is None

    later = beat + timedelta(seconds=31)  # it stopped beating: a standby and a probe both look, twice
    checks = [watch_outage.check(now=later + timedelta(seconds=n)) for n in range(4)]
    notices.deliver_due(now=later + timedelta(seconds=5))
    notices.deliver_due(now=later + timedelta(seconds=6))

    assert checks == ["trip_watch_down", None, None, None]
    [down] = receiver.delivered
    assert down["event"] == "trip_watch_down" and down["down_since"] == beat.isoformat()
    assert Notice.objects.get().title == f"Trip watch is down since {beat:%Y-%m-%d %H:%M:%S} UTC"

    watch.poll_once()
    watch.beat()  # it is back
    assert [watch_outage.check(), watch_outage.check()] == ["trip_watch_recovered", None]
    notices.deliver_due()
    notices.deliver_due()
    assert [body["event"] for body in receiver.delivered] == ["trip_watch_down", "trip_watch_recovered"]
    assert [e.action for e in AuditEvent.objects.filter(action__startswith="trip_watch").order_by("seq")] == [
        "trip_watch_down",
        "trip_watch_recovered",
    ]


@pytest.mark.django_db
def test_every_read_failing_for_too_long_is_an_outage_too(sim, subaccounts, settings):
    settings.OGPANEL_WATCH_DOWN_SECONDS = 30
    watch = Watcher(interval=5, websocket=False)
    watch.poll_once()
    last_good = WatcherStatus.objects.order_by("-last_success_at").first().last_success_at
    sim.set_fault("error", status=500)
    watch.poll_once()
    watch.beat()  # the watcher itself is alive

    assert watch_outage.outage(now=last_good + timedelta(seconds=29)) is None
    found = watch_outage.outage(now=last_good + timedelta(seconds=31))
    assert found is not None and found.since == last_good and "every subaccount read has failed" in found.reason


# --- the watcher probe ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_watcher_probe_answers_503_when_stale_and_200_while_running(sim, subaccounts, client):
    assert client.get("/healthz/watcher").status_code == 503  # never ran
    watch = Watcher(interval=5, websocket=False)
    watch.poll_once()
    watch.beat()
    assert client.get("/healthz/watcher").status_code == 200

    WatcherHeartbeat.objects.update(
        beat_at=WatcherHeartbeat.objects.get().beat_at - timedelta(seconds=stale_after(5) + 1)
    )
    response = client.get("/healthz/watcher")
    assert response.status_code == 503 and response.json()["status"] == "stale"
    assert client.get("/healthz").status_code == 200  # the panel's own probe keeps its meaning


@pytest.mark.django_db
def test_the_probe_command_exits_non_zero_when_stale(sim, subaccounts):
    from django.core.management import call_command

    watch = Watcher(interval=5, websocket=False)
    watch.poll_once()
    watch.beat()
    call_command("watch_order_groups", "--probe")
    WatcherHeartbeat.objects.update(beat_at=WatcherHeartbeat.objects.get().beat_at - timedelta(hours=1))
    with pytest.raises(SystemExit) as stopped:
        call_command("watch_order_groups", "--probe")
    assert stopped.value.code == 1


@pytest.mark.django_db(transaction=True)
def test_a_running_leader_that_stops_beating_is_announced_once_by_the_watchers_and_once_recovered(
    sim, subaccounts, request, settings
):
    receiver: Receiver = request.getfixturevalue("receiver")
    running: Callable[[Watcher], Running] = request.getfixturevalue("running")
    settings.OGPANEL_WATCH_DOWN_SECONDS = 1
    leader = running(Watcher(interval=0.2, websocket=False))
    wait_for(lambda: leader.watcher.leading and list_calls(sim) >= 8, "the first watcher to lead and beat")
    standby = running(Watcher(interval=0.2, websocket=False))
    real_beat = leader.watcher.beat
    leader.watcher.beat = lambda **kwargs: None  # type: ignore[method-assign]  # alive, polling, but silent

    wait_for(lambda: len(receiver.delivered) == 1, "the down alert")
    leader.watcher.beat = real_beat  # type: ignore[method-assign]
    wait_for(lambda: len(receiver.delivered) == 2, "the recovered alert")
    assert not standby.watcher.leading
    leader.stop()
    standby.stop()

    assert [body["event"] for body in receiver.delivered] == ["trip_watch_down", "trip_watch_recovered"]
    assert len(receiver.posts) == 2
    assert AuditEvent.objects.filter(action__startswith="trip_watch_").count() == 2


# --- the lease ---------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_lease_is_renewed_by_its_holder_and_taken_only_once_it_lapsed():
    start = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert watch_lease.hold("a", 5, now=start)
    assert not watch_lease.hold("b", 5, now=start + timedelta(seconds=4))
    assert watch_lease.hold("a", 5, now=start + timedelta(seconds=4))  # renewed: good until 9 s
    assert not watch_lease.hold("b", 5, now=start + timedelta(seconds=8))
    assert watch_lease.hold("b", 5, now=start + timedelta(seconds=10))
    lease = watch_lease.leader()
    assert lease is not None
    assert (lease.holder, lease.taken_from, lease.taken_from_renewed_at) == ("b", "a", start + timedelta(seconds=4))
    assert not watch_lease.hold("a", 5, now=start + timedelta(seconds=11))  # the old leader is a standby now

    watch_lease.release("b")
    assert watch_lease.hold("a", 5)


@pytest.mark.django_db(transaction=True)
def test_a_hung_leader_gives_the_lease_up_and_the_standby_takes_over(sim, subaccounts, request, settings, monkeypatch):
    running: Callable[[Watcher], Running] = request.getfixturevalue("running")
    settings.OGPANEL_CONNECT_TIMEOUT = settings.OGPANEL_READ_TIMEOUT = 0.3
    leader = running(Watcher(interval=0.2, websocket=False))
    wait_for(lambda: leader.watcher.leading and list_calls(sim) >= 4, "the first watcher to lead")
    standby = running(Watcher(interval=0.2, websocket=False))
    unstuck = threading.Event()
    real_poll = Watcher.poll_once

    def stuck_for_the_leader(self: Watcher) -> None:
        if self is leader.watcher:
            unstuck.wait(30)  # a loop that no longer comes round, as if a call never returned
        real_poll(self)

    monkeypatch.setattr(Watcher, "poll_once", stuck_for_the_leader)
    wait_for(lambda: standby.watcher.leading, "the standby to lead")
    assert not leader.watcher.leading
    unstuck.set()
    standby.stop()
    leader.stop()
