"""Client-side rate limiting: one account's read and write token buckets, mirrored (reference §6, §11).

The exchange keeps two token buckets per account (the member, shared by all its API keys): each
refills at the tier's rate up to its capacity, and a request costs its endpoint's tokens (10 by
default). A RateLimiter keeps the same two buckets on this side, in a store every panel process
shares, and lets a request go only when the exchange's bucket will hold its tokens. Mirroring the
bucket (rather than counting fixed windows) spends the exchange's starting burst too: a kill
switch of 330 writes at Basic takes (330 - 20) / 10 s instead of 33 s.

Why this never overruns the exchange: both buckets start full and refill at the same rate, and
the limiter admits a request only where the exchange's bucket, seen at admission time, holds it.
A request reaches the exchange a little after it is admitted; if that delay varies by up to d,
requests admitted within an interval T + d can arrive within T, which the exchange accepts only
if they fit its capacity plus rate x T. So the limiter's bucket is `margin` seconds of budget
smaller than the exchange's (0.25 s: at Basic, 18 writes of burst instead of 20). A 429 all the
same (someone else spent the account, or the exchange's bucket was not full when we started)
empties our bucket too. The guarantee holds only while nothing outside these limiters spends
the account.

Shared store down (the cache): each process goes on alone with `1 / shares` of the account's
budget, from an empty bucket (what the others spent is unknown), so `shares` processes together
still keep within it; it logs that once, tries the shared store again every RETRY_SECONDS and,
when it answers, charges it with what was spent meanwhile and carries on there.

Hand-written: the libraries that share a limit through a store (limits, pyrate-limiter) count
fixed, moving or sliding windows, none of which both spends a token bucket's burst and never
exceeds it, and none falls back to a local share when its store fails.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol

from ogpanel.kalshi.errors import RateLimited

REQUEST_COST = 10  # tokens per request, Kalshi's default cost (§6)
MARGIN_SECONDS = 0.25  # of budget kept back for requests bunching up on their way to the exchange
RETRY_SECONDS = 2.0  # how often a limiter working alone tries the shared store again

Kind = Literal["read", "write"]

# Tokens per second (read, write), in the order SYNC names the tiers. DOC-RL's table gives basic,
# advanced, premier, paragon and prime; expert and prestige have no published numbers, so theirs
# are placeholders between their neighbours until GET /account/limits says otherwise.
TIERS: dict[str, tuple[float, float]] = {
    "basic": (200, 100),
    "advanced": (300, 300),
    "expert": (600, 600),
    "premier": (1000, 1000),
    "paragon": (2000, 2000),
    "prestige": (3000, 3000),
    "prime": (4000, 4000),
}

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Bucket:
    rate: float  # tokens added per second
    capacity: float  # tokens it holds when full

    def share(self, parts: int) -> Bucket:
        return Bucket(self.rate / parts, self.capacity / parts)


@dataclass(frozen=True)
class Budget:
    """An account's two buckets and what each endpoint costs; configured, or as the exchange reported it."""

    tier: str
    read: Bucket
    write: Bucket
    source: Literal["configured", "exchange"] = "configured"
    default_cost: int = REQUEST_COST
    # (METHOD, route) -> tokens, for the endpoints that do not cost `default_cost`; routes are
    # paths relative to /trade-api/v2 with `{}` for each parameter ("/portfolio/order_groups/{}").
    costs: Mapping[tuple[str, str], int] = field(default_factory=dict)

    @classmethod
    def for_tier(cls, tier: str) -> Budget:
        """The documented budget of a tier. Reads hold 1 s of budget; writes 2 s (DOC-RL), except at
        Basic, where SYNC says the 2 s are for "non-Basic tiers": 1 s there, to be safe."""
        try:
            read, write = TIERS[tier.lower()]
        except KeyError:
            raise ValueError(f"Unknown rate-limit tier {tier!r}; expected one of {', '.join(TIERS)}.") from None
        write_seconds = 1.0 if tier.lower() == "basic" else 2.0
        return cls(tier.lower(), Bucket(read, read), Bucket(write, write * write_seconds))

    def bucket(self, kind: Kind) -> Bucket:
        return self.read if kind == "read" else self.write

    def cost(self, method: str, route: str) -> int:
        return self.costs.get((method.upper(), route), self.default_cost)


def route_key(path: str) -> str:
    """A path as the costs are keyed: without /trade-api/v2 and with `{}` for every `{parameter}`."""
    prefix = "/trade-api/v2"
    path = path[len(prefix) :] if path.startswith(prefix) else path
    return "/".join("{}" if part.startswith("{") and part.endswith("}") else part for part in path.split("/"))


@dataclass(frozen=True)
class BudgetState:
    """What one bucket holds now: what a progress view shows while a sweep waits on the budget."""

    kind: Kind
    tier: str
    source: str  # "configured" or "exchange"
    rate: float  # tokens per second, for this process when not shared
    capacity: float
    available: float  # tokens in the bucket now (negative: spoken for by requests waiting)
    next_free_in: float  # seconds until one more default-cost request may go
    shared: bool  # False: this process works alone on its share (the shared store is down)

    @property
    def requests_per_second(self) -> float:
        return self.rate / REQUEST_COST


class StoreUnavailable(Exception):
    """The shared store could not be reached; a store raises this rather than its client's own errors."""


class BucketStore(Protocol):
    """Token buckets kept as the time each becomes full again (GCRA); see MemoryStore for the rules."""

    def reserve(self, key: str, cost: float, bucket: Bucket, max_wait: float) -> float | None: ...
    def peek(self, key: str, cost: float, bucket: Bucket) -> tuple[float, float]: ...
    def drain(self, key: str, bucket: Bucket) -> None: ...
    def charge(self, key: str, tokens: float, bucket: Bucket) -> None: ...


class MemoryStore:
    """BucketStore in this process's memory.

    A bucket is the time `full_at` at which it is full again; it holds capacity - (full_at - now) x rate
    tokens. Reserving `cost` moves full_at on by cost / rate and answers how long to wait before the
    request may go (until the bucket held those tokens); a reservation that would wait past
    `max_wait` is not made (None).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._full_at: dict[str, float] = {}

    def reserve(self, key: str, cost: float, bucket: Bucket, max_wait: float) -> float | None:
        with self._lock:
            now = self.clock()
            full_at = max(self._full_at.get(key, now), now) + cost / bucket.rate
            wait = full_at - bucket.capacity / bucket.rate - now
            wait = wait if wait > 1e-9 else 0.0  # float dust is no wait
            if wait > max_wait:
                return None
            self._full_at[key] = full_at
            return wait

    def peek(self, key: str, cost: float, bucket: Bucket) -> tuple[float, float]:
        """(tokens available, seconds until `cost` more would be)."""
        with self._lock:
            now = self.clock()
            full_at = max(self._full_at.get(key, now), now)
        available = bucket.capacity - (full_at - now) * bucket.rate
        return available, max((cost - available) / bucket.rate, 0.0)

    def drain(self, key: str, bucket: Bucket) -> None:
        with self._lock:
            now = self.clock()
            self._full_at[key] = max(self._full_at.get(key, now), now + bucket.capacity / bucket.rate)

    def charge(self, key: str, tokens: float, bucket: Bucket) -> None:
        with self._lock:
            now = self.clock()
            self._full_at[key] = max(self._full_at.get(key, now), now) + tokens / bucket.rate


class RateLimiter:
    """One account's read and write budgets, drawn on by every credential of that account.

    `store` is shared by every process (Redis in production; this process's memory by default);
    `shares` is how many processes split the budget while it is down. `clock` and `sleep` are
    seams for tests; `on_wait(kind, seconds)` hears every request let through and how long it
    must wait first, 0 for none (a metrics hook).
    """

    def __init__(
        self,
        budget: Budget,
        *,
        store: BucketStore | None = None,
        name: str = "account",
        shares: int = 1,
        margin: float = MARGIN_SECONDS,
        max_wait: float = 30.0,
        prefix: str = "kalshi-rl",
        on_wait: Callable[[Kind, float], None] | None = None,
    ) -> None:
        if shares < 1 or margin < 0:
            raise ValueError("shares must be at least 1 and margin not negative.")
        self.budget = budget
        self.clock: Callable[[], float] = time.monotonic
        self.sleep: Callable[[float], None] = time.sleep
        self.store: BucketStore = store if store is not None else MemoryStore(lambda: self.clock())
        self.local = MemoryStore(lambda: self.clock())  # this process's share while `store` is down
        self.name = name
        self.shares = shares
        self.margin = margin
        self.max_wait = max_wait
        self.prefix = prefix
        self.on_wait = on_wait
        self._lock = threading.Lock()
        self._alone_since: float | None = None
        self._retry_at = 0.0

    @classmethod
    def for_tier(cls, tier: str, **kwargs: Any) -> RateLimiter:
        return cls(Budget.for_tier(tier), **kwargs)

    @property
    def shared(self) -> bool:
        return self._alone_since is None

    def cost(self, method: str, path: str) -> int:
        return self.budget.cost(method, route_key(path))

    def acquire(self, kind: Kind, cost: float = REQUEST_COST, *, max_wait: float | None = None) -> float:
        """Block until `cost` tokens may be spent; return the seconds waited.

        Raises RateLimited at once, without waiting, when the wait would pass `max_wait` (the
        limiter's own, or a shorter one the caller has left).
        """
        limit = self.max_wait if max_wait is None else min(max_wait, self.max_wait)
        wait = self._reserve(kind, cost, max(limit, 0.0))
        if wait is None:
            raise RateLimited(
                f"local {kind} budget of account {self.name!r} exhausted beyond {limit:g} s",
                operator_message="Too many requests are queued for this exchange account; try again shortly.",
            )
        if self.on_wait is not None:
            self.on_wait(kind, wait)
        if wait > 0:
            self.sleep(wait)
        return wait

    def exhausted(self, kind: Kind) -> None:
        """The exchange answered 429: its bucket is empty, so ours is made empty too."""
        self._use(lambda store, bucket: store.drain(self._key(kind), bucket), kind)

    def state(self, kind: Kind = "write") -> BudgetState:
        """The bucket as it is now; never blocks, never spends."""
        available, next_free_in = self._use(
            lambda store, bucket: store.peek(self._key(kind), REQUEST_COST, bucket), kind
        )
        bucket = self._bucket(kind, alone=not self.shared)
        return BudgetState(
            kind=kind,
            tier=self.budget.tier,
            source=self.budget.source,
            rate=bucket.rate,
            capacity=bucket.capacity,
            available=available,
            next_free_in=next_free_in,
            shared=self.shared,
        )

    # -- internals

    def _key(self, kind: Kind) -> str:
        return f"{self.prefix}:{self.name}:{kind}"

    def _bucket(self, kind: Kind, *, alone: bool) -> Bucket:
        bucket = self.budget.bucket(kind)
        if alone:
            bucket = bucket.share(self.shares)
        # Never smaller than one request, or a request would wait forever.
        return replace(bucket, capacity=max(bucket.capacity - bucket.rate * self.margin, REQUEST_COST, 1e-9))

    def _reserve(self, kind: Kind, cost: float, max_wait: float) -> float | None:
        return self._use(lambda store, bucket: store.reserve(self._key(kind), cost, bucket, max_wait), kind)

    def _use[T](self, operation: Callable[[BucketStore, Bucket], T], kind: Kind) -> T:
        """Run `operation(store, bucket)` on the shared store, or on this process's share while it is down."""
        if self.shared or self.clock() >= self._retry_at:
            try:
                if not self.shared:
                    self._rejoin()
                return operation(self.store, self._bucket(kind, alone=False))
            except StoreUnavailable as exc:
                self._go_alone(exc)
        return operation(self.local, self._bucket(kind, alone=True))

    def _go_alone(self, problem: StoreUnavailable) -> None:
        with self._lock:
            self._retry_at = self.clock() + RETRY_SECONDS
            if self._alone_since is not None:
                return
            self._alone_since = self.clock()
            for kind in ("read", "write"):  # what the other processes spent is unknown: start empty
                self.local.drain(self._key(kind), self._bucket(kind, alone=True))
        logger.warning(
            "rate budget of account %r: the shared store is unavailable (%s); this process now keeps to "
            "1/%d of the account's budget on its own until it answers again",
            self.name,
            problem,
            self.shares,
        )

    def _rejoin(self) -> None:
        """The shared store answers again: charge it with what this process spent alone, then use it."""
        with self._lock:
            if self._alone_since is None:
                return
            for kind in ("read", "write"):
                local = self._bucket(kind, alone=True)
                available, _ = self.local.peek(self._key(kind), 0, local)
                spent = max(local.capacity - available, 0.0)
                if spent > 0:
                    self.store.charge(self._key(kind), spent, self._bucket(kind, alone=False))
            seconds = self.clock() - self._alone_since
            self._alone_since = None
        logger.warning(
            "rate budget of account %r: the shared store answers again after %.0f s; back on the shared budget",
            self.name,
            seconds,
        )
