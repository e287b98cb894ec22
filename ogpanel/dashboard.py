"""What the dashboard shows beyond the rows themselves: their order, the book at a glance, the watch, trips over time.

- Rows: triggered groups first, then by subaccount, so the groups that need someone are on top.
- Tiles: one per subaccount the user may see (0..OGPANEL_MAX_SUBACCOUNT), coloured by its worst
  state: triggered, error (its listing failed, or the trip watch cannot read it), ok, or unread
  (no credential mapped, so nothing is read).
- The trip watch: whether it is down (a banner as loud as a trip) and, per subaccount, whether
  its last successful read is too old to trust.
- Trips over time: the trip watch's `exchange_triggered` events of the last 24 hours per
  subaccount, in hourly cells, drawn here as inline SVG (no chart library, no script) with each
  subaccount's line linking to its events in the audit log.
"""

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal
from urllib.parse import urlencode

from django.conf import settings
from django.urls import reverse

from ogpanel import permissions
from ogpanel.kalshi import OrderGroup
from ogpanel.models import AuditEvent, TripAlert
from ogpanel.selectors import Listing, find_group
from ogpanel.watch_health import SubaccountWatch, WatchHealth, stale_after

TileState = Literal["triggered", "error", "ok", "unread"]
TRIP_ACTION = "exchange_triggered"
CHART_HOURS = 24


def rows_in_order[T](rows: Iterable[T], *, key: Callable[[T], tuple[int, OrderGroup]]) -> list[T]:
    """Triggered groups first, then by subaccount; within that, the exchange's own order (a stable sort).

    `key` gives a row's (subaccount, group).
    """

    def order(row: T) -> tuple[bool, int]:
        subaccount, group = key(row)
        return (not group.triggered, subaccount)

    return sorted(rows, key=order)


# --- the book at a glance -------------------------------------------------------------------------


@dataclass(frozen=True)
class Tile:
    subaccount: int
    state: TileState
    words: str  # what the colour says, for screen readers and the tooltip
    url: str  # "" when there are no rows to show (nothing mapped)
    current: bool = False

    @property
    def mark(self) -> str:
        """A glyph beside the number, so the state never rests on colour alone."""
        return {"triggered": "!", "error": "×", "ok": "✓", "unread": "–"}[self.state]


def watch_is_stale(watched: SubaccountWatch | None) -> bool:
    """The trip watch's last good read of a subaccount is too old to trust (or it never had one)."""
    return watched is not None and (
        not watched.ok
        or watched.age_seconds is None
        or watched.age_seconds > stale_after(settings.OGPANEL_WATCH_SECONDS)
    )


def tiles(
    user: permissions.AnyUser, listings: Sequence[Listing], watch: WatchHealth, *, current: int | None = None
) -> list[Tile]:
    numbers = permissions.visible(user, range(settings.OGPANEL_MAX_SUBACCOUNT + 1))
    by_number = {listing.subaccount: listing for listing in listings}
    dashboard = reverse("dashboard")
    result = []
    for number in numbers:
        listing = by_number.get(number)
        if listing is None:
            result.append(Tile(number, "unread", "not read: no credential mapped", ""))
            continue
        url = f"{dashboard}?{urlencode({'subaccount': number})}"
        watched = watch.subaccounts.get(number)
        if listing.ok and listing.triggered_count:
            state: TileState = "triggered"
            words = f"{listing.triggered_count} of {len(listing.groups)} groups triggered"
        elif not listing.ok:
            state, words = "error", f"could not be read: {listing.error}"
        elif watched is not None and not watched.ok:
            state, words = "error", f"the trip watch cannot read it: {watched.error or 'failing'}"
        else:
            count = len(listing.groups)
            state, words = "ok", f"{count} group{'s' if count != 1 else ''}, none triggered"
        result.append(Tile(number, state, words, url, current=number == current))
    return result


# --- the trip watch's banner ------------------------------------------------------------------------


@dataclass(frozen=True)
class ShownTrip:
    alert: TripAlert
    gone: bool  # the group is no longer at the exchange (deleted since, or a demo's earlier exchange)


def shown_trips(trips: Sequence[TripAlert], listings: Sequence[Listing]) -> list[ShownTrip]:
    """Recent trips, each marked when its group is no longer listed, so the banner links to no ghost."""
    by_number = {listing.subaccount: listing for listing in listings}
    shown = []
    for trip in trips:
        listing = by_number.get(trip.subaccount)
        gone = listing is not None and listing.ok and find_group(listing, trip.order_group_id) is None
        shown.append(ShownTrip(trip, gone))
    return shown


# --- trips over time --------------------------------------------------------------------------------

# Chart geometry, in SVG user units (the SVG scales to the width it is given).
LABEL_W, CELL_W, CELL_H, GAP, TOTAL_W, AXIS_H = 64, 22, 16, 2, 56, 16


@dataclass(frozen=True)
class ChartCell:
    x: int
    count: int
    title: str
    level: int  # 0 (none) .. 4 (the busiest hour on the chart)


@dataclass(frozen=True)
class ChartLine:
    subaccount: int
    y: int
    total: int
    url: str
    cells: list[ChartCell]

    @property
    def label_y(self) -> int:
        return self.y + CELL_H - 4

    @property
    def words(self) -> str:
        return f"Subaccount {self.subaccount}: {self.total} trip{'s' if self.total != 1 else ''} in the last 24 h"


@dataclass(frozen=True)
class TripChart:
    lines: list[ChartLine]
    ticks: list[tuple[int, str]]  # (x, "HH:00") along the bottom
    width: int
    height: int
    since: datetime
    until: datetime
    cell_w: int = CELL_W
    cell_h: int = CELL_H
    total_x: int = 0

    @property
    def trips(self) -> int:
        return sum(line.total for line in self.lines)


def _level(count: int, busiest: int) -> int:
    if count == 0:
        return 0
    return max(1, min(4, round(4 * count / busiest)))


def trip_chart(subaccounts: Sequence[int], *, now: datetime | None = None) -> TripChart:
    """Trips seen by the trip watch per subaccount and hour over the last 24 h (only subaccounts that had one)."""
    now = now or datetime.now(UTC)
    # Hour cells end at the next full hour, so the last one is the hour we are in.
    until = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    since = until - timedelta(hours=CHART_HOURS)
    seen = AuditEvent.objects.filter(
        action=TRIP_ACTION, at__gte=since, at__lt=until, subaccount__in=list(subaccounts)
    ).values_list("subaccount", "at")
    counts: Counter[tuple[int, int]] = Counter()
    for number, at in seen:
        if number is None:  # filtered on subaccount__in: never, but the column is nullable
            continue
        counts[number, int((at - since).total_seconds() // 3600)] += 1
    busiest = max(counts.values(), default=1)
    audit = reverse("audit_log")
    lines = []
    for row, number in enumerate(sorted({number for number, _ in counts})):
        cells = []
        for hour in range(CHART_HOURS):
            start = since + timedelta(hours=hour)
            count = counts[number, hour]
            end = start + timedelta(hours=1)
            title = f"Subaccount {number}, {start:%H:00}–{end:%H:00} UTC: {count} trip{'s' if count != 1 else ''}"
            cells.append(ChartCell(LABEL_W + hour * (CELL_W + GAP), count, title, _level(count, busiest)))
        query = urlencode({"action": TRIP_ACTION, "subaccount": number, "since": f"{since:%Y-%m-%d}"})
        total = sum(cell.count for cell in cells)
        lines.append(ChartLine(number, row * (CELL_H + GAP), total, f"{audit}?{query}", cells))
    grid_w = CHART_HOURS * (CELL_W + GAP)
    height = len(lines) * (CELL_H + GAP) + AXIS_H
    ticks = [
        (LABEL_W + hour * (CELL_W + GAP), f"{since + timedelta(hours=hour):%H:00}") for hour in range(0, CHART_HOURS, 6)
    ]
    return TripChart(lines, ticks, LABEL_W + grid_w + TOTAL_W, height, since, until, total_x=LABEL_W + grid_w + 6)
