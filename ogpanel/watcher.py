"""The trip watch: notice order-group changes made outside the panel, record them, alert on trips.

Every OGPANEL_WATCH_SECONDS the watcher reads every configured subaccount through
`selectors.listings` (the dashboard's shared cached reads, so a watcher and a room full of
dashboards cost one upstream read, inside the same rate budget) and compares each listing with
the state it recorded last (ObservedGroup). Each difference the panel did not make (created,
triggered, reset, deleted, limit_updated) is appended to the audit log as "exchange_<kind>"
from the actor "exchange", in one transaction with the new state, so a restarted watcher never
reports it again. A trip (not triggered -> triggered without a panel trigger) also writes a
TripAlert in that transaction; the watcher's alert thread sends it (alerts.deliver_due) at once,
so a slow webhook never holds up the polls.

Where the exchange's WebSocket is available, a thread per credential follows
order_group_updates (watch_stream.py). An update, a reconnect or a gap makes the watcher read
the affected subaccounts again, fresh: the listing stays the source of events, and polling the
safety net for anything missed while disconnected. The kinds of the updates heard before a read
fill in what a difference cannot show: a group reset and tripped again between two reads
(watch_changes.py).

Two or more watchers may run: the one holding the lease (watch_lease.py) polls, records and
sends; the others stand by, take over within two intervals when it dies or hangs, and announce
an outage that lasts OGPANEL_WATCH_DOWN_SECONDS (watch_outage.py). An unexpected error while
recording one subaccount costs that subaccount alone its round: logged with its traceback,
counted on its status line (record_failures) and in /healthz.

Which changes the panel made (watch_changes.panel_made): one its own audit log shows succeeding
(trigger, reset, delete, update_limit, create) after the last read that still showed the old
state. While such a panel call is still under way the group is left alone and decided at the
next poll. A trip caused by
the panel lowering a limit below the current volume is the exchange's trigger and is reported.

The first successful read of a subaccount (or after it is mapped to another credential) is a
baseline: one "exchange_baseline" event listing the groups already triggered, and no alerts,
because when those trips happened is unknown.
"""

import logging
import threading
import time
from collections.abc import Callable, Collection, Iterable
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import DatabaseError, connection, transaction

from ogpanel import (
    alerts,
    approvals,
    breaches,
    checkpoints,
    metrics,
    notices,
    selectors,
    watch_lease,
    watch_outage,
    watch_reads,
)
from ogpanel.kalshi import OrderGroupUpdate
from ogpanel.models import Credential, ObservedGroup, Subaccount, WatcherHeartbeat, WatcherStatus
from ogpanel.watch_changes import Change, changes_between, panel_made
from ogpanel.watch_health import stale_after
from ogpanel.watch_stream import Follower, version

logger = logging.getLogger(__name__)

# At most this often a fresh read for the stream, however chatty it is: a kill switch publishes a burst.
STREAM_WAKE_GAP = 0.5
STOP_CHECK_SECONDS = 0.25
ALERT_CHECK_SECONDS = 1.0  # retries come due between polls too
OUTAGE_CHECK_SECONDS = 1.0
HEARD_KEPT = timedelta(minutes=10)  # a stream update no read of its subaccount used by then is dropped


def _now() -> datetime:
    return datetime.now(UTC)


def lease_period(interval: float) -> float:
    """How often a watcher renews (or tries to take) the lease: a quarter interval, within reason."""
    return min(max(interval / 4, 0.1), 2.0)


def lease_seconds(interval: float) -> float:
    """How long a renewal holds: one interval (and three renewals), so a dead leader is replaced within two."""
    return max(interval, 3 * lease_period(interval))


class Watcher:
    """Polls every configured subaccount, follows the exchange's stream, records changes, sends alerts."""

    def __init__(self, *, interval: float | None = None, websocket: bool | None = None):
        self.interval: float = settings.OGPANEL_WATCH_SECONDS if interval is None else interval
        self.websocket: bool = settings.OGPANEL_WATCH_WEBSOCKET if websocket is None else websocket
        self.started_at = _now()
        self.holder = watch_lease.holder_name()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._leading = threading.Event()
        self._progress = time.monotonic()  # when the loop last came round: a leader stuck longer gives up
        self._urgent: set[int] = set()  # subaccounts the stream says to read again, fresh
        self._where: dict[str, int] = {}  # order group id -> subaccount, as last listed
        self._numbers_of: dict[int, set[int]] = {}  # credential pk -> its subaccounts
        # (credential pk, order group id) -> the kinds of the stream's updates, with when each was heard
        self._heard: dict[tuple[int, str], list[tuple[datetime, str]]] = {}
        self._followers: dict[int, Follower] = {}
        self._alerts_due = threading.Event()

    @property
    def leading(self) -> bool:
        return self._leading.is_set()

    # --- polling ---------------------------------------------------------------------------------

    def poll_once(self) -> None:
        """Read every configured subaccount (shared cached reads) and record what changed."""
        subaccounts = list(Subaccount.objects.select_related("credential"))
        numbers = [sub.number for sub in subaccounts]
        # Forget unmapped subaccounts: mapped again, they start from a new baseline.
        ObservedGroup.objects.exclude(subaccount__in=numbers).delete()
        WatcherStatus.objects.exclude(subaccount__in=numbers).delete()
        numbers_of: dict[int, set[int]] = {}
        for sub in subaccounts:
            numbers_of.setdefault(sub.credential_id, set()).add(sub.number)
        with self._lock:
            self._numbers_of = numbers_of
        self._observe_all(subaccounts, selectors.listings(subaccounts), via="poll")

    def poll_subaccounts(self, numbers: Collection[int], *, via: str = "stream") -> None:
        """Read these subaccounts again, bypassing the shared cache (the stream said something changed)."""
        subaccounts = list(Subaccount.objects.filter(number__in=numbers).select_related("credential"))
        self._observe_all(subaccounts, selectors.listings(subaccounts, fresh=True), via=via)

    def _observe_all(self, subaccounts: list[Subaccount], listings: list[selectors.Listing], *, via: str) -> None:
        for sub, listing in zip(subaccounts, listings, strict=True):
            if not listing.ok:
                metrics.poll_failed(sub.number)
            try:
                self._observe(sub, listing, via)
            except Exception as exc:
                # Whatever it is (a bug, the database), it costs this subaccount alone its round; its
                # recorded state is where the last whole change left it, so the next read takes up from there.
                watch_reads.record_failure(sub, exc)
                continue
            if listing.ok:
                try:
                    breaches.record_breaches(sub, listing)
                except Exception:
                    logger.exception("trip watch: could not check subaccount %s against its policy", sub.number)
        with self._lock:
            self._where.update((group.id, listing.subaccount) for listing in listings for group in listing.groups)
        self._alerts_due.set()

    def _observe(self, sub: Subaccount, listing: selectors.Listing, via: str) -> None:
        status = WatcherStatus.objects.filter(subaccount=sub.number).first()
        if not listing.ok:
            error = f"{listing.error_kind}: {listing.error}"
            if status is None or status.last_error != error or watch_reads.recovered(status):
                logger.warning("trip watch: subaccount %s could not be read: %s", sub.number, error)
            WatcherStatus.objects.update_or_create(
                subaccount=sub.number, defaults={"last_error": error, "last_error_at": listing.fetched_at}
            )
            return
        if status is not None and status.last_success_at and listing.fetched_at <= status.last_success_at:
            return  # this shared listing (or a newer one) was compared already
        read_at = listing.fetched_at - timedelta(milliseconds=listing.latency_ms or 0)
        if status is None or status.last_success_at is None or status.credential_id != sub.credential_id:
            self._baseline(sub, listing, read_at)
            return
        if status.last_error_at and not watch_reads.recovered(status):
            logger.info("trip watch: subaccount %s can be read again", sub.number)
        self._compare(sub, listing, read_at, via)
        WatcherStatus.objects.filter(subaccount=sub.number).update(last_success_at=listing.fetched_at)

    def _baseline(self, sub: Subaccount, listing: selectors.Listing, read_at: datetime) -> None:
        if watch_reads.baseline(sub, listing, read_at):
            self._take_heard(sub.credential_id, read_at, {group.id for group in listing.groups})

    def _compare(self, sub: Subaccount, listing: selectors.Listing, read_at: datetime, via: str) -> None:
        known = {row.order_group_id: row for row in ObservedGroup.objects.filter(subaccount=sub.number)}
        heard = self._take_heard(sub.credential_id, read_at, known.keys() | {group.id for group in listing.groups})
        by_group: dict[str, list[Change]] = {}
        for change in changes_between(sub.number, known, listing.groups, heard):
            by_group.setdefault(change.order_group_id, []).append(change)
        now = _now()
        for group_id, changes in by_group.items():
            before = known.get(group_id)
            since = before.last_seen if before else None
            verdicts = [panel_made(change, since, now) for change in changes]
            if None in verdicts:
                # A panel call on this group is under way: decide at the next read, with what was heard.
                self._hear_again(sub.credential_id, group_id, read_at, heard.get(group_id, ()))
                continue
            for change, by_panel in zip(changes, verdicts, strict=True):
                if by_panel:
                    watch_reads.record_quietly(change, read_at)
                else:
                    watch_reads.report(sub, change, listing.fetched_at, read_at, via)
        ObservedGroup.objects.filter(subaccount=sub.number).update(last_seen=read_at)

    def _take_heard(self, credential_pk: int, read_at: datetime, group_ids: Iterable[str]) -> dict[str, list[str]]:
        """The kinds of the updates heard on these groups before the read began (so the read shows them)."""
        taken: dict[str, list[str]] = {}
        with self._lock:
            for group_id in group_ids:
                updates = self._heard.pop((credential_pk, group_id), [])
                before = [kind for at, kind in updates if at <= read_at]
                after = [(at, kind) for at, kind in updates if at > read_at]
                if before:
                    taken[group_id] = before
                if after:
                    self._heard[(credential_pk, group_id)] = after
            old = read_at - HEARD_KEPT
            for key in [key for key, updates in self._heard.items() if updates[-1][0] < old]:
                del self._heard[key]
        return taken

    def _hear_again(self, credential_pk: int, group_id: str, at: datetime, kinds: Iterable[str]) -> None:
        with self._lock:
            self._heard[(credential_pk, group_id)] = [(at, kind) for kind in kinds] + self._heard.get(
                (credential_pk, group_id), []
            )

    # --- the loop, the lease and the streams ----------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Lead (poll every interval, and sooner when a stream says so) or stand by, until `stop` is set."""
        self.started_at = _now()
        self._progress = time.monotonic()
        self._try_lead()
        # Alerts go out from their own thread: a webhook that hangs must not hold up noticing the next trip.
        # The lease has its own too, so a long read does not let it lapse.
        threads = [
            threading.Thread(target=self._send_alerts, args=(stop,), name="ogpanel-trip-alerts", daemon=True),
            threading.Thread(target=self._keep_lease, args=(stop,), name="ogpanel-watch-lease", daemon=True),
        ]
        for thread in threads:
            thread.start()
        # The opposite of the role taken, so that the first turn says which it is.
        leading, next_poll, next_check = not self.leading, time.monotonic(), 0.0
        try:
            while not stop.is_set():
                self._progress = time.monotonic()
                if self.leading != leading:
                    leading = self.leading
                    next_poll = time.monotonic()
                    self._changed_role(leading)
                self._wake.clear()
                if leading:
                    next_poll = self._round(stop, next_poll)
                if time.monotonic() >= next_check:
                    self._check_outage(leading)
                    next_check = time.monotonic() + OUTAGE_CHECK_SECONDS
                self._wait(stop, next_poll if leading else time.monotonic() + lease_period(self.interval))
        finally:
            self._stop_streams()
            self._alerts_due.set()
            for thread in threads:
                thread.join()
            self._step_down()
            connection.close()

    def _round(self, stop: threading.Event, next_poll: float) -> float:
        """One turn of the leader's loop; returns when the next full poll is due."""
        with self._lock:
            urgent, self._urgent = self._urgent, set()
        try:
            if urgent:
                self.poll_subaccounts(urgent)
            if time.monotonic() >= next_poll:
                began = time.monotonic()
                self.poll_once()
                metrics.poll_finished(time.monotonic() - began)
                next_poll = time.monotonic() + self.interval
                _quietly(checkpoints.write_if_due, "could not write an audit checkpoint")
            # After the first poll, so a stream's catch-up read on connecting knows every subaccount.
            if self.websocket:
                self._follow_streams()
            self.beat()
        except Exception:
            # The database went away, a bug, anything: log it and try again next time round.
            logger.exception("trip watch: poll failed; trying again in %s s", self.interval)
            connection.close()  # a broken connection is reopened on next use
            next_poll = time.monotonic() + self.interval
        if urgent:
            stop.wait(STREAM_WAKE_GAP)
        return next_poll

    def _try_lead(self) -> None:
        healthy = time.monotonic() - self._progress <= stale_after(self.interval)
        try:
            held = healthy and watch_lease.hold(self.holder, lease_seconds(self.interval))
        except Exception:
            logger.exception("trip watch: could not renew the lease")
            connection.close()
            held = False
        if held != self.leading:
            (self._leading.set if held else self._leading.clear)()
            self._wake.set()

    def _keep_lease(self, stop: threading.Event) -> None:
        try:
            while not stop.wait(lease_period(self.interval)):
                self._try_lead()
        finally:
            connection.close()

    def _changed_role(self, leading: bool) -> None:
        if leading:
            lease = watch_lease.leader()
            taken_from = lease.taken_from if lease is not None and lease.holder == self.holder else ""
            logger.warning(
                "trip watch: %s leads%s", self.holder, f" (took over from {taken_from})" if taken_from else ""
            )
        else:
            logger.warning("trip watch: %s stands by; another watcher leads", self.holder)
            self._stop_streams()

    def _step_down(self) -> None:
        """On a clean stop: record it and hand the lease on at once (unless another watcher leads by now)."""
        try:
            lease = watch_lease.leader()
            if lease is not None and lease.holder == self.holder:
                self.beat(stopped=True)
                watch_lease.release(self.holder)
        except DatabaseError:
            logger.exception("trip watch: could not record the stop")

    def _check_outage(self, leading: bool) -> None:
        """Any watcher notices an outage; a standby also sends that notice (the leader may be what is down)."""
        try:
            watch_outage.check()
            if not leading:
                notices.deliver_due(kinds=watch_outage.KINDS)
        except Exception:
            logger.exception("trip watch: could not check whether the trip watch is down")
            connection.close()

    def _send_alerts(self, stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                self._alerts_due.clear()
                if self.leading:
                    _quietly(alerts.deliver_due, "could not send trip alerts; trying again shortly")
                    _quietly(approvals.expire_due, "could not expire requests; trying again shortly")
                    _quietly(notices.deliver_due, "could not send notices; trying again shortly")
                self._alerts_due.wait(ALERT_CHECK_SECONDS)
        finally:
            connection.close()

    def _wait(self, stop: threading.Event, until: float) -> None:
        while not stop.is_set():
            left = until - time.monotonic()
            if left <= 0 or self._wake.wait(min(left, STOP_CHECK_SECONDS)):
                return

    def notice(self, credential_pk: int, update: OrderGroupUpdate | None = None) -> None:
        """From a stream thread: something changed on this credential's subaccounts (or one group's)."""
        with self._lock:
            where = None
            if update is not None:
                self._heard.setdefault((credential_pk, update.order_group_id), []).append((_now(), update.event_type))
                where = self._where.get(update.order_group_id)
            self._urgent |= {where} if where is not None else self._numbers_of.get(credential_pk, set())
        self._wake.set()

    def _follow_streams(self) -> None:
        """One stream thread per credential in use; a changed key or URL restarts its thread."""
        in_use = Credential.objects.filter(subaccounts__isnull=False).distinct()
        wanted = {credential.pk: credential for credential in in_use}
        for pk, follower in list(self._followers.items()):
            credential = wanted.get(pk)
            if credential is None or follower.version != version(credential):
                follower.stop()
                del self._followers[pk]
        for pk, credential in wanted.items():
            if pk not in self._followers:
                self._followers[pk] = Follower(self, credential)

    def _stop_streams(self) -> None:
        for follower in self._followers.values():
            follower.stop()
        self._followers = {}

    def stream_states(self) -> dict[str, dict[str, str]]:
        return {follower.label: follower.state.as_json() for follower in list(self._followers.values())}

    def beat(self, *, stopped: bool = False) -> None:
        """Record that the watcher is alive (or has stopped), for /healthz and the dashboard."""
        now = _now()
        WatcherHeartbeat.objects.update_or_create(
            pk=1,
            defaults={
                "host": self.holder,
                "interval_seconds": self.interval,
                "started_at": self.started_at,
                "beat_at": now,
                "stopped_at": now if stopped else None,
                "streams": self.stream_states() if self.websocket else {},
            },
        )


def forget_observations() -> None:
    """Start again from a baseline everywhere: for a new exchange (the demo's fresh simulator), not a restart."""
    with transaction.atomic():
        ObservedGroup.objects.all().delete()
        WatcherStatus.objects.all().delete()


def _quietly(work: Callable[[], object], what: str) -> None:
    try:
        work()
    except Exception:
        logger.exception("trip watch: %s", what)
        connection.close()
