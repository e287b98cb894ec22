"""Trip alerts: a webhook and email for each order group that trips at the exchange.

The watcher writes one TripAlert per trip in the same transaction as the audit event that
records the trip (the outbox), then calls `deliver_due()`. Each channel (webhook, email) is
marked sent on its own, so a retry after a half failure sends only what is missing; a failure
is logged and retried with backoff and never raises into the watcher. A restarted watcher
sends only what is still undelivered.
"""

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

import requests
from django.conf import settings
from django.core.mail import EmailMessage
from django.urls import reverse

from ogpanel.models import Subaccount, TripAlert

logger = logging.getLogger(__name__)

RETRY_FIRST_SECONDS = 15
RETRY_MAX_SECONDS = 15 * 60
MAX_ATTEMPTS = 20  # about four hours of retries; then the row keeps its last error and waits for a person
# A claimed alert is not picked up by another watcher for this long; longer than one delivery can take.
CLAIM_SECONDS = 120
WEBHOOK_TIMEOUT = (3.0, 10.0)  # connect, read


@dataclass(frozen=True)
class Trip:
    """What an alert says about one trip, in both channels."""

    subaccount: int
    label: str
    order_group_id: str
    contracts_limit: int | None
    observed_at: datetime
    environment: str
    audit_seq: int
    url: str

    @property
    def title(self) -> str:
        where = f"subaccount {self.subaccount}" + (f" ({self.label})" if self.label else "")
        return f"Order group {self.order_group_id} on {where} tripped"

    @property
    def text(self) -> str:
        limit = "unknown" if self.contracts_limit is None else f"{self.contracts_limit} contracts"
        lines = [
            f"{self.title} at the exchange (observed {self.observed_at:%Y-%m-%d %H:%M:%S} UTC, limit {limit}).",
            "The exchange cancelled the group's resting orders and rejects new ones until someone resets it.",
            f"Audit event #{self.audit_seq}.",
        ]
        if self.url:
            lines.append(self.url)
        return "\n".join(lines)

    def as_json(self) -> dict:
        return {
            "event": "order_group_tripped",
            "subaccount": self.subaccount,
            "subaccount_label": self.label,
            "order_group_id": self.order_group_id,
            "contracts_limit": self.contracts_limit,
            "observed_at": self.observed_at.astimezone(UTC).isoformat(),
            "environment": self.environment,
            "audit_seq": self.audit_seq,
            "url": self.url or None,
        }


def _trip(alert: TripAlert) -> Trip:
    label = Subaccount.objects.filter(number=alert.subaccount).values_list("label", flat=True).first() or ""
    path = reverse("group_detail", args=[alert.subaccount, alert.order_group_id])
    public = settings.OGPANEL_PUBLIC_URL.rstrip("/")
    return Trip(
        alert.subaccount,
        label,
        alert.order_group_id,
        alert.contracts_limit,
        alert.observed_at,
        alert.event.environment,
        alert.event.seq,
        public + path if public else "",
    )


class Message(Protocol):
    """What the channels send: a trip, or a notice (notices.py)."""

    @property
    def title(self) -> str: ...

    @property
    def text(self) -> str: ...

    def as_json(self) -> dict: ...


def _webhook(trip: Message) -> None:
    body = {"text": trip.text} if settings.OGPANEL_ALERT_WEBHOOK_FORMAT == "slack" else trip.as_json()
    # No redirects: the URL is often a secret (Slack's is) and must be the only place the alert goes.
    response = requests.post(
        settings.OGPANEL_ALERT_WEBHOOK_URL, json=body, timeout=WEBHOOK_TIMEOUT, allow_redirects=False
    )
    if not 200 <= response.status_code < 300:
        raise DeliveryError(f"webhook answered HTTP {response.status_code}")


def _email(trip: Message) -> None:
    EmailMessage(f"[ogpanel] {trip.title}", trip.text, to=settings.OGPANEL_ALERT_EMAILS).send()


class DeliveryError(Exception):
    pass


def _describe(channel: str, exc: Exception) -> str:
    # A requests error names the URL, and a webhook URL is a secret: keep only the kind of failure.
    if isinstance(exc, DeliveryError):
        return str(exc)
    if isinstance(exc, requests.RequestException):
        return f"{channel}: {type(exc).__name__}"
    return f"{channel}: {type(exc).__name__}: {str(exc)[:200]}"


def retry_delay(attempts: int) -> timedelta:
    return timedelta(seconds=min(RETRY_FIRST_SECONDS * 2 ** (attempts - 1), RETRY_MAX_SECONDS))


def _claim(alert: TripAlert, now: datetime) -> bool:
    """Take the alert for this process: with two watchers running, each alert still goes out once."""
    claimed = TripAlert.objects.filter(pk=alert.pk, next_attempt_at=alert.next_attempt_at, delivered_at=None)
    return claimed.update(next_attempt_at=now + timedelta(seconds=CLAIM_SECONDS)) == 1


def deliver(alert: TripAlert, now: datetime) -> bool:
    """Send what is still unsent of one alert; True once every configured channel has it."""
    trip = _trip(alert)
    errors = []
    if settings.OGPANEL_ALERT_WEBHOOK_URL and alert.webhook_sent_at is None:
        try:
            _webhook(trip)
        except Exception as exc:  # anything a channel raises is that channel's failure, never the watcher's
            errors.append(_describe("webhook", exc))
        else:
            alert.webhook_sent_at = now
    if settings.OGPANEL_ALERT_EMAILS and alert.email_sent_at is None:
        try:
            _email(trip)
        except Exception as exc:
            errors.append(_describe("email", exc))
        else:
            alert.email_sent_at = now
    alert.attempts += 1
    if errors:
        alert.last_error = "; ".join(errors)
        alert.next_attempt_at = now + retry_delay(alert.attempts) if alert.attempts < MAX_ATTEMPTS else None
        log = logger.warning if alert.next_attempt_at else logger.error
        log(
            "trip alert for %s on subaccount %s not delivered (attempt %s%s): %s",
            alert.order_group_id,
            alert.subaccount,
            alert.attempts,
            "" if alert.next_attempt_at else ", giving up",
            alert.last_error,
        )
    else:
        alert.delivered_at, alert.next_attempt_at, alert.last_error = now, None, ""
    alert.save(
        update_fields=["webhook_sent_at", "email_sent_at", "attempts", "last_error", "next_attempt_at", "delivered_at"]
    )
    return not errors


def deliver_due(*, now: datetime | None = None, limit: int = 100) -> int:
    """Send every alert whose time has come; returns how many were fully delivered."""
    now = now or datetime.now(UTC)
    due = (
        TripAlert.objects.filter(delivered_at=None, next_attempt_at__lte=now)
        .select_related("event")
        .order_by("next_attempt_at")[:limit]
    )
    return sum(deliver(alert, now) for alert in list(due) if _claim(alert, now))


def recent_trips(subaccounts: list[int], *, now: datetime | None = None) -> list[TripAlert]:
    """Trips observed in the last OGPANEL_TRIP_BANNER_MINUTES on these subaccounts, newest first."""
    since = (now or datetime.now(UTC)) - timedelta(minutes=settings.OGPANEL_TRIP_BANNER_MINUTES)
    return list(TripAlert.objects.filter(subaccount__in=subaccounts, observed_at__gte=since).order_by("-observed_at"))
