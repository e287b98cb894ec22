"""/metrics: who may read it, and the series it serves moving with what happens in the panel.

In process, through Django's test client; tests/test_operations.py scrapes a real gunicorn with
several workers.
"""

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from ipaddress import ip_network
from urllib.request import urlopen

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ogpanel import audit, budgets, exchange, jobs, metrics, sweeps
from ogpanel.kalshi import Bucket, Budget, CallRecord, KalshiError, RateLimited, deadline
from ogpanel.models import AuditEvent, TripAlert, WatcherHeartbeat, WatcherStatus
from tests.conftest import SIM_KEY_ID
from tests.panel_fixtures import make_credential
from tests.sweeps import run_sweeps
from tests.test_degraded_budgets import OTHER_KEY_ID
from tests.test_degraded_budgets import basic_sim as basic_sim  # a fixture, asked for by name

SCRAPER = "10.9.8.7"


@pytest.fixture
def scraper(settings, client):
    """A client at an address allowed to scrape; returns {(name, labels): value} from /metrics."""
    settings.OGPANEL_METRICS_ALLOWED_ADDRESSES = [ip_network("10.9.8.0/24")]

    def scrape() -> dict[tuple[str, frozenset], float]:
        response = client.get("/metrics", REMOTE_ADDR=SCRAPER)
        assert response.status_code == 200, response.content
        return samples(response.content.decode())

    return scrape


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(scraped: dict, name: str, **labels: str) -> float:
    return scraped.get((name, frozenset(labels.items())), 0.0)


@pytest.mark.django_db
def test_it_refuses_metrics_to_an_unlisted_address(client, settings):
    settings.OGPANEL_METRICS_ALLOWED_ADDRESSES = [ip_network("10.9.8.0/24")]
    refused = client.get("/metrics", REMOTE_ADDR="192.0.2.1")
    assert refused.status_code == 403
    assert b"ogpanel_" not in refused.content
    # A forwarded-for header is only believed past trusted proxies (none here).
    forged = client.get("/metrics", REMOTE_ADDR="192.0.2.1", HTTP_X_FORWARDED_FOR=SCRAPER)
    assert forged.status_code == 403
    allowed = client.get("/metrics", REMOTE_ADDR=SCRAPER)
    assert allowed.status_code == 200
    assert allowed["Content-Type"].startswith("text/plain; version=")
    assert b"ogpanel_http_requests_total" in allowed.content


@pytest.mark.django_db
def test_by_default_nobody_may_read_metrics(client):
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 403


@pytest.mark.django_db
def test_a_bearer_token_opens_metrics_from_any_address_and_a_wrong_one_does_not(client, settings):
    settings.OGPANEL_METRICS_TOKEN = "scrape-token-for-tests"
    assert client.get("/metrics", REMOTE_ADDR="192.0.2.1").status_code == 403
    wrong = client.get("/metrics", REMOTE_ADDR="192.0.2.1", HTTP_AUTHORIZATION="Bearer scrape-token-for-test")
    assert wrong.status_code == 403
    right = client.get("/metrics", REMOTE_ADDR="192.0.2.1", HTTP_AUTHORIZATION="Bearer scrape-token-for-tests")
    assert right.status_code == 200


def test_requests_are_counted_by_view_and_status(sim, subaccounts, as_viewer, as_operator, scraper):
    group = sim.create_group(1, 10)
    before = scraper()
    for _ in range(3):
        assert as_viewer.get("/").status_code == 200
    assert as_viewer.get("/no-such-page/").status_code == 404
    triggered = as_operator.post(f"/groups/1/{group}/trigger/", {"reason": "metrics test"})
    assert triggered.status_code == 302
    refused = as_viewer.post(f"/groups/1/{group}/reset/", {"reason": "not mine to do"})
    assert refused.status_code == 403
    after = scraper()

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("ogpanel_http_requests_total", view="dashboard", status="200") == 3
    assert moved("ogpanel_http_requests_total", view="<unmatched>", status="404") == 1
    assert moved("ogpanel_http_requests_total", view="group_trigger", status="302") == 1
    assert moved("ogpanel_http_requests_total", view="group_reset", status="403") == 1
    # The first scrape; the second is counted once it has answered.
    assert moved("ogpanel_http_requests_total", view="metrics", status="200") == 1
    assert moved("ogpanel_http_request_duration_seconds_count", view="dashboard") == 3


def _record(method: str, route: str, outcome: str, status: int | None, **tries) -> CallRecord:
    fields = {"kind": "write", "sent": 1, "rate_limited": 0, "refused": False, **tries}
    return CallRecord(method, route, outcome, status, max(fields["sent"], 1), seconds=0.3, waited=0.1, **fields)


@pytest.mark.django_db
def test_the_hooks_feed_upstream_limiter_watcher_and_sweep_series(scraper):
    trigger_route = "/portfolio/order_groups/{order_group_id}/trigger"
    before = scraper()
    metrics.exchange_call(_record("GET", "/portfolio/order_groups", "ok", 200, kind="read"))
    # Two 429s, then an answer: one call, three requests.
    metrics.exchange_call(_record("PUT", trigger_route, "ok", 200, sent=3, rate_limited=2))
    metrics.exchange_call(_record("PUT", trigger_route, "RateLimited", 429, rate_limited=1))
    metrics.exchange_call(_record("PUT", trigger_route, "ServerError", 503))
    # Refused by the local limiter before anything went out: no 429, no time at the exchange.
    metrics.exchange_call(_record("PUT", trigger_route, "RateLimited", None, sent=0, refused=True))
    # A raw path, were one to come: the group's id does not become a label of its own.
    metrics.exchange_call(_record("DELETE", "/portfolio/order_groups/og-1?subaccount=2", "NotFound", 404))
    metrics.exchange_call(_record("POST", "/portfolio/order_groups/create", "ok", 201))
    metrics.limiter_waited("write", 0.4)
    metrics.limiter_waited("write", 0.0)
    metrics.limiter_refused("read")
    metrics.poll_failed(7)
    metrics.poll_finished(1.5)
    with metrics.sweep("trigger"):
        running = scraper()
    metrics.sweep_finished("trigger", 12.5, {"changed": 3, "failed": 1})
    after = scraper()

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    trigger = "PUT " + trigger_route
    assert moved("ogpanel_upstream_calls_total", endpoint="GET /portfolio/order_groups", outcome="ok") == 1
    assert moved("ogpanel_upstream_calls_total", endpoint=trigger, outcome="ok") == 1
    assert moved("ogpanel_upstream_calls_total", endpoint=trigger, outcome="rate_limited") == 1
    assert moved("ogpanel_upstream_calls_total", endpoint=trigger, outcome="server_error") == 1
    assert moved("ogpanel_upstream_calls_total", endpoint=trigger, outcome="refused_locally") == 1
    assert moved("ogpanel_upstream_requests_total", endpoint=trigger) == 5
    assert moved("ogpanel_upstream_rate_limited_total", endpoint=trigger) == 3  # the 503 and the refusal are no 429
    assert moved("ogpanel_upstream_call_duration_seconds_count", endpoint=trigger) == 3  # the refusal took none
    assert moved("ogpanel_upstream_call_duration_seconds_sum", endpoint=trigger) == pytest.approx(0.6)  # no waits
    group = "DELETE /portfolio/order_groups/{order_group_id}"
    assert moved("ogpanel_upstream_calls_total", endpoint=group, outcome="not_found") == 1
    assert moved("ogpanel_upstream_calls_total", endpoint="POST /portfolio/order_groups/create", outcome="ok") == 1
    assert moved("ogpanel_rate_limiter_wait_seconds_count", kind="write") == 2
    assert moved("ogpanel_rate_limiter_wait_seconds_bucket", kind="write", le="0.0") == 1
    assert moved("ogpanel_rate_limiter_wait_seconds_sum", kind="write") == pytest.approx(0.4)
    assert moved("ogpanel_rate_limiter_refusals_total", kind="write") == 1
    assert moved("ogpanel_rate_limiter_refusals_total", kind="read") == 1
    assert moved("ogpanel_watcher_poll_failures_total", subaccount="7") == 1
    assert moved("ogpanel_watcher_poll_duration_seconds_count") == 1
    assert value(running, "ogpanel_sweeps_running", kind="trigger") == 1
    assert value(after, "ogpanel_sweeps_running", kind="trigger") == 0
    assert moved("ogpanel_sweep_duration_seconds_count", kind="trigger") == 1
    assert moved("ogpanel_sweep_duration_seconds_sum", kind="trigger") == pytest.approx(12.5)
    assert moved("ogpanel_sweep_groups_total", kind="trigger", outcome="changed") == 3
    assert moved("ogpanel_sweep_groups_total", kind="trigger", outcome="failed") == 1


# --- the series fed by the work itself: a kill switch against the simulator over HTTP -------------

TRIGGER = "PUT /portfolio/order_groups/{order_group_id}/trigger"
LIST = "GET /portfolio/order_groups"


def tries(sim, method: str, suffix: str) -> int:
    """Requests the simulator received of `method` whose path ends with `suffix`."""
    return sum(1 for r in sim.requests if r.method == method and r.path.endswith(suffix))


def test_a_kill_switch_moves_the_upstream_limiter_and_sweep_series(sim, subaccounts, as_operator, scraper, settings):
    settings.OGPANEL_LIST_CACHE_SECONDS = 0
    plain = [sim.create_group(number, 10) for number in range(3) for _ in range(2)]
    refused = sim.create_group(3, 10)
    tripped = sim.create_group(3, 1)
    sim.fill(sim.place_order(3, tripped, count=2), 2)
    sim.set_fault("error", status=400, path=f"/{refused}/trigger")  # every try: failed after MAX_TRIES
    sim.set_fault("rate_limit", path=f"/{plain[0]}/trigger", times=1)  # a 429, then the retry goes through
    before = scraper()
    sim.clear_requests()

    assert as_operator.post("/kill-switch/", {"operation": "trigger_all"}).status_code == 302
    (sweep,) = run_sweeps()
    after = scraper()

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert sweep.finished_at is not None
    assert moved("ogpanel_upstream_calls_total", endpoint=TRIGGER, outcome="ok") == len(plain)
    assert moved("ogpanel_upstream_calls_total", endpoint=TRIGGER, outcome="bad_request") == sweeps.MAX_TRIES
    # Every try the simulator saw is counted: the 429's retry, the refused group's three calls.
    assert moved("ogpanel_upstream_requests_total", endpoint=TRIGGER) == tries(sim, "PUT", "/trigger") == 10
    assert moved("ogpanel_upstream_rate_limited_total", endpoint=TRIGGER) == 1
    listings = tries(sim, "GET", "/portfolio/order_groups")
    assert moved("ogpanel_upstream_calls_total", endpoint=LIST, outcome="ok") == listings >= 2 * len(subaccounts)
    assert moved("ogpanel_upstream_call_duration_seconds_count", endpoint=TRIGGER) == len(plain) + sweeps.MAX_TRIES
    # Every write let through by the account's limiter; the retry after the 429 waited for the bucket it emptied.
    assert moved("ogpanel_rate_limiter_wait_seconds_count", kind="write") == 10
    assert moved("ogpanel_rate_limiter_wait_seconds_sum", kind="write") > 0
    assert moved("ogpanel_rate_limiter_refusals_total", kind="write") == 0
    assert moved("ogpanel_sweep_duration_seconds_count", kind="trigger") == 1
    assert moved("ogpanel_sweep_duration_seconds_sum", kind="trigger") == pytest.approx(
        (sweep.finished_at - sweep.created_at).total_seconds()
    )
    assert moved("ogpanel_sweep_groups_total", kind="trigger", outcome="changed") == len(plain)
    assert moved("ogpanel_sweep_groups_total", kind="trigger", outcome="already") == 1
    assert moved("ogpanel_sweep_groups_total", kind="trigger", outcome="failed") == 1
    assert value(after, "ogpanel_sweeps_running", kind="trigger") == 0
    assert value(after, "ogpanel_sweeps_unfinished", kind="trigger") == 0
    assert value(after, "ogpanel_sweep_groups_to_go", kind="trigger") == 0


def scrape_until(scraper, condition, *, what: str, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while not condition(scraped := scraper()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)
    return scraped


@pytest.mark.django_db(transaction=True)
def test_while_a_sweep_runs_metrics_show_it_running_and_what_it_has_left(
    sim, subaccounts, as_operator, scraper, settings
):
    settings.OGPANEL_LIST_CACHE_SECONDS = 0
    groups = [sim.create_group(1, 10) for _ in range(3)]
    sim.set_fault("latency", path=f"/{groups[-1]}/trigger", method="PUT", seconds=3.0, times=1)  # held while we look
    idle = scraper()
    assert value(idle, "ogpanel_sweeps_unfinished", kind="trigger") == 0
    assert not any(name == "ogpanel_sweep_oldest_unfinished_age_seconds" for name, _ in idle)

    assert as_operator.post("/kill-switch/", {"operation": "trigger_all"}).status_code == 302

    # The panel process runs the sweep in a thread of its own; two answers in, one held.
    held = scrape_until(
        scraper, lambda s: value(s, "ogpanel_sweep_groups_to_go", kind="trigger") == 1, what="one group to go"
    )
    assert value(held, "ogpanel_sweeps_running", kind="trigger") == 1
    assert value(held, "ogpanel_sweeps_unfinished", kind="trigger") == 1
    assert value(held, "ogpanel_sweep_subaccounts_to_go", kind="trigger") >= 1  # subaccount 1's groups are out
    assert value(held, "ogpanel_sweep_oldest_unfinished_age_seconds", kind="trigger") >= 0
    assert value(held, "ogpanel_sweeps_unfinished", kind="reset") == 0

    done = scrape_until(
        scraper, lambda s: value(s, "ogpanel_sweeps_unfinished", kind="trigger") == 0, what="the sweep to finish"
    )
    assert value(done, "ogpanel_sweep_groups_to_go", kind="trigger") == 0
    assert value(done, "ogpanel_sweep_subaccounts_to_go", kind="trigger") == 0
    assert value(done, "ogpanel_sweeps_running", kind="trigger") == 0
    assert jobs.wait_idle(timeout=60)
    assert all(sim.group(group)["triggered"] for group in groups)


def test_a_call_the_local_limiter_refuses_is_its_refusal_not_an_upstream_429(sim, credential, scraper):
    group = sim.create_group(0, 10)
    client = exchange.client_for(credential)
    # The account's budget as an exchange might report it: one write token a second, ten of burst.
    limiter = budgets.limiter_for(credential)
    limiter.budget = Budget("basic", Bucket(200, 200), Bucket(1, 10), source="exchange")
    before = scraper()
    client.trigger_order_group(group, subaccount=0)  # the burst
    with deadline(1.0), pytest.raises(RateLimited) as refusal:
        client.trigger_order_group(group, subaccount=0)  # ten seconds away: refused at once
    after = scraper()

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert refusal.value.status is None and tries(sim, "PUT", "/trigger") == 1
    assert moved("ogpanel_upstream_calls_total", endpoint=TRIGGER, outcome="ok") == 1
    assert moved("ogpanel_upstream_calls_total", endpoint=TRIGGER, outcome="refused_locally") == 1
    assert moved("ogpanel_upstream_calls_total", endpoint=TRIGGER, outcome="rate_limited") == 0
    assert moved("ogpanel_upstream_rate_limited_total", endpoint=TRIGGER) == 0
    assert moved("ogpanel_upstream_requests_total", endpoint=TRIGGER) == 1
    assert moved("ogpanel_rate_limiter_refusals_total", kind="write") == 1


def test_every_429_the_exchange_answers_is_counted(db, basic_sim, rsa_pem, scraper, settings):
    """Two credentials of one account told apart: both bursts go out, and the exchange answers 429."""
    settings.OGPANEL_KALSHI_TIER = "basic"
    first = make_credential(basic_sim.base_url, rsa_pem, label="a", key_id=SIM_KEY_ID)
    second = make_credential(basic_sim.base_url, rsa_pem, label="b", key_id=OTHER_KEY_ID)
    second.account = "told apart"
    second.save()
    group = basic_sim.create_group(0, 10)
    before = scraper()

    def trigger(credential) -> None:
        client = exchange.client_for(credential)
        client.retries = 0
        for _ in range(15):
            try:
                client.trigger_order_group(group)
            except KalshiError:
                pass

    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(trigger, [first, second]))
    after = scraper()

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert basic_sim.rate_limited_count > 0
    assert moved("ogpanel_upstream_rate_limited_total", endpoint=TRIGGER) == basic_sim.rate_limited_count
    assert (
        moved("ogpanel_upstream_calls_total", endpoint=TRIGGER, outcome="rate_limited") == basic_sim.rate_limited_count
    )
    assert moved("ogpanel_upstream_calls_total", endpoint=TRIGGER, outcome="ok") == 30 - basic_sim.rate_limited_count


def _trip_alert(subaccount: int) -> TripAlert:
    event = audit.append(
        audit.Actor.system("exchange"),
        action="exchange_triggered",
        outcome=AuditEvent.Outcome.OBSERVED,
        subaccount=subaccount,
        order_group_id=f"og-{subaccount}",
    )
    return TripAlert.objects.create(
        event=event,
        subaccount=subaccount,
        order_group_id=f"og-{subaccount}",
        observed_at=event.at,
        next_attempt_at=event.at,
    )


@pytest.mark.django_db
def test_the_trip_watch_series_follow_what_the_watcher_recorded(scraper):
    nothing = scraper()
    assert value(nothing, "ogpanel_metrics_database_ok") == 1
    # No watcher has run: no age rather than a made-up one.
    assert not any(name == "ogpanel_watcher_last_poll_age_seconds" for name, _ in nothing)
    assert value(nothing, "ogpanel_trip_alerts_undelivered") == 0

    now = datetime.now(UTC)
    WatcherHeartbeat.objects.create(host="w1", interval_seconds=5, started_at=now - timedelta(hours=1), beat_at=now)
    WatcherStatus.objects.create(subaccount=1, last_success_at=now)
    WatcherStatus.objects.create(
        subaccount=2, last_success_at=now - timedelta(minutes=10), last_error="HTTP 500", last_error_at=now
    )
    first, second = _trip_alert(1), _trip_alert(2)
    fresh = scraper()
    assert 0 <= value(fresh, "ogpanel_watcher_last_poll_age_seconds") < 600
    assert value(fresh, "ogpanel_watcher_poll_interval_seconds") == 5
    assert value(fresh, "ogpanel_watcher_stopped") == 0
    assert value(fresh, "ogpanel_watcher_subaccount_failing", subaccount="1") == 0
    assert value(fresh, "ogpanel_watcher_subaccount_failing", subaccount="2") == 1
    assert value(fresh, "ogpanel_watcher_subaccount_last_success_age_seconds", subaccount="2") >= 600
    assert value(fresh, "ogpanel_trip_alerts_undelivered") == 2
    assert value(fresh, "ogpanel_trip_alerts_abandoned") == 0

    # An hour without a poll, one alert delivered, the other out of retries, subaccount 2 read again.
    WatcherHeartbeat.objects.filter(pk=1).update(beat_at=now - timedelta(hours=1))
    TripAlert.objects.filter(pk=first.pk).update(delivered_at=now, next_attempt_at=None)
    TripAlert.objects.filter(pk=second.pk).update(next_attempt_at=None, attempts=20)
    WatcherStatus.objects.filter(subaccount=2).update(last_success_at=now + timedelta(seconds=1))
    later = scraper()
    assert value(later, "ogpanel_watcher_last_poll_age_seconds") >= 3600
    assert value(later, "ogpanel_watcher_subaccount_failing", subaccount="2") == 0
    assert value(later, "ogpanel_trip_alerts_undelivered") == 1
    assert value(later, "ogpanel_trip_alerts_abandoned") == 1


def test_the_watchers_own_endpoint_serves_its_series_to_listed_addresses_only():
    refusing = metrics.serve("127.0.0.1:0", allowed=[ip_network("10.0.0.0/8")], token="")
    serving = metrics.serve("127.0.0.1:0", allowed=[ip_network("127.0.0.1/32")], token="")
    try:
        metrics.poll_failed(11)
        with pytest.raises(OSError, match="403"):
            urlopen(f"http://127.0.0.1:{refusing.server_port}/metrics", timeout=5)
        with urlopen(f"http://127.0.0.1:{serving.server_port}/metrics", timeout=5) as answer:
            scraped = samples(answer.read().decode())
        assert value(scraped, "ogpanel_watcher_poll_failures_total", subaccount="11") >= 1
        # The database's series are the panel's to serve, not the watcher's.
        assert not any(name.startswith("ogpanel_trip_alerts") for name, _ in scraped)
    finally:
        for server in (refusing, serving):
            server.shutdown()
            server.server_close()
