"""One deadline for everything a request asks of the exchange.

An operation that needs two exchange calls (a limit change reads the group first) must spend one
overall budget, not one timeout per call:

    with deadline(connect_timeout + read_timeout):
        previous = client.get_order_group(...)
        client.update_order_group_limit(...)

Inside, every call's timeouts, retries and rate-limiter waits are cut to what is left; a nested
deadline can only shorten it. It is a context variable: a thread pool's workers do not inherit it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_ends_at: ContextVar[float | None] = ContextVar("kalshi_deadline", default=None)


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    end = time.monotonic() + max(seconds, 0.0)
    current = _ends_at.get()
    token = _ends_at.set(end if current is None else min(current, end))
    try:
        yield
    finally:
        _ends_at.reset(token)


def ends_at() -> float | None:
    """The monotonic time by which the current request's exchange calls must be done, if any."""
    return _ends_at.get()


def remaining() -> float | None:
    end = _ends_at.get()
    return None if end is None else end - time.monotonic()
