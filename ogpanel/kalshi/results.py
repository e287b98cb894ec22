"""The typed answers of the exchange client, and the strict reading of the JSON they come from (§4, §11).

The official client validates responses strictly (§10), and so does this one: a missing required
field, or a value of the wrong type, is a MalformedResponse rather than a guess.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, overload

from ogpanel.kalshi.errors import MalformedResponse
from ogpanel.kalshi.keys import whole_contracts
from ogpanel.kalshi.ratelimit import REQUEST_COST, Bucket, Budget, route_key


@dataclass(frozen=True)
class CallRecord:
    """What `observer` hears after each call: the endpoint, how it ended, and where the time went."""

    method: str
    route: str  # e.g. "/portfolio/order_groups/{order_group_id}/trigger"
    outcome: str  # "ok", or the error's class name: "RateLimited", "Timeout", "Rejected", ...
    status: int | None  # the last HTTP status the exchange answered with (None: no answer came)
    attempts: int
    seconds: float  # the whole call, rate-limiter waits included
    waited: float  # of which waiting for the rate budget
    kind: str  # the budget it drew on: "read" or "write"
    sent: int  # tries that went out to the exchange
    rate_limited: int  # of those, how many the exchange answered 429
    refused: bool  # the local rate limiter refused the last try: RateLimited, and that try was not sent


@dataclass(frozen=True)
class OrderGroup:
    id: str
    contracts_limit: int | None
    contracts_limit_fp: str | None
    is_auto_cancel_enabled: bool
    exchange_index: int

    @property
    def triggered(self) -> bool:
        # Undocumented flag, observed true after trigger and false after reset (§5).
        return self.is_auto_cancel_enabled


@dataclass(frozen=True)
class OrderGroupDetail:
    id: str
    contracts_limit: int | None
    contracts_limit_fp: str | None
    is_auto_cancel_enabled: bool
    orders: tuple[str, ...]
    exchange_index: int

    @property
    def triggered(self) -> bool:
        return self.is_auto_cancel_enabled


@dataclass(frozen=True)
class CreatedOrderGroup:
    order_group_id: str
    subaccount: int
    exchange_index: int


@dataclass(frozen=True)
class AccountLimits:
    """GET /account/limits: the account's tier and its two buckets (§11)."""

    usage_tier: str
    read: Bucket
    write: Bucket

    def budget(self, costs: EndpointCosts | None = None) -> Budget:
        """The budget a RateLimiter keeps to, with per-endpoint costs where the exchange lists them."""
        costs = costs or EndpointCosts(REQUEST_COST, {})
        return Budget(self.usage_tier, self.read, self.write, "exchange", costs.default_cost, costs.costs)


@dataclass(frozen=True)
class EndpointCosts:
    """GET /account/endpoint_costs: tokens per endpoint where they differ from the default."""

    default_cost: int
    costs: dict[tuple[str, str], int]  # (METHOD, route as ratelimit.route_key makes it) -> tokens


@overload
def parse_field[T](obj: dict, name: str, kind: type[T], where: str, *, required: Literal[True]) -> T: ...
@overload
def parse_field[T](obj: dict, name: str, kind: type[T], where: str, *, required: Literal[False]) -> T | None: ...
def parse_field[T](obj: dict, name: str, kind: type[T], where: str, *, required: bool) -> T | None:
    value = obj.get(name)
    if value is None:
        if required:
            raise MalformedResponse(f"{where}.{name} is missing")
        return None
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise MalformedResponse(f"{where}.{name} is not a {kind.__name__}")
    return value


def parse_object(value: object, where: str) -> dict:
    if not isinstance(value, dict):
        raise MalformedResponse(f"{where} is not a JSON object")
    return value


def parse_limit(obj: dict, where: str) -> tuple[int | None, str | None]:
    """Whole-contract limit from `contracts_limit` (if an int is sent) or `contracts_limit_fp`."""
    fp = parse_field(obj, "contracts_limit_fp", str, where, required=False)
    whole = parse_field(obj, "contracts_limit", int, where, required=False)
    if whole is not None or fp is None:
        return whole, fp
    try:
        return whole_contracts(fp), fp
    except ValueError:
        raise MalformedResponse(f"{where}.contracts_limit_fp is not a number") from None


def parse_order_group(item: object, where: str) -> OrderGroup:
    obj = parse_object(item, where)
    limit, fp = parse_limit(obj, where)
    return OrderGroup(
        id=parse_field(obj, "id", str, where, required=True),
        contracts_limit=limit,
        contracts_limit_fp=fp,
        is_auto_cancel_enabled=parse_field(obj, "is_auto_cancel_enabled", bool, where, required=True),
        exchange_index=parse_field(obj, "exchange_index", int, where, required=False) or 0,
    )


def parse_account_limits(obj: dict) -> AccountLimits:
    """The body of GET /account/limits; a bucket that could not hold one request is refused."""
    buckets = {}
    for kind in ("read", "write"):
        bucket = parse_object(obj.get(kind), f"response.{kind}")
        rate = parse_field(bucket, "refill_rate", int, f"response.{kind}", required=True)
        capacity = parse_field(bucket, "bucket_capacity", int, f"response.{kind}", required=True)
        if rate <= 0 or capacity < REQUEST_COST:
            raise MalformedResponse(f"response.{kind} is not a usable bucket ({rate} a second, {capacity} tokens)")
        buckets[kind] = Bucket(float(rate), float(capacity))
    tier = parse_field(obj, "usage_tier", str, "response", required=True)
    return AccountLimits(tier.lower(), buckets["read"], buckets["write"])


def parse_endpoint_costs(obj: dict) -> EndpointCosts:
    """The body of GET /account/endpoint_costs, keyed as the limiter looks costs up."""
    default = parse_field(obj, "default_cost", int, "response", required=True)
    items = obj.get("endpoint_costs")
    if not isinstance(items, list):
        raise MalformedResponse("response.endpoint_costs is not a list")
    costs = {}
    for i, item in enumerate(items):
        where = f"endpoint_costs[{i}]"
        entry = parse_object(item, where)
        method = parse_field(entry, "method", str, where, required=True)
        path = parse_field(entry, "path", str, where, required=True)
        costs[method.upper(), route_key(path)] = parse_field(entry, "cost", int, where, required=True)
    return EndpointCosts(default, costs)
