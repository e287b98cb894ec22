"""Reads: subaccounts a user may see, and order groups fetched from the exchange.

The dashboard lists every subaccount concurrently. A subaccount's listing is shared between
viewers (and panel processes) through Django's cache for OGPANEL_LIST_CACHE_SECONDS, with a
short lock so that a crowd arriving at once causes one upstream read, not one each. Worker
threads only talk HTTP and the cache; database reads happen before the fan-out.

The dashboard may show a listing up to STALE_FOR more lifetimes old while it is read again in
the background: its polls then never wait for the exchange or the rate limiter (the first read
of a subaccount, and the read after a change, still wait). Every other caller waits for a fresh one.

Worker threads are the panel's scarcest resource: while the exchange hangs, every dashboard that
waits on it holds one for a whole read timeout, and the pages that need no exchange (the kill
switch form, the audit log) queue behind them. So only DASHBOARD_WAITERS dashboard requests per
process wait on upstream reads at a time; the others answer at once, each missing listing marked
as still being read (error_kind "Pending") and read in the background for the next refresh.

The cache is sharedcache's: with Redis down, listings are shared within this process only.
"""

import logging
import threading
import time
from collections.abc import Mapping
from concurrent import futures
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

from django.conf import settings

from ogpanel import permissions
from ogpanel.exchange import client_for
from ogpanel.kalshi import KalshiError, OrderGroup, OrderGroupDetail
from ogpanel.models import Subaccount
from ogpanel.sharedcache import cache

FAN_OUT_WORKERS = 34  # one per subaccount (0..32) plus room, so no listing waits for another
STALE_FOR = 2  # lifetimes (OGPANEL_LIST_CACHE_SECONDS) a listing is kept past fresh, for stale_ok readers
DASHBOARD_WAITERS = 1  # dashboard requests per process that may wait on upstream reads at once
PENDING = "the exchange has not answered yet; it shows at a later refresh."

logger = logging.getLogger(__name__)
# Long-lived threads for background re-reads: each keeps its cache connection from one read to the next.
_refresher = ThreadPoolExecutor(max_workers=8, thread_name_prefix="ogpanel-listing")
# The fan-out's threads, kept from one dashboard to the next: starting 33 threads cost each poll ~7%
# of its CPU, and a kept thread keeps its cache connection. Room for two fan-outs at once; more queue.
_fan_out = ThreadPoolExecutor(max_workers=2 * FAN_OUT_WORKERS, thread_name_prefix="ogpanel-fan-out")
_dashboard_waiters = threading.BoundedSemaphore(DASHBOARD_WAITERS)


@dataclass(frozen=True)
class Listing:
    """One subaccount's order groups as last read, or why they could not be read."""

    subaccount: int
    label: str
    groups: tuple[OrderGroup, ...] = ()
    error: str = ""
    error_kind: str = ""
    latency_ms: int | None = None
    fetched_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def ok(self) -> bool:
        return not self.error

    @property
    def triggered_count(self) -> int:
        return sum(group.triggered for group in self.groups)


def subaccounts_for(user: permissions.AnyUser) -> list[Subaccount]:
    """Configured subaccounts the user may see, with their credentials loaded."""
    numbers = permissions.visible(user, Subaccount.objects.values_list("number", flat=True))
    return list(Subaccount.objects.filter(number__in=numbers).select_related("credential").order_by("number"))


def subaccount_for(user: permissions.AnyUser, number: int) -> Subaccount | None:
    """The subaccount if it is configured and the user may see it; None reveals neither."""
    if not permissions.can(user, permissions.Action.VIEW, number):
        return None
    return Subaccount.objects.filter(number=number).select_related("credential").first()


def _cache_key(subaccount: Subaccount) -> str:
    return f"ogpanel:listing:{subaccount.credential_id}:{subaccount.number}"


def forget_listing(subaccount: Subaccount) -> None:
    """Drop the shared listing after a change, so the next read shows it."""
    cache.delete(_cache_key(subaccount))


def _fetch(subaccount: Subaccount) -> Listing:
    began = time.monotonic()
    try:
        groups = client_for(subaccount.credential).list_order_groups(subaccount=subaccount.number)
    except KalshiError as exc:
        return Listing(
            subaccount.number,
            subaccount.label,
            error=exc.operator_message,
            error_kind=type(exc).__name__,
            latency_ms=round((time.monotonic() - began) * 1000),
        )
    return Listing(
        subaccount.number, subaccount.label, tuple(groups), latency_ms=round((time.monotonic() - began) * 1000)
    )


def _is_fresh(listing: Listing | None, floor: datetime | None = None) -> bool:
    if listing is None or (floor is not None and listing.fetched_at < floor):
        return False
    age = datetime.now(UTC) - listing.fetched_at
    return age.total_seconds() < settings.OGPANEL_LIST_CACHE_SECONDS


def _shared_listing(subaccount: Subaccount, fresh: bool, floor: datetime | None = None) -> Listing:
    key = _cache_key(subaccount)
    # With sharing switched off there is nothing to wait for: a waiter would poll for a listing
    # that is never stored and sit out the whole lock wait.
    if not fresh and settings.OGPANEL_LIST_CACHE_SECONDS > 0:
        listing = cache.get(key)
        if _is_fresh(listing, floor):
            return listing
        # Someone else is fetching this subaccount right now: wait for their answer briefly.
        lock_wait = settings.OGPANEL_CONNECT_TIMEOUT + settings.OGPANEL_READ_TIMEOUT
        if not cache.add(key + ":lock", 1, timeout=lock_wait):
            deadline = time.monotonic() + lock_wait
            while time.monotonic() < deadline:
                time.sleep(0.02)
                listing = cache.get(key)
                if _is_fresh(listing, floor):
                    return listing
        try:
            return _fetch_and_share(subaccount, key)
        finally:
            cache.delete(key + ":lock")
    return _fetch_and_share(subaccount, key)


def _fetch_and_share(subaccount: Subaccount, key: str) -> Listing:
    listing = _fetch(subaccount)
    if settings.OGPANEL_LIST_CACHE_SECONDS > 0:
        cache.set(key, listing, timeout=settings.OGPANEL_LIST_CACHE_SECONDS * (1 + STALE_FOR))
    return listing


def _refresh_later(subaccount: Subaccount) -> None:
    """Read the subaccount again in the background, unless some process already is."""
    key = _cache_key(subaccount)
    if cache.add(key + ":lock", 1, timeout=settings.OGPANEL_CONNECT_TIMEOUT + settings.OGPANEL_READ_TIMEOUT):
        _refresher.submit(_refresh, subaccount, key)


def _refresh(subaccount: Subaccount, key: str) -> None:
    try:
        _fetch_and_share(subaccount, key)
    except Exception:  # nobody waits on this thread to hear about it
        logger.exception("re-reading subaccount %s in the background failed", subaccount.number)
    finally:
        cache.delete(key + ":lock")


def listing(subaccount: Subaccount, *, fresh: bool = False) -> Listing:
    """One subaccount's order groups, for a caller running its own fan-out (the kill switch)."""
    return _shared_listing(subaccount, fresh)


def listings(
    subaccounts: list[Subaccount],
    *,
    fresh: bool = False,
    stale_ok: bool = False,
    wait: float | None = None,
    newer_than: Mapping[int, datetime] | None = None,
) -> list[Listing]:
    """Every subaccount's order groups, fetched concurrently; one failure never hides the others.

    `stale_ok`: a listing past its lifetime (but within STALE_FOR more) is returned as it is and
    read again in the background. `wait`: at most this many seconds for the reads; one still out
    then is marked as still being read (and, finished, shared for the next caller). `newer_than`:
    per subaccount, a shared listing read before this time is read again (a change was recorded
    since, live.listing_floors); while that read is out, the older listing stands in for it.
    """
    floors = newer_than or {}
    if not subaccounts:
        return []
    # Usually every listing is already shared: one cache round trip, no threads. A thread of its
    # own opens its own cache connection, which under load costs more than the read it serves.
    shared = {}
    outdated = {}  # read before a change recorded since: shown only if the new read is not back in time
    if not fresh and settings.OGPANEL_LIST_CACHE_SECONDS > 0:
        found = cache.get_many([_cache_key(sub) for sub in subaccounts])
        for sub in subaccounts:
            cached = found.get(_cache_key(sub))
            floor = floors.get(sub.number)
            if cached is not None and floor is not None and cached.fetched_at < floor:
                outdated[_cache_key(sub)] = cached  # read again now, never merely in the background
            elif _is_fresh(cached):
                shared[_cache_key(sub)] = cached
            elif cached is not None and stale_ok:
                shared[_cache_key(sub)] = cached
                _refresh_later(sub)
    missing = [sub for sub in subaccounts if _cache_key(sub) not in shared]

    def still_out(sub: Subaccount) -> Listing:
        """What stands in for a read not back yet: the outdated listing if there is one, else "being read"."""
        return outdated.get(_cache_key(sub)) or Listing(sub.number, sub.label, error=PENDING, error_kind="Pending")

    if not missing:
        return [shared[_cache_key(sub)] for sub in subaccounts]
    if stale_ok and not _dashboard_waiters.acquire(blocking=False):
        # Another dashboard of this process is already waiting on the exchange: do not hold a
        # second worker thread too. What is missing is read in the background for the next poll.
        for sub in missing:
            _refresh_later(sub)
            shared[_cache_key(sub)] = still_out(sub)
        return [shared[_cache_key(sub)] for sub in subaccounts]
    try:
        reads = {sub: _fan_out.submit(_shared_listing, sub, fresh, floors.get(sub.number)) for sub in missing}
        futures.wait(reads.values(), timeout=wait)
        for sub, read in reads.items():
            shared[_cache_key(sub)] = read.result() if read.done() else still_out(sub)
    finally:
        if stale_ok:
            _dashboard_waiters.release()
    return [shared[_cache_key(sub)] for sub in subaccounts]


def order_group_detail(subaccount: Subaccount, order_group_id: str) -> OrderGroupDetail:
    """GET /portfolio/order_groups/{id} on the group's own subaccount (raises KalshiError)."""
    return client_for(subaccount.credential).get_order_group(order_group_id, subaccount=subaccount.number)


def find_group(listing: Listing, order_group_id: str) -> OrderGroup | None:
    return next((group for group in listing.groups if group.id == order_group_id), None)
