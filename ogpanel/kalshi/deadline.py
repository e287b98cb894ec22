"""One budget of exchange time for everything a request asks of the exchange.

An operation that needs two exchange calls (a limit change reads the group first) must spend one
overall budget, not one timeout per call:

    with deadline(connect_timeout + read_timeout):
        previous = client.get_order_group(...)
        client.update_order_group_limit(...)

Inside, each call may take only what is left (its timeouts, retries and rate-limiter waits are cut
to it), and what it took is charged to the budget. Only time spent on exchange calls is charged:
the panel's own work between them (recording the attempt in the audit log, say) is not, so a slow
database cannot starve the change of the time it was promised; the page's own work is bounded by
other means. A nested deadline is charged too, and can only be smaller than what is left of its
parent. It is a context variable: a thread pool's workers do not inherit it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass


@dataclass
class _Allowance:
    left: float  # seconds of exchange time
    parent: _Allowance | None


_current: ContextVar[_Allowance | None] = ContextVar("kalshi_deadline", default=None)


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    parent = _current.get()
    seconds = max(seconds, 0.0)
    token = _current.set(_Allowance(seconds if parent is None else min(seconds, parent.left), parent))
    try:
        yield
    finally:
        _current.reset(token)


def ends_at() -> float | None:
    """For a call starting now: the monotonic time by which it must be done, if a deadline is set."""
    left = remaining()
    return None if left is None else time.monotonic() + left


def remaining() -> float | None:
    allowance = _current.get()
    return None if allowance is None else max(allowance.left, 0.0)


def charge(seconds: float) -> None:
    """A call took `seconds`: take them from the current deadline and every deadline around it."""
    allowance = _current.get()
    while allowance is not None:
        allowance.left -= seconds
        allowance = allowance.parent
