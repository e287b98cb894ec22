"""Recording what one read of one subaccount showed: its baseline, each change, a failure.

Each change is appended to the audit log as the exchange's, with the new state (and a trip's
alert) in the same transaction: a change another watcher recorded first rolls back (the state
no longer matches), so with two watchers, or one restarted, nothing is reported twice.
"""

import logging
from datetime import UTC, datetime
from typing import Any

from django.db import DatabaseError, connection, transaction
from django.db.models import F

from ogpanel import audit, metrics, selectors
from ogpanel.audit import Actor, AlreadyRecorded
from ogpanel.models import AuditEvent, ObservedGroup, Subaccount, TripAlert, WatcherStatus
from ogpanel.watch_changes import Change, move

logger = logging.getLogger("ogpanel.watcher")

EXCHANGE = Actor.system("exchange")
BASELINE_IDS_KEPT = 100  # triggered group ids listed in a baseline event; the count is always exact


def _now() -> datetime:
    return datetime.now(UTC)


def baseline(sub: Subaccount, listing: selectors.Listing, read_at: datetime) -> bool:
    """The first read of a subaccount (or with another credential): its state as it is, no alerts.

    False when another watcher recorded it first.
    """
    triggered = [group.id for group in listing.groups if group.triggered]

    def within(event: AuditEvent) -> None:
        done = WatcherStatus.objects.filter(
            subaccount=sub.number, credential_id=sub.credential_id, last_success_at__isnull=False
        )
        if done.exists():
            raise AlreadyRecorded
        ObservedGroup.objects.filter(subaccount=sub.number).delete()
        ObservedGroup.objects.bulk_create(
            ObservedGroup(
                subaccount=sub.number,
                order_group_id=group.id,
                contracts_limit=group.contracts_limit,
                triggered=group.triggered,
                first_seen=read_at,
                last_seen=read_at,
            )
            for group in listing.groups
        )
        WatcherStatus.objects.update_or_create(
            subaccount=sub.number,
            defaults={"credential_id": sub.credential_id, "last_success_at": listing.fetched_at},
        )

    params = {
        "observed_at": listing.fetched_at.isoformat(),
        "groups": len(listing.groups),
        "triggered_count": len(triggered),
        "triggered": triggered[:BASELINE_IDS_KEPT],
    }
    if not audit.observe(EXCHANGE, sub, action="exchange_baseline", params=params, within=within):
        return False
    logger.info(
        "trip watch: baseline of subaccount %s: %s groups, %s triggered",
        sub.number,
        len(listing.groups),
        len(triggered),
    )
    return True


def report(sub: Subaccount, change: Change, observed_at: datetime, read_at: datetime, via: str) -> None:
    """Append the change as the exchange's, with the new state (and a trip's alert) in the same transaction."""

    def within(event: AuditEvent) -> None:
        move(change, read_at)
        if change.kind == "triggered":
            TripAlert.objects.create(
                event=event,
                subaccount=change.subaccount,
                order_group_id=change.order_group_id,
                contracts_limit=change.contracts_limit,
                observed_at=observed_at,
                next_attempt_at=event.at,
            )

    params: dict[str, Any] = {
        "observed_at": observed_at.isoformat(),
        "via": via,
        "contracts_limit": change.contracts_limit,
    }
    if change.kind == "limit_updated":
        params["previous_limit"] = change.previous_limit
    if not audit.observe(
        EXCHANGE, sub, action=change.action, order_group_id=change.order_group_id, params=params, within=within
    ):
        return
    log = logger.warning if change.kind == "triggered" else logger.info
    log(
        "trip watch: order group %s on subaccount %s %s at the exchange",
        change.order_group_id,
        change.subaccount,
        change.kind.replace("_", " "),
    )


def recovered(status: WatcherStatus) -> bool:
    """The last read succeeded (or nothing failed yet)."""
    return status.last_error_at is None or (
        status.last_success_at is not None and status.last_success_at >= status.last_error_at
    )


def record_quietly(change: Change, read_at: datetime) -> None:
    """The panel made this change and audited it already: only the state moves."""
    try:
        with transaction.atomic():
            move(change, read_at)
    except AlreadyRecorded:
        pass


def record_failure(sub: Subaccount, exc: Exception) -> None:
    """Log, count and show an unexpected error recording one subaccount; never raises itself."""
    logger.error(
        "trip watch: recording subaccount %s failed; it alone loses this round and is read again next time",
        sub.number,
        exc_info=exc,
    )
    metrics.poll_failed(sub.number)
    # The type only: an exception's text may carry anything, and the status line is shown to every viewer.
    error, now = f"Recording failed: {type(exc).__name__}", _now()
    try:
        counted = WatcherStatus.objects.filter(subaccount=sub.number).update(
            record_failures=F("record_failures") + 1, last_error=error, last_error_at=now
        )
        if not counted:
            WatcherStatus.objects.create(subaccount=sub.number, record_failures=1, last_error=error, last_error_at=now)
    except DatabaseError:
        logger.exception("trip watch: could not record the failure of subaccount %s either", sub.number)
        connection.close()
