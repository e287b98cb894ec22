"""Prometheus metrics: the series the panel and the watcher export, the hooks that feed them, and who may read them.

Two kinds of series:

- Counted in process, by a hook called where the thing happens: requests by view and status
  (RequestMetricsMiddleware), calls to the exchange by endpoint and outcome and its 429s, waits
  for the local rate limiter, the watcher's failed reads, kill-switch sweeps.
- Read from the database at scrape time, where the state already lives (DatabaseCollector): how
  long ago the trip watch last polled, which subaccounts its last read failed on, undelivered trip
  alerts. Every panel process reads the same rows, so these need no sharing.

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
from collections.abc import Callable, Iterable, Iterator, Sequence
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

logger = logging.getLogger(__name__)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# --- series counted in process -------------------------------------------------------------------

REQUESTS = Counter("ogpanel_http_requests", "Requests answered, by view (URL name) and status.", ["view", "status"])
REQUEST_SECONDS = Histogram(
    "ogpanel_http_request_duration_seconds", "Time from the request to the response object, by view.", ["view"]
)
UPSTREAM_CALLS = Counter(
    "ogpanel_upstream_calls",
    "Calls to the exchange's REST API by endpoint and outcome (ok, or the error's kind); each retry counts.",
    ["endpoint", "outcome"],
)
UPSTREAM_SECONDS = Histogram(
    "ogpanel_upstream_call_duration_seconds", "Time of one call to the exchange, by endpoint.", ["endpoint"]
)
UPSTREAM_429 = Counter("ogpanel_upstream_rate_limited", "HTTP 429 answers from the exchange by endpoint.", ["endpoint"])
LIMITER_WAIT = Histogram(
    "ogpanel_rate_limiter_wait_seconds",
    "Time a call waited for the local rate limiter's budget before it was sent, by kind (read, write).",
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
    "Kill-switch sweeps from start to end, by kind (trigger, reset).",
    ["kind"],
    buckets=(1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0),
)
SWEEP_GROUPS = Counter(
    "ogpanel_sweep_groups",
    "Order groups kill-switch sweeps have dealt with, by kind and outcome (done, failed, ...): their progress.",
    ["kind", "outcome"],
)
SWEEPS_RUNNING = Gauge(
    "ogpanel_sweeps_running", "Kill-switch sweeps under way, by kind.", ["kind"], multiprocess_mode="livesum"
)

# --- hooks ---------------------------------------------------------------------------------------

_GROUP_IN_PATH = re.compile(r"(/order_groups)/[^/]+")
_WORD = re.compile(r"(?<!^)(?=[A-Z])")


def endpoint_label(method: str, path: str) -> str:
    """ "PUT /portfolio/order_groups/{id}/trigger": one label per endpoint, whatever the group."""
    template = _GROUP_IN_PATH.sub(r"\1/{id}", path.split("?", 1)[0])
    return f"{method.upper()} {template}"


def outcome_label(error: BaseException | None) -> str:
    """ "ok", or the error's kind from its class: RateLimited -> "rate_limited", Timeout -> "timeout"."""
    return "ok" if error is None else _WORD.sub("_", type(error).__name__).lower()


def request_finished(view: str, status: int, seconds: float) -> None:
    REQUESTS.labels(view=view, status=str(status)).inc()
    REQUEST_SECONDS.labels(view=view).observe(seconds)


def upstream_call(method: str, path: str, *, status: int | None, error: BaseException | None, seconds: float) -> None:
    """One HTTP exchange with the exchange (an attempt: a retried call reports each try).

    `path` is the API path the client signed, without the base URL's; `status` is None when no
    answer came (timeout, refused connection).
    """
    endpoint = endpoint_label(method, path)
    UPSTREAM_CALLS.labels(endpoint=endpoint, outcome=outcome_label(error)).inc()
    UPSTREAM_SECONDS.labels(endpoint=endpoint).observe(seconds)
    if status == 429:
        UPSTREAM_429.labels(endpoint=endpoint).inc()


def limiter_waited(kind: str, seconds: float) -> None:
    """The local rate limiter let a call through after `seconds` (0 when the budget had room)."""
    LIMITER_WAIT.labels(kind=kind).observe(seconds)


def limiter_refused(kind: str) -> None:
    LIMITER_REFUSALS.labels(kind=kind).inc()


def poll_failed(subaccount: int) -> None:
    POLL_FAILURES.labels(subaccount=str(subaccount)).inc()


def poll_finished(seconds: float) -> None:
    POLL_SECONDS.observe(seconds)


@contextmanager
def sweep(kind: str) -> Iterator[None]:
    """Around a whole kill-switch sweep: counts it as running, then records how long it took."""
    running = SWEEPS_RUNNING.labels(kind=kind)
    running.inc()
    began = time.monotonic()
    try:
        yield
    finally:
        running.dec()
        SWEEP_SECONDS.labels(kind=kind).observe(time.monotonic() - began)


def sweep_group(kind: str, outcome: str) -> None:
    """A sweep is done with one order group: `outcome` is "done", "failed", or the sweep's own word."""
    SWEEP_GROUPS.labels(kind=kind, outcome=outcome).inc()


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
    """The trip watch's state and the alert outbox, as the watcher last wrote them."""

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
