"""Live dashboards: a change stamp an open page checks every OGPANEL_LIVE_SECONDS, and what a refresh must re-read.

The stamp condenses what the trip watch can change on a user's dashboard: the newest audit event
on the subaccounts they may see (an exchange_* event the watcher records, a panel action), the
watch's state and streams, and per visible subaccount whether the watch reads it. It is a short
hash, so it says nothing about subaccounts outside the user's scope, and costs a few small
queries: the page fetches the table (~145 kB on a full book) only when the stamp changed.

A refresh after a change must not show the listing from before it: `listing_floors` gives, per
subaccount, the time of the newest change recorded there, and a shared listing read before that
is read again (selectors.listings' `newer_than`). For a change the watcher saw, that is the time
of the watcher's own read (its event's `observed_at`), so the listing it shared already counts.
"""

import hashlib
import json
from collections.abc import Collection
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db.models import Max

from ogpanel import selectors
from ogpanel.dashboard import watch_is_stale
from ogpanel.models import AuditEvent
from ogpanel.watch_health import WatchHealth, watch_health

# Only events this recent are looked at: the query walks the `at` index over a few minutes, not
# the whole log. The newest one leaving the window changes the stamp once: one extra fetch.
RECENT = timedelta(minutes=10)


def stamp(numbers: Collection[int], *, watch: WatchHealth | None = None, now: datetime | None = None) -> str:
    """What an open dashboard showing these subaccounts depends on, as 16 hex digits (`watch`: if already read)."""
    now = now or datetime.now(UTC)
    newest = AuditEvent.objects.filter(subaccount__in=list(numbers), at__gte=now - RECENT).aggregate(Max("seq"))
    watch = watch or watch_health(now=now)
    reads = sorted(
        (number, watched.ok, watch_is_stale(watched))
        for number, watched in watch.subaccounts.items()
        if number in numbers
    )
    parts = [newest["seq__max"], watch.state, watch.streams_text, reads]
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:16]


def listing_floors(numbers: Collection[int], *, now: datetime | None = None) -> dict[int, datetime]:
    """Per subaccount, when its newest change was read (watcher) or made (panel).

    Only changes younger than the oldest listing the dashboard may show (selectors.STALE_FOR
    lifetimes past fresh) can be newer than a shared listing.
    """
    since = (now or datetime.now(UTC)) - timedelta(
        seconds=settings.OGPANEL_LIST_CACHE_SECONDS * (1 + selectors.STALE_FOR) + 1
    )
    floors: dict[int, datetime] = {}
    recent = AuditEvent.objects.filter(subaccount__in=list(numbers), at__gt=since).values_list(
        "subaccount", "at", "params"
    )
    for number, at, params in recent:
        if number is None:
            continue
        seen = _observed_at(params) or at
        if number not in floors or seen > floors[number]:
            floors[number] = seen
    return floors


def _observed_at(params: object) -> datetime | None:
    """The watcher's read time an exchange_* event carries; None for other events (or one without it)."""
    raw = params.get("observed_at") if isinstance(params, dict) else None
    if not isinstance(raw, str):
        return None
    try:
        seen = datetime.fromisoformat(raw)
    except ValueError:
        return None
    return seen if seen.tzinfo else seen.replace(tzinfo=UTC)
