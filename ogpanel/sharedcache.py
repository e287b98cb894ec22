"""Django's cache, or this process's memory while the shared cache (Redis) cannot be reached.

Sign-in throttling and the shared listings go through `cache` here. When Redis stops answering,
each keeps working on counters and listings of this process alone (a lockout then counts only the
failures this process saw); the outage is logged once and shown on /healthz and the dashboard.
Every RETRY_SECONDS one call tries Redis again, and the first that succeeds brings everything back
to the shared cache, without a restart. The rate budgets do the same on their own (budgets.py).

Without REDIS_URL the default cache is already this process's memory and never fails.
"""

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from django.core.cache import cache as _default
from django.core.cache.backends.locmem import LocMemCache
from redis.exceptions import RedisError

RETRY_SECONDS = 2.0
# What a cache backend raises when its server is away: redis-py's errors (refused, timed out,
# dropped) and the socket errors beneath them.
UNAVAILABLE = (RedisError, OSError)

logger = logging.getLogger(__name__)


class _Outage:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.since: datetime | None = None
        self.retry_at = 0.0


_outage = _Outage()
_local = LocMemCache("ogpanel-shared-cache-fallback", {"OPTIONS": {"MAX_ENTRIES": 20000}})


class FallbackCache:
    """The subset of Django's cache API the panel uses, each call falling back to process memory."""

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name not in ("get", "get_many", "set", "add", "incr", "delete", "delete_many"):
            raise AttributeError(name)
        return lambda *args, **kwargs: _call(name, args, kwargs)


cache = FallbackCache()


def _call(name: str, args: tuple, kwargs: dict) -> Any:
    if _outage.since is None or time.monotonic() >= _outage.retry_at:
        try:
            result = getattr(_default, name)(*args, **kwargs)
        except UNAVAILABLE as exc:
            _went_down(exc)
        else:
            if _outage.since is not None:
                _came_back()
            return result
    return getattr(_local, name)(*args, **kwargs)


def _went_down(problem: Exception) -> None:
    with _outage.lock:
        _outage.retry_at = time.monotonic() + RETRY_SECONDS
        if _outage.since is not None:
            return
        _outage.since = datetime.now(UTC)
    # The error's text can name the host; its class says enough.
    logger.warning(
        "the shared cache is unavailable (%s): sign-in throttling and listings now use this process's memory",
        type(problem).__name__,
    )


def _came_back() -> None:
    with _outage.lock:
        if _outage.since is None:
            return
        seconds = (datetime.now(UTC) - _outage.since).total_seconds()
        _outage.since = None
    logger.warning("the shared cache answers again after %.0f s: back on shared counters and listings", seconds)


def down_since() -> datetime | None:
    """When the shared cache stopped answering, if it has not answered since."""
    return _outage.since


def probe() -> bool:
    """Ask the shared cache now (a /healthz check); True when it answers."""
    try:
        _default.get("ogpanel:healthz")
    except UNAVAILABLE as exc:
        _went_down(exc)
        return False
    if _outage.since is not None:
        _came_back()
    return True


def forget_outage() -> None:
    """Tests: start from a shared cache that answers, with nothing kept in memory."""
    with _outage.lock:
        _outage.since = None
        _outage.retry_at = 0.0
    _local.clear()
