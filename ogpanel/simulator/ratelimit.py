"""Exchange-side rate limiting: one read and one write token bucket per account (reference §6, §11).

Kalshi's docs give the budget to the account (the member), not to an API key or a subaccount,
so every key of one account draws on the same two buckets. Which account a key belongs to is
set when the key is added (`KeyRing.add(..., account=...)`); by default all keys belong to one.

Each request costs the endpoint's token cost (`endpoint_costs`, default 10). GETs spend read
tokens, every other method write tokens. `limits()` and `costs()` are what
GET /account/limits and GET /account/endpoint_costs answer.
"""

import threading
import time
from collections.abc import Callable

# Tokens per second (read, write) for each API tier, in SYNC's order. DOC-RL's table gives basic,
# advanced, premier, paragon and prime; expert and prestige are named by SYNC without numbers, so
# these two are guesses between their neighbours (a client should read /account/limits anyway).
TIERS: dict[str, tuple[int, int]] = {
    "basic": (200, 100),
    "advanced": (300, 300),
    "expert": (600, 600),
    "premier": (1000, 1000),
    "paragon": (2000, 2000),
    "prestige": (3000, 3000),
    "prime": (4000, 4000),
}
DEFAULT_COST = 10
READ_BURST_SECONDS = 1.0
WRITE_BURST_SECONDS = 2.0  # DOC-RL: the write bucket bursts up to 2 s of budget (SYNC: "at non-Basic tiers")
DEFAULT_ACCOUNT = "member"


class TokenBucket:
    def __init__(self, rate: float, capacity: float, now: float) -> None:
        self.rate = rate
        self.capacity = capacity
        self.tokens = capacity  # buckets start full
        self.updated = now

    def take(self, cost: float, now: float) -> bool:
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens < cost:
            return False
        self.tokens -= cost
        return True


def bucket_sizes(tier: str) -> dict[str, tuple[int, int]]:
    """(refill rate, capacity) of the read and write buckets of a tier."""
    read, write = TIERS[tier]
    return {"read": (read, int(read * READ_BURST_SECONDS)), "write": (write, int(write * WRITE_BURST_SECONDS))}


class RateLimiter:
    """Two buckets per account: GETs spend read tokens, every other method write tokens.

    `tier` is every account's tier unless `set_tier` gives one its own. Runs on real monotonic
    time, not the semantic clock, so advancing the rolling window in a test does not refill budgets.
    """

    def __init__(self, tier: str, clock: Callable[[], float] = time.monotonic) -> None:
        _check_tier(tier)
        self.tier = tier
        self._tiers: dict[str, str] = {}
        self._costs: dict[tuple[str, str], int] = {}
        self.clock = clock  # a seam: tests freeze it to count a burst exactly
        self._buckets: dict[tuple[str, bool], TokenBucket] = {}
        self._lock = threading.Lock()

    def tier_of(self, account: str) -> str:
        with self._lock:
            return self._tiers.get(account, self.tier)

    def set_tier(self, account: str, tier: str) -> None:
        """Give one account its own tier; its buckets start full at the new size."""
        _check_tier(tier)
        with self._lock:
            self._tiers[account] = tier
            self._buckets.pop((account, False), None)
            self._buckets.pop((account, True), None)

    def set_cost(self, method: str, route: str, cost: int) -> None:
        """Make one endpoint (e.g. "PUT", "/portfolio/order_groups/{order_group_id}/trigger") cost `cost` tokens."""
        if isinstance(cost, bool) or not isinstance(cost, int) or cost < 1:
            raise ValueError("cost must be a whole number >= 1")
        with self._lock:
            if cost == DEFAULT_COST:
                self._costs.pop((method.upper(), route), None)
            else:
                self._costs[method.upper(), route] = cost

    def cost(self, method: str, route: str | None) -> int:
        with self._lock:
            return self._costs.get((method.upper(), route or ""), DEFAULT_COST)

    def allow(self, account: str, method: str, route: str | None = None) -> bool:
        is_write = method.upper() != "GET"
        cost = self.cost(method, route)
        now = self.clock()
        with self._lock:
            bucket = self._buckets.get((account, is_write))
            if bucket is None:
                rate, capacity = bucket_sizes(self._tiers.get(account, self.tier))["write" if is_write else "read"]
                bucket = self._buckets[account, is_write] = TokenBucket(rate, capacity, now)
            return bucket.take(cost, now)

    def limits(self, account: str) -> dict:
        """GET /account/limits (SYNC GetAccountApiLimitsResponse): integers, as SYNC requires."""
        tier = self.tier_of(account)
        sizes = bucket_sizes(tier)
        return {
            "usage_tier": tier,
            **{kind: {"refill_rate": rate, "bucket_capacity": capacity} for kind, (rate, capacity) in sizes.items()},
            "grants": [],
        }

    def costs(self) -> dict:
        """GET /account/endpoint_costs: only the endpoints whose cost is not the default."""
        with self._lock:
            listed = sorted(self._costs.items())
        return {
            "default_cost": DEFAULT_COST,
            "endpoint_costs": [{"method": method, "path": route, "cost": cost} for (method, route), cost in listed],
        }

    def clear(self) -> None:
        """Full buckets and default costs again; tiers set per account stay."""
        with self._lock:
            self._buckets.clear()
            self._costs.clear()


def _check_tier(tier: str) -> None:
    if tier not in TIERS:
        raise ValueError(f"unknown tier {tier!r}; choose one of {', '.join(TIERS)}")
