"""Alerts about requests waiting for a second person and about policy breaches, on the trip alerts' channels.

An outbox like the trip alerts' (alerts.py): `enqueue` writes a Notice in the transaction of the
audit event it announces, and `deliver_due` sends what is due through alerts.py's own webhook
and email senders, each channel marked sent on its own, retried with the same backoff. The
watcher's alert thread calls `deliver_due` next to `alerts.deliver_due`; a failure is logged
and never raises.
"""

import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings

from ogpanel import alerts
from ogpanel.models import AuditEvent, Notice

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Message:
    """What alerts.py's senders read from a trip (title, text, as_json), for a notice."""

    title: str
    text: str
    body: dict

    def as_json(self) -> dict:
        return self.body


def enqueue(event: AuditEvent, *, kind: str, subaccount: int | None, title: str, text: str, payload: dict) -> Notice:
    """Queue a notice about `event`; call it inside the event's append (audit.append's `within`)."""
    return Notice.objects.create(
        event=event,
        kind=kind,
        subaccount=subaccount,
        title=title[:300],
        text=text,
        payload={**payload, "audit_seq": event.seq},
        created_at=event.at,
        next_attempt_at=event.at,
    )


def _claim(notice: Notice, now: datetime) -> bool:
    """Take the notice for this process, so that two watchers send it once."""
    claimed = Notice.objects.filter(pk=notice.pk, next_attempt_at=notice.next_attempt_at, delivered_at=None)
    return claimed.update(next_attempt_at=now + timedelta(seconds=alerts.CLAIM_SECONDS)) == 1


def _send(channel: str, send: Callable[[_Message], None], message: _Message) -> str:
    try:
        send(message)
    except Exception as exc:  # anything a channel raises is that channel's failure, never the caller's
        return alerts._describe(channel, exc)
    return ""


def deliver(notice: Notice, now: datetime) -> bool:
    """Send what is still unsent of one notice; True once every configured channel has it."""
    message = _Message(notice.title, notice.text, notice.payload)
    errors = []
    if settings.OGPANEL_ALERT_WEBHOOK_URL and notice.webhook_sent_at is None:
        error = _send("webhook", alerts._webhook, message)
        errors += [error] if error else []
        notice.webhook_sent_at = None if error else now
    if settings.OGPANEL_ALERT_EMAILS and notice.email_sent_at is None:
        error = _send("email", alerts._email, message)
        errors += [error] if error else []
        notice.email_sent_at = None if error else now
    notice.attempts += 1
    if errors:
        notice.last_error = "; ".join(errors)
        retry = notice.attempts < alerts.MAX_ATTEMPTS
        notice.next_attempt_at = now + alerts.retry_delay(notice.attempts) if retry else None
        (logger.warning if retry else logger.error)(
            "notice %s not delivered (attempt %s): %s", notice.title, notice.attempts, notice.last_error
        )
    else:
        notice.delivered_at, notice.next_attempt_at, notice.last_error = now, None, ""
    notice.save(
        update_fields=["webhook_sent_at", "email_sent_at", "attempts", "last_error", "next_attempt_at", "delivered_at"]
    )
    return not errors


def deliver_due(*, now: datetime | None = None, limit: int = 100, kinds: Collection[str] | None = None) -> int:
    """Send every notice whose time has come (of these `kinds` only, if given); returns how many were delivered."""
    now = now or datetime.now(UTC)
    due = Notice.objects.filter(delivered_at=None, next_attempt_at__lte=now)
    if kinds is not None:
        due = due.filter(kind__in=kinds)
    return sum(deliver(notice, now) for notice in list(due.order_by("next_attempt_at")[:limit]) if _claim(notice, now))
