"""Exchange-side rate limiting: per-key read and write token buckets (reference §6, DOC-RL)."""

import threading
import time
from collections.abc import Callable

# Tokens per second (read, write) for each API tier.
TIERS: dict[str, tuple[int, int]] = {
    "basic": (200, 100),
    "advanced": (300, 300),
    "premier": (1000, 1000),
    "paragon": (2000, 2000),
    "prime": (4000, 4000),
}
REQUEST_COST = 10
READ_BURST_SECONDS = 1.0
WRITE_BURST_SECONDS = 2.0  # DOC-RL: the write bucket bursts up to 2 s of budget


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


class RateLimiter:
    """Two buckets per key id: GETs spend read tokens, every other method write tokens.

    Runs on real monotonic time, not the semantic clock, so advancing the
    rolling window in a test does not refill budgets.
    """

    def __init__(self, tier: str, clock: Callable[[], float] = time.monotonic) -> None:
        if tier not in TIERS:
            raise ValueError(f"unknown tier {tier!r}; choose one of {', '.join(TIERS)}")
        self.tier = tier
        self.read_rate, self.write_rate = TIERS[tier]
        self._clock = clock
        self._buckets: dict[tuple[str, bool], TokenBucket] = {}
        self._lock = threading.Lock()

    def allow(self, key_id: str, method: str) -> bool:
        is_write = method.upper() != "GET"
        now = self._clock()
        with self._lock:
            bucket = self._buckets.get((key_id, is_write))
            if bucket is None:
                rate = self.write_rate if is_write else self.read_rate
                burst = WRITE_BURST_SECONDS if is_write else READ_BURST_SECONDS
                bucket = self._buckets[key_id, is_write] = TokenBucket(rate, rate * burst, now)
            return bucket.take(REQUEST_COST, now)

    def clear(self) -> None:
        with self._lock:
            self._buckets.clear()
