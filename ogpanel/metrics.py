"""Prometheus metrics: the series the panel and the watcher export, the hooks that feed them, and who may read them.

Two kinds of series:

- Counted in process, by a hook called where the thing happens: requests by view and status
  (RequestMetricsMiddleware), calls to the exchange by endpoint and outcome and its 429s (the
  client's observer, set in exchange.client_for), waits for the local rate limiter and its
  refusals (its on_wait, set in budgets.limiter_for), the watcher's failed reads, kill-switch
  sweeps running (sweeps.sweep_run) and finished (sweeps.sweep_finished).
- Read from the database at scrape time, where the state already lives (DatabaseCollector): how
  long ago the trip watch last polled, which subaccounts its last read failed on, undelivered trip
  alerts, unfinished kill-switch sweeps and what they have left. Every panel process reads the
  same rows, so these need no sharing.

Under gunicorn every worker counts its own. With PROMETHEUS_MULTIPROC_DIR set (gunicorn.conf.py
sets it) each worker writes its counts to files there and whichever worker answers /metrics adds
them all up: prometheus-client's multiprocess mode. The watcher is a process of its own and
serves its series on an address of its own (`serve`).

Importing this module imports no Django: the exchange client (ogpanel/kalshi) may call the hooks.
The database collector imports the models when it runs.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import ThreadingWSGIServer, make_wsgi_app
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIEnvironment

    from django.http import HttpRequest, HttpResponse

    from ogpanel.kalshi import CallRecord

logger = logging.getLogger(__name__)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# --- series counted in process -------------------------------------------------------------------

REQUESTS = Counter("ogpanel_http_requests", "Requests answered, by view (URL name) and status.", ["view", "status"])
REQUEST_SECONDS = Histogram(
    "ogpanel_http_request_duration_seconds", "Time from the request to the response object, by view.", ["view"]
)
UPSTREAM_CALLS = Counter(
    "ogpanel_upstream_calls",
    "Calls to the exchange's REST API by endpoint and outcome: ok, the error's kind (rate_limited for the "
    "exchange's 429, timeout, server_error, ...), or refused_locally when the local rate limiter would not send it. "
    "One per call, its retries included.",
    ["endpoint", "outcome"],
)
UPSTREAM_REQUESTS = Counter(
    "ogpanel_upstream_requests",
    "HTTP requests sent to the exchange by endpoint: every try of a call, so retries show against calls.",
    ["endpoint"],
)
UPSTREAM_SECONDS = Histogram(
    "ogpanel_upstream_call_duration_seconds",
    "Time of one call to the exchange, by endpoint: its tries and the backoff between them, "
    "not its waits for the local rate limiter (ogpanel_rate_limiter_wait_seconds).",
    ["endpoint"],
)
UPSTREAM_429 = Counter(
    "ogpanel_upstream_rate_limited", "HTTP 429 answers from the exchange by endpoint, every try's.", ["endpoint"]
)
LIMITER_WAIT = Histogram(
    "ogpanel_rate_limiter_wait_seconds",
    "Time each request let through by the local rate limiter waited for its budget first (0: none), by kind "
    "(read, write).",
    ["kind"],
    buckets=(0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
LIMITER_REFUSALS = Counter(
    "ogpanel_rate_limiter_refusals",
    "Calls the local rate limiter refused rather than wait past its limit, by kind.",
    ["kind"],
)
POLL_FAILURES = Counter(
    "ogpanel_watcher_poll_failures",
    "Reads of a subaccount by the trip watch that failed, by subaccount (the watcher's own series).",
    ["subaccount"],
)
POLL_SECONDS = Histogram(
    "ogpanel_watcher_poll_duration_seconds",
    "One trip-watch poll of every subaccount.",
    buckets=(0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)
SWEEP_SECONDS = Histogram(
    "ogpanel_sweep_duration_seconds",
    "Kill-switch sweeps from the press to their recorded result, whoever ran them, by kind (trigger, reset).",
    ["kind"],
    buckets=(1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0),
)
SWEEP_GROUPS = Counter(
    "ogpanel_sweep_groups",
    "Order groups of finished kill-switch sweeps by kind and outcome: changed (and verified), already, "
    "unverified, failed, gone, unknown (the call's answer never came), not_sent.",
    ["kind", "outcome"],
)
SWEEPS_RUNNING = Gauge(
    "ogpanel_sweeps_running",
    "Kill-switch sweeps this process (or, summed, every panel process) is running, by kind.",
    ["kind"],
    multiprocess_mode="livesum",
)

# --- hooks ---------------------------------------------------------------------------------------

# A group's id in a path, were one ever to come instead of its route: one series per group would
# grow without bound through a sweep. The templates ("{order_group_id}") and "create" stay.
_GROUP_IN_PATH = re.compile(r"(/order_groups)/(?!create(?:/|$))[^/{][^/]*")
_WORD = re.compile(r"(?<!^)(?=[A-Z])")
REFUSED_LOCALLY = "refused_locally"


def endpoint_label(method: str, route: str) -> str:
    """ "PUT /portfolio/order_groups/{order_group_id}/trigger": one label per endpoint, whatever the group."""
    template = _GROUP_IN_PATH.sub(r"\1/{order_group_id}", route.split("?", 1)[0])
    return f"{method.upper()} {template}"


def outcome_label(outcome: str) -> str:
    """ "ok", or the error's kind from its class name: "RateLimited" -> "rate_limited", "Timeout" -> "timeout"."""
    return _WORD.sub("_", outcome).lower()


def request_finished(view: str, status: int, seconds: float) -> None:
    REQUESTS.labels(view=view, status=str(status)).inc()
    REQUEST_SECONDS.labels(view=view).observe(seconds)


def exchange_call(record: CallRecord) -> None:
    """The exchange client's observer (exchange.client_for): one call, its retries included.

    A call the local rate limiter refused is its refusal, not the exchange's 429; one refused
    before any try went out took no time at the exchange either.
    """
    endpoint = endpoint_label(record.method, record.route)
    outcome = REFUSED_LOCALLY if record.refused else outcome_label(record.outcome)
    UPSTREAM_CALLS.labels(endpoint=endpoint, outcome=outcome).inc()
    if record.sent:
        UPSTREAM_REQUESTS.labels(endpoint=endpoint).inc(record.sent)
        UPSTREAM_SECONDS.labels(endpoint=endpoint).observe(max(record.seconds - record.waited, 0.0))
    if record.rate_limited:
        UPSTREAM_429.labels(endpoint=endpoint).inc(record.rate_limited)
    if record.refused:
        limiter_refused(record.kind)


def limiter_waited(kind: str, seconds: float) -> None:
    """The local rate limiter's on_wait (budgets.limiter_for): a request let through after `seconds` (0: at once)."""
    LIMITER_WAIT.labels(kind=kind).observe(seconds)


def limiter_refused(kind: str) -> None:
    LIMITER_REFUSALS.labels(kind=kind).inc()


def poll_failed(subaccount: int) -> None:
    POLL_FAILURES.labels(subaccount=str(subaccount)).inc()


def poll_finished(seconds: float) -> None:
    POLL_SECONDS.observe(seconds)


@contextmanager
def sweep(kind: str) -> Iterator[None]:
    """Around one process's run of a kill-switch sweep (a run may end before the sweep does: a lost lease)."""
    running = SWEEPS_RUNNING.labels(kind=kind)
    running.inc()
    try:
        yield
    finally:
        running.dec()


def sweep_finished(kind: str, seconds: float, groups: Mapping[str, int]) -> None:
    """A sweep's result is recorded (once, by whichever process finished it): `seconds` since the
    press, and how many of its order groups ended in each outcome."""
    SWEEP_SECONDS.labels(kind=kind).observe(seconds)
    for outcome, count in groups.items():
        SWEEP_GROUPS.labels(kind=kind, outcome=outcome).inc(count)


class RequestMetricsMiddleware:
    """Counts every response by the URL name of its view ("<unmatched>" when no URL matched) and status.

    A streamed response (the audit export) is counted when Django has it, before its body is sent.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        began = time.perf_counter()
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        view = match.view_name if match is not None and match.view_name else "<unmatched>"
        request_finished(view, response.status_code, time.perf_counter() - began)
        return response


# --- series read from the database at scrape time ------------------------------------------------


class DatabaseCollector(Collector):
    """The trip watch's state and the alert outbox, as the watcher last wrote them; sweeps left unfinished."""

    def collect(self) -> Iterable[Metric]:
        from django.db import DatabaseError

        try:
            families = list(self._families(datetime.now(UTC)))
        except DatabaseError as exc:
            # One feature lost, not the scrape: the in-process series are still served.
            logger.error("metrics: database unreadable (%s)", type(exc).__name__)
            families = []
        ok = GaugeMetricFamily("ogpanel_metrics_database_ok", "1 if this scrape could read the database.")
        ok.add_metric([], 1 if families else 0)
        return [*families, ok]

    def _families(self, now: datetime) -> Iterator[Metric]:
        from ogpanel.models import TripAlert, WatcherHeartbeat, WatcherStatus

        age = GaugeMetricFamily(
            "ogpanel_watcher_last_poll_age_seconds", "Seconds since the trip watch last finished a poll."
        )
        interval = GaugeMetricFamily("ogpanel_watcher_poll_interval_seconds", "The trip watch's polling interval.")
        stopped = GaugeMetricFamily("ogpanel_watcher_stopped", "1 if the trip watch said it stopped.")
        beat = WatcherHeartbeat.objects.filter(pk=1).first()
        if beat is not None:  # no watcher ever ran: no numbers rather than made-up ones
            age.add_metric([], (now - beat.beat_at).total_seconds())
            interval.add_metric([], beat.interval_seconds)
            stopped.add_metric([], 1 if beat.stopped_at else 0)
        yield from (age, interval, stopped)

        failing = GaugeMetricFamily(
            "ogpanel_watcher_subaccount_failing",
            "1 if the trip watch's last read of the subaccount failed (or none ever worked).",
            labels=["subaccount"],
        )
        success_age = GaugeMetricFamily(
            "ogpanel_watcher_subaccount_last_success_age_seconds",
            "Seconds since the trip watch last read the subaccount successfully.",
            labels=["subaccount"],
        )
        for status in WatcherStatus.objects.all():
            label = [str(status.subaccount)]
            last_ok = status.last_success_at
            failed = last_ok is None or (status.last_error_at is not None and status.last_error_at > last_ok)
            failing.add_metric(label, 1 if failed else 0)
            if last_ok is not None:
                success_age.add_metric(label, (now - last_ok).total_seconds())
        yield from (failing, success_age)

        undelivered = TripAlert.objects.filter(delivered_at=None)
        pending = GaugeMetricFamily("ogpanel_trip_alerts_undelivered", "Trip alerts not yet delivered everywhere.")
        pending.add_metric([], undelivered.count())
        abandoned = GaugeMetricFamily(
            "ogpanel_trip_alerts_abandoned", "Undelivered trip alerts with no retry left (see the watcher's log)."
        )
        abandoned.add_metric([], undelivered.filter(next_attempt_at=None).count())
        yield from (pending, abandoned)
        yield from self._sweeps(now)

    def _sweeps(self, now: datetime) -> Iterator[Metric]:
        """Unfinished sweeps and what they have left, whichever process runs them (or none does)."""
        from django.db.models import Count, Min

        from ogpanel.models import Sweep, SweepGroup, SweepTarget
        from ogpanel.sweeps import RESET, TRIGGER

        kinds = {TRIGGER: "trigger", RESET: "reset"}
        unfinished = GaugeMetricFamily(
            "ogpanel_sweeps_unfinished", "Kill-switch sweeps without a result yet, by kind.", labels=["kind"]
        )
        oldest = GaugeMetricFamily(
            "ogpanel_sweep_oldest_unfinished_age_seconds",
            "Seconds since the oldest unfinished kill-switch sweep was pressed, by kind.",
            labels=["kind"],
        )
        subaccounts = GaugeMetricFamily(
            "ogpanel_sweep_subaccounts_to_go",
            "Subaccounts unfinished kill-switch sweeps have not finished with, by kind.",
            labels=["kind"],
        )
        groups = GaugeMetricFamily(
            "ogpanel_sweep_groups_to_go",
            "Order groups of unfinished kill-switch sweeps still to go: not sent yet, or sent and not answered.",
            labels=["kind"],
        )
        sweeps = {
            row["action"]: row
            for row in Sweep.objects.filter(finished_at__isnull=True)
            .order_by()
            .values("action")
            .annotate(count=Count("pk"), oldest=Min("created_at"))
        }
        open_targets = dict(
            SweepTarget.objects.filter(sweep__finished_at__isnull=True, done=False)
            .order_by()
            .values_list("sweep__action")
            .annotate(count=Count("pk"))
        )
        to_go = dict(
            SweepGroup.objects.filter(
                target__sweep__finished_at__isnull=True, state__in=[SweepGroup.State.TO_GO, SweepGroup.State.SENT]
            )
            .order_by()
            .values_list("target__sweep__action")
            .annotate(count=Count("pk"))
        )
        for action, kind in kinds.items():
            row = sweeps.get(action)
            unfinished.add_metric([kind], row["count"] if row else 0)
            if row:
                oldest.add_metric([kind], (now - row["oldest"]).total_seconds())
            subaccounts.add_metric([kind], open_targets.get(action, 0))
            groups.add_metric([kind], to_go.get(action, 0))
        yield from (unfinished, oldest, subaccounts, groups)


# --- exposition and access -----------------------------------------------------------------------


class _ProcessSeries(Collector):
    """This process's series (and the default process and platform collectors)."""

    def collect(self) -> Iterable[Metric]:
        return REGISTRY.collect()


def registry(*, database: bool) -> CollectorRegistry:
    """What a scrape answers: every process's counts in multiprocess mode, else this process's; plus the database's."""
    scrape = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(scrape)  # type: ignore[no-untyped-call]
    else:
        scrape.register(_ProcessSeries())
    if database:
        scrape.register(DatabaseCollector())
    return scrape


def render(*, database: bool) -> bytes:
    return generate_latest(registry(database=database))


def access_allowed(address: str, authorization: str, *, allowed: Sequence[Network], token: str) -> bool:
    """From a listed address, or with `Authorization: Bearer <token>` when a token is configured."""
    if token and hmac.compare_digest(authorization.encode(), f"Bearer {token}".encode()):
        return True
    try:
        client = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(client in network for network in allowed)


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass  # a scrape every few seconds is not worth a log line


def serve(address: str, *, allowed: Sequence[Network], token: str) -> WSGIServer:
    """Serve this process's series at http://HOST:PORT/metrics (`address` is "host:port") in a daemon thread.

    For the watcher, which has no HTTP server of its own; the same access rule as the panel's /metrics.
    """
    host, _, port = address.rpartition(":")
    app = make_wsgi_app(registry(database=False))

    def guarded(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if not access_allowed(
            environ.get("REMOTE_ADDR", ""), environ.get("HTTP_AUTHORIZATION", ""), allowed=allowed, token=token
        ):
            start_response("403 Forbidden", [("Content-Type", "text/plain; charset=utf-8")])
            return [b"metrics: not allowed from this address\n"]
        return app(environ, start_response)

    server = make_server(host.strip("[]") or "127.0.0.1", int(port), guarded, ThreadingWSGIServer, _QuietHandler)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server
