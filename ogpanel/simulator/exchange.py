"""Order-group state and semantics of the simulated exchange (reference §5).

Nothing here knows about HTTP: the server turns requests into calls on
`Exchange`, and tests call it directly through `SimulatorServer`. One lock
guards all state; every call is short, so finer locking would buy nothing.
"""

import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Collection
from dataclasses import dataclass, field, replace
from typing import Any

WINDOW_SECONDS = 15.0
MIN_LIMIT = 1
MAX_LIMIT = 1_000_000


class ExchangeError(Exception):
    """A refusal, answered over HTTP as `{"error": {"code", "message", "details"}}`."""

    def __init__(self, status: int, code: str, message: str, details: str | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details is not None:
            error["details"] = self.details
        return {"error": error}


def bad_request(message: str, code: str = "invalid_parameters") -> ExchangeError:
    return ExchangeError(400, code, message)


def not_found(message: str) -> ExchangeError:
    return ExchangeError(404, "not_found", message)


class Clock:
    """Semantic time for the rolling window: a monotonic source plus an offset.

    Tests advance the offset instead of sleeping 15 seconds. Authentication
    never uses this clock; it checks timestamps against the wall clock.
    """

    def __init__(self, source: Callable[[], float] = time.monotonic) -> None:
        self._source = source
        self._offset = 0.0
        self._lock = threading.Lock()

    @property
    def offset(self) -> float:
        return self._offset

    def now(self) -> float:
        return self._source() + self._offset

    def advance(self, seconds: float) -> None:
        # Moving backwards would let expired fills count again.
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        with self._lock:
            self._offset += seconds

    def reset(self) -> None:
        with self._lock:
            self._offset = 0.0


@dataclass
class Order:
    id: str
    subaccount: int
    group_id: str
    ticker: str
    side: str
    action: str
    count: int
    filled: int = 0
    status: str = "resting"  # resting -> executed (fully filled) or cancelled

    @property
    def remaining(self) -> int:
        return self.count - self.filled


@dataclass
class Group:
    id: str
    subaccount: int
    limit: int
    triggered: bool = False
    fills: deque[tuple[float, int]] = field(default_factory=deque)  # (semantic time, contracts)
    order_ids: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class GroupEvent:
    """A change to a group, as the order_group_updates channel reports it (reference §8)."""

    event_type: str  # created | triggered | reset | deleted | limit_updated
    group_id: str
    subaccount: int
    contracts_limit: int | None = None  # on created and limit_updated only


@dataclass(frozen=True)
class GroupView:
    """A consistent snapshot of one group, taken under the lock."""

    id: str
    subaccount: int
    contracts_limit: int
    triggered: bool
    volume: int
    orders: dict[str, str]  # every order ever placed in the group -> its status

    @property
    def resting_order_ids(self) -> list[str]:
        return [order_id for order_id, status in self.orders.items() if status == "resting"]

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "subaccount": self.subaccount,
            "contracts_limit": self.contracts_limit,
            "triggered": self.triggered,
            "volume": self.volume,
            "orders": dict(self.orders),
        }


class Exchange:
    """Groups and orders of every subaccount of one simulated member.

    A group triggers when the contracts filled by its orders over the last
    15 s (semantic clock) *exceed* its limit; exactly the limit does not
    trigger (DOC-OG says "exceeds"). Triggering cancels the group's resting
    orders and rejects new ones until a reset, which also zeroes the window.

    Every change goes to `listener` as a GroupEvent (the simulator publishes
    them over WebSocket). Trigger and reset report a change of state only, so
    triggering a triggered group again reports nothing.
    """

    def __init__(self, *, max_subaccount: int = 32, clock: Clock | None = None) -> None:
        if max_subaccount < 0:
            raise ValueError("max_subaccount must be >= 0")
        self.max_subaccount = max_subaccount
        self.clock = clock or Clock()
        self._lock = threading.Lock()
        self._groups: dict[str, Group] = {}
        self._orders: dict[str, Order] = {}
        # Called with the lock held, so events come out in the order the changes
        # happened; it must return quickly and never call back into the exchange.
        self.listener: Callable[[GroupEvent], None] | None = None

    def validate_subaccount(self, subaccount: int) -> None:
        if isinstance(subaccount, bool) or not isinstance(subaccount, int):
            raise bad_request("subaccount must be a whole number")
        if not 0 <= subaccount <= self.max_subaccount:
            raise bad_request(f"subaccount must be between 0 and {self.max_subaccount}")

    # Groups

    def create_group(self, subaccount: int, contracts_limit: int) -> str:
        self.validate_subaccount(subaccount)
        _validate_limit(contracts_limit)
        group = Group(id=str(uuid.uuid4()), subaccount=subaccount, limit=contracts_limit)
        with self._lock:
            self._groups[group.id] = group
            self._emit("created", group, with_limit=True)
        return group.id

    def list_groups(self, subaccounts: Collection[int] | None) -> list[GroupView]:
        """Groups in creation order; `subaccounts=None` spans every subaccount."""
        with self._lock:
            return [
                self._view(group)
                for group in self._groups.values()
                if subaccounts is None or group.subaccount in subaccounts
            ]

    def get_group(self, group_id: str, subaccounts: Collection[int] | None) -> GroupView:
        with self._lock:
            return self._view(self._find(group_id, subaccounts))

    def delete_group(self, group_id: str, subaccount: int) -> None:
        with self._lock:
            group = self._find(group_id, {subaccount})
            self._cancel_resting(group)
            del self._groups[group.id]
            self._emit("deleted", group)

    def reset_group(self, group_id: str, subaccount: int) -> None:
        with self._lock:
            group = self._find(group_id, {subaccount})
            was_triggered = group.triggered
            group.triggered = False
            group.fills.clear()
            if was_triggered:
                self._emit("reset", group)

    def trigger_group(self, group_id: str, subaccount: int) -> None:
        with self._lock:
            self._trigger(self._find(group_id, {subaccount}))

    def update_limit(self, group_id: str, subaccount: int, contracts_limit: int) -> None:
        _validate_limit(contracts_limit)
        with self._lock:
            group = self._find(group_id, {subaccount})
            group.limit = contracts_limit
            self._emit("limit_updated", group, with_limit=True)
            if self._volume(group) > group.limit:
                self._trigger(group)

    # Orders

    def place_order(
        self,
        *,
        subaccount: int,
        group_id: str,
        count: int,
        ticker: str,
        side: str = "yes",
        action: str = "buy",
    ) -> Order:
        """Rest a new order in a group; returns a copy of it."""
        self.validate_subaccount(subaccount)
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise bad_request("count must be a whole number >= 1")
        with self._lock:
            group = self._find(group_id, {subaccount})
            if group.triggered:
                raise bad_request(
                    f"order group {group_id} is triggered; reset it to place orders",
                    code="order_group_triggered",
                )
            order = Order(
                id=str(uuid.uuid4()),
                subaccount=subaccount,
                group_id=group.id,
                ticker=ticker,
                side=side,
                action=action,
                count=count,
            )
            self._orders[order.id] = order
            group.order_ids.append(order.id)
            return replace(order)

    def fill(self, order_id: str, count: int) -> GroupView:
        """Match `count` contracts of a resting order; returns its group afterwards.

        `count` may exceed what the order has left: all of it counts toward the
        window, so seeding code can push a group over its limit with one call.
        The order is executed once its own size is filled.
        """
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise bad_request("count must be a whole number >= 1")
        with self._lock:
            order = self._orders.get(order_id)
            if order is None:
                raise not_found(f"order {order_id} not found")
            if order.status != "resting":
                raise bad_request(f"order {order_id} is {order.status}", code="order_not_resting")
            order.filled = min(order.count, order.filled + count)
            if order.remaining == 0:
                order.status = "executed"
            # A resting order's group exists: delete cancels the group's orders.
            group = self._groups[order.group_id]
            group.fills.append((self.clock.now(), count))
            if self._volume(group) > group.limit:
                self._trigger(group)
            return self._view(group)

    # Inspection

    def group(self, group_id: str) -> GroupView:
        """Any subaccount's group, for tests and the control API."""
        return self.get_group(group_id, None)

    def state(self) -> dict[str, Any]:
        with self._lock:
            return {
                "clock_offset": self.clock.offset,
                "groups": [self._view(group).as_dict() for group in self._groups.values()],
                "orders": [
                    {
                        "order_id": order.id,
                        "subaccount": order.subaccount,
                        "order_group_id": order.group_id,
                        "ticker": order.ticker,
                        "count": order.count,
                        "filled": order.filled,
                        "status": order.status,
                    }
                    for order in self._orders.values()
                ],
            }

    def clear(self) -> None:
        with self._lock:
            self._groups.clear()
            self._orders.clear()
            self.clock.reset()

    # Internals; the caller holds the lock.

    def _find(self, group_id: str, subaccounts: Collection[int] | None) -> Group:
        group = self._groups.get(group_id)
        # A group of another subaccount is indistinguishable from a missing one,
        # as on the exchange (DOC-FIX).
        if group is None or (subaccounts is not None and group.subaccount not in subaccounts):
            raise not_found(f"order group {group_id} not found")
        return group

    def _volume(self, group: Group) -> int:
        horizon = self.clock.now() - WINDOW_SECONDS
        while group.fills and group.fills[0][0] <= horizon:
            group.fills.popleft()
        return sum(count for _, count in group.fills)

    def _trigger(self, group: Group) -> None:
        was_triggered = group.triggered
        group.triggered = True
        self._cancel_resting(group)
        if not was_triggered:
            self._emit("triggered", group)

    def _emit(self, event_type: str, group: Group, *, with_limit: bool = False) -> None:
        if self.listener is not None:
            limit = group.limit if with_limit else None
            self.listener(GroupEvent(event_type, group.id, group.subaccount, limit))

    def _cancel_resting(self, group: Group) -> None:
        for order_id in group.order_ids:
            order = self._orders[order_id]
            if order.status == "resting":
                order.status = "cancelled"

    def _view(self, group: Group) -> GroupView:
        return GroupView(
            id=group.id,
            subaccount=group.subaccount,
            contracts_limit=group.limit,
            triggered=group.triggered,
            volume=self._volume(group),
            orders={order_id: self._orders[order_id].status for order_id in group.order_ids},
        )


def _validate_limit(contracts_limit: int) -> None:
    if isinstance(contracts_limit, bool) or not isinstance(contracts_limit, int):
        raise bad_request("contracts_limit must be a whole number")
    if not MIN_LIMIT <= contracts_limit <= MAX_LIMIT:
        raise bad_request(f"contracts_limit must be between {MIN_LIMIT} and {MAX_LIMIT:,}")
