"""A dead or stuck trip watch is an alert, raised by whoever notices: a standby watcher, a probe.

The trip watch is down when no watcher has beaten for OGPANEL_WATCH_DOWN_SECONDS, or when
every subaccount read has failed for that long. `check` compares that with what was last
announced (the WatchOutage row) and announces the difference: one "trip_watch_down" audit event
with its notice ("trip watch is down since ..."), later one "trip_watch_recovered". The
announcement moves the row in the event's own transaction, conditionally, so however many
processes check at once, each outage is announced once and its recovery once.
"""

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from django.conf import settings
from django.db import IntegrityError, transaction

from ogpanel import audit, notices
from ogpanel.audit import Actor
from ogpanel.models import AuditEvent, WatcherHeartbeat, WatcherStatus, WatchOutage

logger = logging.getLogger("ogpanel.watcher")

DOWN, RECOVERED = "trip_watch_down", "trip_watch_recovered"
KINDS = (DOWN, RECOVERED)  # the notices a standby sends itself: the leader may be the one that is down
WATCH = Actor.system("trip-watch")


class _AlreadyAnnounced(Exception):
    pass


@dataclass(frozen=True)
class Outage:
    since: datetime
    reason: str


def _now() -> datetime:
    return datetime.now(UTC)


def _failing(status: WatcherStatus) -> bool:
    return status.last_error_at is not None and (
        status.last_success_at is None or status.last_error_at > status.last_success_at
    )


def outage(*, now: datetime | None = None, after: float | None = None) -> Outage | None:
    """Is the trip watch down now, and since when? None: up, or never ran (nothing to watch yet)."""
    now = now or _now()
    after = settings.OGPANEL_WATCH_DOWN_SECONDS if after is None else after
    beat = WatcherHeartbeat.objects.filter(pk=1).first()
    if beat is None:
        return None
    found = []
    statuses = list(WatcherStatus.objects.all())
    if statuses and all(_failing(status) for status in statuses):
        successes = [status.last_success_at for status in statuses if status.last_success_at is not None]
        found.append(
            Outage(max(successes) if successes else beat.started_at, "every subaccount read has failed since then")
        )
    found.append(Outage(beat.beat_at, "no trip watcher has run since then"))
    down = [one for one in found if (now - one.since).total_seconds() > after]
    return min(down, key=lambda one: one.since) if down else None


def _row() -> WatchOutage:
    try:
        with transaction.atomic():
            row, _ = WatchOutage.objects.get_or_create(pk=1)
    except IntegrityError:  # another process created it between our look and our insert
        row = WatchOutage.objects.get(pk=1)
    return row


def check(*, now: datetime | None = None) -> str | None:
    """Announce a new outage or a recovery; returns the action announced (or None: nothing new)."""
    now = now or _now()
    down = outage(now=now)
    announced = _row().down_since
    try:
        if down is not None and announced is None:
            _announce_down(down, now)
            return DOWN
        if down is None and announced is not None:
            _announce_recovered(announced, now)
            return RECOVERED
    except _AlreadyAnnounced:
        pass
    return None


def _when(at: datetime) -> str:
    return f"{at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"


def _announce_down(down: Outage, now: datetime) -> None:
    title = f"Trip watch is down since {_when(down.since)}"
    text = (
        f"{title}: {down.reason}. Trips at the exchange are not being noticed or alerted until it is back.\n"
        "Check the watcher processes (manage.py watch_order_groups) and /healthz/watcher."
    )

    def within(event: AuditEvent) -> None:
        if not WatchOutage.objects.filter(pk=1, down_since__isnull=True).update(
            down_since=down.since, announced_at=now
        ):
            raise _AlreadyAnnounced
        notices.enqueue(
            event,
            kind=DOWN,
            subaccount=None,
            title=title,
            text=text,
            payload={"event": DOWN, "down_since": down.since.isoformat(), "reason": down.reason},
        )

    audit.append(
        WATCH,
        action=DOWN,
        outcome=AuditEvent.Outcome.OBSERVED,
        params={"down_since": down.since.isoformat(), "reason": down.reason},
        within=within,
    )
    logger.error("trip watch: %s (%s)", title, down.reason)


def _announce_recovered(since: datetime, now: datetime) -> None:
    minutes = max(1, round((now - since).total_seconds() / 60))
    title = f"Trip watch recovered (down since {_when(since)}, about {minutes} min)"
    text = f"{title}. Trips are noticed and alerted again; ones during the outage are reported as the watcher reads."

    def within(event: AuditEvent) -> None:
        if not WatchOutage.objects.filter(pk=1, down_since=since).update(down_since=None, announced_at=now):
            raise _AlreadyAnnounced
        notices.enqueue(
            event,
            kind=RECOVERED,
            subaccount=None,
            title=title,
            text=text,
            payload={"event": RECOVERED, "down_since": since.isoformat(), "recovered_at": now.isoformat()},
        )

    audit.append(
        WATCH,
        action=RECOVERED,
        outcome=AuditEvent.Outcome.OBSERVED,
        params={"down_since": since.isoformat()},
        within=within,
    )
    logger.warning("trip watch: %s", title)
