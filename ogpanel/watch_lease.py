"""Which trip watcher leads: a lease row in the database (works on SQLite and PostgreSQL alike).

Each watcher process has a keeper thread that calls `hold` every quarter interval: the holder
renews, a standby takes the lease once it has lapsed. The lease lasts one interval, so a leader
that dies is replaced within 1.25 intervals. A leader whose loop stops making progress (hung)
stops renewing and is replaced the same way. Overlap is harmless: every recorded change and every
alert is guarded in the database (see watcher.py), leadership only saves the duplicate work.
"""

import os
import socket
import uuid
from datetime import UTC, datetime, timedelta

from django.db import IntegrityError, transaction

from ogpanel.models import WatchLease


def _now() -> datetime:
    return datetime.now(UTC)


def holder_name() -> str:
    """Unique per process start, readable by a person: host, pid and a few random letters."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"[:200]


def hold(holder: str, seconds: float, *, now: datetime | None = None) -> bool:
    """Renew or take the lease for `seconds`; False while another holder's lease is still good."""
    now = now or _now()
    until = now + timedelta(seconds=seconds)
    if WatchLease.objects.filter(pk=1, holder=holder).update(renewed_at=now, until=until):
        return True
    with transaction.atomic():
        lapsed = WatchLease.objects.select_for_update().filter(pk=1, until__lt=now).first()
        if lapsed is not None:
            # The conditional update is the claim: two standbys reading the same lapsed row, one wins.
            return bool(
                WatchLease.objects.filter(pk=1, holder=lapsed.holder, until=lapsed.until).update(
                    holder=holder,
                    since=now,
                    renewed_at=now,
                    until=until,
                    taken_from=lapsed.holder,
                    taken_from_renewed_at=lapsed.renewed_at,
                )
            )
    if WatchLease.objects.filter(pk=1).exists():
        return False
    try:
        with transaction.atomic():
            WatchLease.objects.create(pk=1, holder=holder, since=now, renewed_at=now, until=until)
    except IntegrityError:
        return False  # another watcher created it first
    return True


def release(holder: str) -> None:
    """A clean stop: let a standby take over at its next check instead of after the lease runs out."""
    WatchLease.objects.filter(pk=1, holder=holder).update(until=_now() - timedelta(microseconds=1))


def leader() -> WatchLease | None:
    return WatchLease.objects.filter(pk=1).first()
