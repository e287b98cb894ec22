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
order_group_updates. An update, a reconnect or a gap only makes the watcher read the affected
subaccounts again, fresh: the diff stays the single source of events, and polling stays the
safety net for anything missed while disconnected.

Which changes the panel made: one its own audit log shows succeeding (trigger, reset, delete,
update_limit, create) after the last read that still showed the old state. While such a panel
call is still under way the group is left alone and decided at the next poll. A trip caused by
the panel lowering a limit below the current volume is the exchange's trigger and is reported.

The first successful read of a subaccount (or after it is mapped to another credential) is a
baseline: one "exchange_baseline" event listing the groups already triggered, and no alerts,
because when those trips happened is unknown.
"""

import logging
import os
import socket
import threading
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection, transaction

from ogpanel import alerts, audit, exchange, selectors
from ogpanel.audit import Actor
from ogpanel.kalshi import KalshiError, OrderGroup, OrderGroupStream, StreamGap
from ogpanel.models import AuditEvent, Credential, ObservedGroup, Subaccount, TripAlert, WatcherHeartbeat, WatcherStatus

logger = logging.getLogger(__name__)

EXCHANGE = Actor.system("exchange")
Outcome = AuditEvent.Outcome
# The panel's own audit action for each kind of change.
PANEL_ACTIONS = {
    "created": "create",
    "triggered": "trigger",
    "reset": "reset",
    "deleted": "delete",
    "limit_updated": "update_limit",
}
# A panel call whose attempt has had no result for this long died with its process ("outcome unknown").
PANEL_CALL_GRACE = timedelta(seconds=120)
BASELINE_IDS_KEPT = 100  # triggered group ids listed in a baseline event; the count is always exact
STREAM_BACKOFF_FIRST, STREAM_BACKOFF_MAX = 1.0, 60.0
STREAM_READ_SLICE = 0.5  # how long a stream thread blocks before checking whether it should stop
# At most this often a fresh read for the stream, however chatty it is: a kill switch publishes a burst.
STREAM_WAKE_GAP = 0.5
STOP_CHECK_SECONDS = 0.25
ALERT_CHECK_SECONDS = 1.0  # retries come due between polls too


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Change:
    kind: str  # created, triggered, reset, deleted, limit_updated
    subaccount: int
    order_group_id: str
    contracts_limit: int | None  # the group's limit now (for deleted: the last one known)
    previous_limit: int | None = None

    @property
    def action(self) -> str:
        return f"exchange_{self.kind}"


def changes_between(subaccount: int, known: dict[str, ObservedGroup], groups: Collection[OrderGroup]) -> list[Change]:
    """What differs between the recorded state and a listing, group by group, in the order it happened."""
    changes = []
    for group in groups:
        before = known.get(group.id)
        if before is None:
            changes.append(Change("created", subaccount, group.id, group.contracts_limit))
            if group.triggered:  # groups are created active: it tripped before we saw it
                changes.append(Change("triggered", subaccount, group.id, group.contracts_limit))
            continue
        if group.contracts_limit != before.contracts_limit:
            # First: a lower limit can trigger the group, never the other way round.
            changes.append(Change("limit_updated", subaccount, group.id, group.contracts_limit, before.contracts_limit))
        if group.triggered != before.triggered:
            changes.append(
                Change("triggered" if group.triggered else "reset", subaccount, group.id, group.contracts_limit)
            )
    listed = {group.id for group in groups}
    changes += [
        Change("deleted", subaccount, group_id, before.contracts_limit)
        for group_id, before in known.items()
        if group_id not in listed
    ]
    return changes


class _AlreadyRecorded(Exception):
    """The stored state already shows this change (another watcher was first): roll back."""


def _move(change: Change, read_at: datetime) -> None:
    """Move the stored state by one change, or raise _AlreadyRecorded."""
    rows = ObservedGroup.objects.filter(subaccount=change.subaccount, order_group_id=change.order_group_id)
    if change.kind == "created":
        if rows.exists():
            raise _AlreadyRecorded
        ObservedGroup.objects.create(
            subaccount=change.subaccount,
            order_group_id=change.order_group_id,
            contracts_limit=change.contracts_limit,
            triggered=False,
            first_seen=read_at,
            last_seen=read_at,
        )
        return
    if change.kind == "deleted":
        moved = rows.delete()[0]
    elif change.kind == "limit_updated":
        moved = rows.filter(contracts_limit=change.previous_limit).update(contracts_limit=change.contracts_limit)
    else:
        triggered = change.kind == "triggered"
        moved = rows.filter(triggered=not triggered).update(triggered=triggered)
    if not moved:
        raise _AlreadyRecorded


def panel_made(change: Change, since: datetime | None, now: datetime) -> bool | None:
    """Did the panel make this change? None: a panel call that may have made it is still under way.

    `since` is when the read that last showed the old state started: a panel call that
    succeeded before then would already have shown in that read.
    """
    events = AuditEvent.objects.filter(action=PANEL_ACTIONS[change.kind], subaccount=change.subaccount)
    if change.kind == "created":
        # The panel learns a new group's id only from the exchange's answer: its result names it.
        if events.filter(outcome=Outcome.SUCCEEDED, params__order_group_id=change.order_group_id).exists():
            return True
        attempts = events.filter(outcome=Outcome.ATTEMPTED, at__gte=now - PANEL_CALL_GRACE)
    else:
        attempts = events.filter(
            outcome=Outcome.ATTEMPTED, order_group_id=change.order_group_id, at__gte=min(since, now) - PANEL_CALL_GRACE
        )
    began = dict(attempts.values_list("seq", "at"))
    if not began:
        return False
    results = {
        seq: (outcome, at)
        for seq, outcome, at in AuditEvent.objects.filter(attempt_seq__in=began).values_list(
            "attempt_seq", "outcome", "at"
        )
    }
    under_way = made = False
    for seq, at in began.items():
        outcome, finished = results.get(seq, (None, None))
        if outcome is None:
            under_way = under_way or at >= now - PANEL_CALL_GRACE
        elif outcome == Outcome.SUCCEEDED and change.kind != "created" and finished >= since:
            made = True
    if made:
        return True
    return None if under_way else False


@dataclass
class _StreamState:
    state: str
    since: datetime = field(default_factory=_now)
    error: str = ""

    def as_json(self) -> dict[str, str]:
        return {"state": self.state, "since": self.since.isoformat(), "error": self.error}


class Watcher:
    """Polls every configured subaccount, follows the exchange's stream, records changes, sends alerts."""

    def __init__(self, *, interval: float | None = None, websocket: bool | None = None):
        self.interval = settings.OGPANEL_WATCH_SECONDS if interval is None else interval
        self.websocket = settings.OGPANEL_WATCH_WEBSOCKET if websocket is None else websocket
        self.started_at = _now()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._urgent: set[int] = set()  # subaccounts the stream says to read again, fresh
        self._where: dict[str, int] = {}  # order group id -> subaccount, as last listed
        self._numbers_of: dict[int, set[int]] = {}  # credential pk -> its subaccounts
        self._followers: dict[int, _Follower] = {}
        self._alerts_due = threading.Event()

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
            try:
                self._observe(sub, listing, via)
            except DatabaseError:
                # One subaccount's bad moment must not cost the others theirs; its state is unchanged.
                logger.exception("trip watch: could not record subaccount %s; it is read again next time", sub.number)
        with self._lock:
            self._where.update((group.id, listing.subaccount) for listing in listings for group in listing.groups)
        self._alerts_due.set()

    def _observe(self, sub: Subaccount, listing: selectors.Listing, via: str) -> None:
        status = WatcherStatus.objects.filter(subaccount=sub.number).first()
        if not listing.ok:
            error = f"{listing.error_kind}: {listing.error}"
            if status is None or status.last_error != error or _recovered(status):
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
        if status.last_error_at and not _recovered(status):
            logger.info("trip watch: subaccount %s can be read again", sub.number)
        self._compare(sub, listing, read_at, via)
        WatcherStatus.objects.filter(subaccount=sub.number).update(last_success_at=listing.fetched_at)

    def _baseline(self, sub: Subaccount, listing: selectors.Listing, read_at: datetime) -> None:
        triggered = [group.id for group in listing.groups if group.triggered]

        def within(event: AuditEvent) -> None:
            done = WatcherStatus.objects.filter(
                subaccount=sub.number, credential_id=sub.credential_id, last_success_at__isnull=False
            )
            if done.exists():
                raise _AlreadyRecorded
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
        try:
            audit.append(
                EXCHANGE,
                action="exchange_baseline",
                outcome=Outcome.OBSERVED,
                subaccount=sub.number,
                environment=sub.credential.environment,
                api_key_id=sub.credential.key_id,
                params=params,
                within=within,
            )
        except _AlreadyRecorded:
            return
        logger.info(
            "trip watch: baseline of subaccount %s: %s groups, %s triggered",
            sub.number,
            len(listing.groups),
            len(triggered),
        )

    def _compare(self, sub: Subaccount, listing: selectors.Listing, read_at: datetime, via: str) -> None:
        known = {row.order_group_id: row for row in ObservedGroup.objects.filter(subaccount=sub.number)}
        by_group: dict[str, list[Change]] = {}
        for change in changes_between(sub.number, known, listing.groups):
            by_group.setdefault(change.order_group_id, []).append(change)
        now = _now()
        for group_id, changes in by_group.items():
            before = known.get(group_id)
            since = before.last_seen if before else None
            verdicts = [panel_made(change, since, now) for change in changes]
            if None in verdicts:
                continue  # a panel call on this group is under way: decide at the next poll
            for change, by_panel in zip(changes, verdicts, strict=True):
                if by_panel:
                    _record_quietly(change, read_at)
                else:
                    self._report(sub, change, listing.fetched_at, read_at, via)
        ObservedGroup.objects.filter(subaccount=sub.number).update(last_seen=read_at)

    def _report(self, sub: Subaccount, change: Change, observed_at: datetime, read_at: datetime, via: str) -> None:
        """Append the change as the exchange's, with the new state (and a trip's alert) in the same transaction."""

        def within(event: AuditEvent) -> None:
            _move(change, read_at)
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
        try:
            audit.append(
                EXCHANGE,
                action=change.action,
                outcome=Outcome.OBSERVED,
                subaccount=change.subaccount,
                order_group_id=change.order_group_id,
                environment=sub.credential.environment,
                api_key_id=sub.credential.key_id,
                params=params,
                within=within,
            )
        except _AlreadyRecorded:
            return
        log = logger.warning if change.kind == "triggered" else logger.info
        log(
            "trip watch: order group %s on subaccount %s %s at the exchange",
            change.order_group_id,
            change.subaccount,
            change.kind.replace("_", " "),
        )

    # --- the loop and the streams -------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Poll every interval, and sooner when a stream says so, until `stop` is set."""
        self.started_at = _now()
        next_poll = time.monotonic()
        # Alerts go out from their own thread: a webhook that hangs must not hold up noticing the next trip.
        sender = threading.Thread(target=self._send_alerts, args=(stop,), name="ogpanel-trip-alerts", daemon=True)
        sender.start()
        try:
            while not stop.is_set():
                self._wake.clear()
                with self._lock:
                    urgent, self._urgent = self._urgent, set()
                try:
                    if urgent:
                        self.poll_subaccounts(urgent)
                    if time.monotonic() >= next_poll:
                        self.poll_once()
                        next_poll = time.monotonic() + self.interval
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
                self._wait(stop, next_poll)
        finally:
            for follower in self._followers.values():
                follower.stop()
            self._alerts_due.set()
            sender.join()
            try:
                self.beat(stopped=True)
            except DatabaseError:
                logger.exception("trip watch: could not record the stop")
            connection.close()

    def _send_alerts(self, stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                self._alerts_due.clear()
                try:
                    alerts.deliver_due()
                except Exception:
                    logger.exception("trip watch: could not send alerts; trying again shortly")
                    connection.close()
                self._alerts_due.wait(ALERT_CHECK_SECONDS)
        finally:
            connection.close()

    def _wait(self, stop: threading.Event, until: float) -> None:
        while not stop.is_set():
            left = until - time.monotonic()
            if left <= 0 or self._wake.wait(min(left, STOP_CHECK_SECONDS)):
                return

    def notice(self, credential_pk: int, order_group_id: str | None = None) -> None:
        """From a stream thread: something changed on this credential's subaccounts (or one group's)."""
        with self._lock:
            where = self._where.get(order_group_id) if order_group_id else None
            self._urgent |= {where} if where is not None else self._numbers_of.get(credential_pk, set())
        self._wake.set()

    def _follow_streams(self) -> None:
        """One stream thread per credential in use; a changed key or URL restarts its thread."""
        in_use = Credential.objects.filter(subaccounts__isnull=False).distinct()
        wanted = {credential.pk: credential for credential in in_use}
        for pk, follower in list(self._followers.items()):
            credential = wanted.get(pk)
            if credential is None or follower.version != _version(credential):
                follower.stop()
                del self._followers[pk]
        for pk, credential in wanted.items():
            if pk not in self._followers:
                self._followers[pk] = _Follower(self, credential)

    def stream_states(self) -> dict[str, dict[str, str]]:
        return {follower.label: follower.state.as_json() for follower in list(self._followers.values())}

    def beat(self, *, stopped: bool = False) -> None:
        """Record that the watcher is alive (or has stopped), for /healthz and the dashboard."""
        now = _now()
        WatcherHeartbeat.objects.update_or_create(
            pk=1,
            defaults={
                "host": f"{socket.gethostname()}:{os.getpid()}"[:200],
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


def _recovered(status: WatcherStatus) -> bool:
    """The last read succeeded (or nothing failed yet)."""
    return status.last_error_at is None or (
        status.last_success_at is not None and status.last_success_at >= status.last_error_at
    )


def _record_quietly(change: Change, read_at: datetime) -> None:
    """The panel made this change and audited it already: only the state moves."""
    try:
        with transaction.atomic():
            _move(change, read_at)
    except _AlreadyRecorded:
        pass


def _version(credential: Credential) -> tuple[str, str, str]:
    return credential.key_id, credential.base_url, credential.private_key_encrypted


class _Follower:
    """A thread following one credential's order_group_updates; it only ever wakes the watcher."""

    def __init__(self, watcher: Watcher, credential: Credential):
        self.watcher, self.credential_pk, self.label = watcher, credential.pk, credential.label
        self.version = _version(credential)
        self.state = _StreamState("connecting")
        self._stop = threading.Event()
        self._stream: OrderGroupStream | None = None
        self._thread: threading.Thread | None = None
        try:
            self._stream = exchange.stream_for(credential)
        except KalshiError as exc:  # CredentialUnusable among them
            # Nothing to follow with; polling goes on (and reports the same credential's trouble per subaccount).
            self.state = _StreamState("off", error=f"cannot use this credential's key or URL: {type(exc).__name__}")
            logger.error("trip watch: no stream for credential %s: %s", self.label, self.state.error)
            return
        self._thread = threading.Thread(target=self._run, name=f"ogpanel-stream-{credential.pk}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._stream is not None:
            self._stream.close()  # unblocks a waiting next_update
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        backoff = STREAM_BACKOFF_FIRST
        while not self._stop.is_set():
            try:
                self._stream.connect()
                self.state = _StreamState("connected")
                backoff = STREAM_BACKOFF_FIRST
                # Anything may have changed while nobody was listening: read it all again.
                self.watcher.notice(self.credential_pk)
                while not self._stop.is_set():
                    update = self._stream.next_update(STREAM_READ_SLICE)
                    if update is not None:
                        self.watcher.notice(self.credential_pk, update.order_group_id)
            except KalshiError as exc:
                if self._stop.is_set():
                    break
                self.state = _StreamState("reconnecting", error=exc.operator_message)
                logger.warning(
                    "trip watch: stream of credential %s: %s; reconnecting in %.0f s",
                    self.label,
                    exc.operator_message,
                    backoff,
                )
                if isinstance(exc, StreamGap):  # updates were lost: read now, not only after reconnecting
                    self.watcher.notice(self.credential_pk)
            finally:
                self._stream.close()
            self._stop.wait(backoff)
            backoff = min(backoff * 2, STREAM_BACKOFF_MAX)
