"""Client-side rate limiting that keeps every panel process within the exchange's budgets (§6)."""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Callable
from typing import Literal, Protocol

from ogpanel.kalshi.errors import RateLimited

REQUEST_COST = 10  # tokens per request, Kalshi's default cost (§6)
TIER_WINDOW = 0.4  # seconds; see RateLimiter


TIERS: dict[str, tuple[float, float]] = {  # tokens per second: (read, write), §6
    "basic": (200, 100),
    "advanced": (300, 300),
    "premier": (1000, 1000),
    "paragon": (2000, 2000),
    "prime": (4000, 4000),
}


class CounterStore(Protocol):
    """The subset of Django's cache API the limiter needs; pass `django.core.cache.cache`."""

    def add(self, key: str, value: int, timeout: int) -> bool: ...
    def incr(self, key: str, delta: int = 1) -> int: ...
    def decr(self, key: str, delta: int = 1) -> int: ...


class MemoryStore:
    """CounterStore for a single process. Expired counters are dropped as new ones are added."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._data: dict[str, tuple[int, float]] = {}

    def add(self, key: str, value: int, timeout: int) -> bool:
        with self._lock:
            now = time.monotonic()
            self._data = {k: v for k, v in self._data.items() if v[1] > now}
            if key in self._data:
                return False
            self._data[key] = (value, now + timeout)
            return True

    def incr(self, key: str, delta: int = 1) -> int:
        with self._lock:
            entry = self._data.get(key)
            if entry is None or entry[1] <= time.monotonic():
                raise ValueError(f"Key {key!r} not found")
            self._data[key] = (entry[0] + delta, entry[1])
            return entry[0] + delta

    def decr(self, key: str, delta: int = 1) -> int:
        return self.incr(key, -delta)


class RateLimiter:
    """Keeps one API key's requests under the exchange's read and write budgets.

    Fixed windows on wall-clock time (so every process agrees on where a window starts),
    counted in a shared store (so every process draws from the same budget).

    Why this never overruns the exchange: a window of length L admits at most rate×L
    tokens, and any interval T overlaps at most T/L + 2 windows, so the limiter admits
    at most rate×(T + 2L) tokens in it. The exchange's token bucket refills at `rate`
    and holds 2 s of budget, so from full it accepts rate×(T + 2 s) in any interval T.
    With L ≤ 1 s (0.1 s by default; every tier's 10-token cost fits in it) we stay inside
    that, with ~1.8 s of slack for network jitter bunching requests up on arrival. The
    guarantee holds only while nothing outside these limiters spends the same key.

    `for_tier` uses TIER_WINDOW (0.4 s) instead: a window is the largest burst admitted at
    once, and the dashboard reads up to 33 subaccounts at once. 2L = 0.8 s also fits a read
    bucket holding only 1 s of budget (the simulator's; the docs state 2 s for writes only),
    with 0.2 s left for jitter.
    """

    def __init__(
        self,
        read_per_second: float,
        write_per_second: float,
        *,
        store: CounterStore | None = None,
        window: float = 0.1,
        max_wait: float = 30.0,
        prefix: str = "kalshi-rl",
    ) -> None:
        if read_per_second <= 0 or write_per_second <= 0 or window <= 0:
            raise ValueError("Rates and window must be positive.")
        self.rates = {"read": float(read_per_second), "write": float(write_per_second)}
        self.store = store if store is not None else MemoryStore()
        self.window = window
        self.max_wait = max_wait
        self.prefix = prefix
        self.clock: Callable[[], float] = time.time  # seams for tests
        self.sleep: Callable[[float], None] = time.sleep

    @classmethod
    def for_tier(cls, tier: str, **kwargs) -> RateLimiter:
        try:
            read, write = TIERS[tier.lower()]
        except KeyError:
            raise ValueError(f"Unknown rate-limit tier {tier!r}; expected one of {', '.join(TIERS)}.") from None
        return cls(read, write, **{"window": TIER_WINDOW, **kwargs})

    def acquire(self, key_id: str, kind: Literal["read", "write"], cost: int = REQUEST_COST) -> float:
        """Block until `cost` tokens may be spent; return the seconds waited.

        Raises RateLimited instead of waiting past `max_wait`.
        """
        rate = self.rates[kind]
        length = max(self.window, cost / rate)  # a window must admit at least one request
        budget = rate * length
        waited = 0.0
        while True:
            now = self.clock()
            index = math.floor(now / length + 1e-9)  # waking a hair early still counts as the next window
            key = f"{self.prefix}:{key_id}:{kind}:{index}"
            self.store.add(key, 0, math.ceil(length) + 1)
            try:
                used = self.store.incr(key, cost)
            except ValueError:  # expired between add and incr; start over
                continue
            if used <= budget + 1e-9:
                return waited
            with contextlib.suppress(ValueError):  # already expired: nothing to undo
                self.store.decr(key, cost)
            delay = max((index + 1) * length - now, 0.001)  # to the next window's start
            if waited + delay > self.max_wait:
                raise RateLimited(f"local {kind} budget for this API key exhausted beyond {self.max_wait:g} s")
            self.sleep(delay)
            waited += delay
