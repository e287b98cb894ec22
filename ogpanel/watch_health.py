"""How the trip watch is doing, as the dashboard and /healthz show it: read from what the watcher records."""

from dataclasses import dataclass
from datetime import UTC, datetime

from django.conf import settings

from ogpanel.models import TripAlert, WatcherHeartbeat, WatcherStatus


def _ago(seconds: int | None) -> str:
    if seconds is None:
        return "never"
    if seconds < 120:
        return f"{seconds} s ago"
    if seconds < 7200:
        return f"{seconds // 60} min ago"
    return f"{seconds // 3600} h ago"


def _age(at: datetime | None, now: datetime) -> int | None:
    return None if at is None else max(0, round((now - at).total_seconds()))


@dataclass(frozen=True)
class SubaccountWatch:
    subaccount: int
    last_success_at: datetime | None
    last_error_at: datetime | None
    error: str
    age_seconds: int | None  # since the last successful read
    record_failures: int = 0  # unexpected errors recording its listings, each of which cost it a round

    @property
    def ok(self) -> bool:
        """Read at least once, and the last read worked."""
        return self.last_success_at is not None and (
            self.last_error_at is None or self.last_success_at >= self.last_error_at
        )

    @property
    def age_text(self) -> str:
        return _ago(self.age_seconds)


@dataclass(frozen=True)
class WatchHealth:
    state: str  # "running", "stale" (no poll finished lately) or "not running"
    last_poll_at: datetime | None
    age_seconds: int | None
    streams: dict[str, dict]  # credential label -> {"state", "since", "error"}
    subaccounts: dict[int, SubaccountWatch]
    undelivered_alerts: int

    @property
    def age_text(self) -> str:
        return _ago(self.age_seconds)

    @property
    def streams_text(self) -> str:
        """ "live updates connected", "live updates: 1 of 2 connected", or "" when no stream is followed."""
        if not self.streams:
            return ""
        connected = sum(stream["state"] == "connected" for stream in self.streams.values())
        if connected == len(self.streams):
            return "live updates connected"
        return f"live updates: {connected} of {len(self.streams)} connected"

    def as_json(self) -> dict:
        """For /healthz, which anyone may call: states and times, no labels or error messages."""
        streams: dict[str, int] = {}
        for stream in self.streams.values():
            streams[stream["state"]] = streams.get(stream["state"], 0) + 1
        return {
            "status": self.state,
            "last_poll_at": self.last_poll_at.isoformat() if self.last_poll_at else None,
            "age_seconds": self.age_seconds,
            "streams": streams,
            "subaccounts": {
                str(number): {
                    "ok": watch.ok,
                    "last_success_at": watch.last_success_at.isoformat() if watch.last_success_at else None,
                    "record_failures": watch.record_failures,
                }
                for number, watch in self.subaccounts.items()
            },
            "undelivered_alerts": self.undelivered_alerts,
        }


def stale_after(interval: float) -> float:
    """Seconds without a finished poll before the watcher counts as stale: three intervals plus one slow read."""
    return 3 * interval + settings.OGPANEL_CONNECT_TIMEOUT + settings.OGPANEL_READ_TIMEOUT


def watch_health(*, now: datetime | None = None) -> WatchHealth:
    now = now or datetime.now(UTC)
    beat = WatcherHeartbeat.objects.filter(pk=1).first()
    subaccounts = {
        status.subaccount: SubaccountWatch(
            status.subaccount,
            status.last_success_at,
            status.last_error_at,
            status.last_error,
            _age(status.last_success_at, now),
            status.record_failures,
        )
        for status in WatcherStatus.objects.all()
    }
    undelivered = TripAlert.objects.filter(delivered_at=None).count()
    if beat is None:
        return WatchHealth("not running", None, None, {}, subaccounts, undelivered)
    age = max(0, round((now - beat.beat_at).total_seconds()))
    if beat.stopped_at is not None:
        state = "not running"
    elif age > stale_after(beat.interval_seconds):
        state = "stale"
    else:
        state = "running"
    return WatchHealth(state, beat.beat_at, age, beat.streams if state == "running" else {}, subaccounts, undelivered)
