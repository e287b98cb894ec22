"""Failed sign-in counting and lockout, per username and per client address.

Counters live in Django's cache so that every panel process sees the same numbers (Redis in
production); while Redis cannot be reached they live in this process's memory (sharedcache.py),
so sign-in throttling keeps working, per process, through an outage. Failures are counted with
the cache's atomic `incr`, so concurrent guesses cannot slip past the limit by racing a read
and a write, and summed over the last OGPANEL_LOGIN_WINDOW_SECONDS. Reaching a limit sets a
lock that lasts OGPANEL_LOGIN_LOCKOUT_SECONDS.

Times come from `clock()`, not the cache's own expiry, so tests can move time forward; the
cache timeouts only collect the garbage.
"""

import hashlib
import time
from dataclasses import dataclass

from django.conf import settings

from ogpanel.sharedcache import cache

_PREFIX = "ogpanel:login"
# A window is counted in this many slices, one counter each: a failure is forgotten when the
# window has passed, give or take one slice (a minute, with the default 15-minute window).
_SLICES = 15


def clock() -> float:
    """Seconds since the epoch. Tests replace it to travel in time."""
    return time.time()


@dataclass(frozen=True)
class Lockout:
    """Why sign-in is refused and for how long."""

    by: str  # "username" or "address"
    seconds: int


def _key(kind: str, by: str, value: str) -> str:
    # Hashed: usernames and addresses are attacker-chosen text, and cache keys have rules.
    digest = hashlib.sha256(value.encode()).hexdigest()[:32]
    return f"{_PREFIX}:{kind}:{by}:{digest}"


def _subjects(username: str, address: str) -> list[tuple[str, str, int]]:
    subjects = [("username", username.strip().casefold(), settings.OGPANEL_LOGIN_MAX_FAILURES)]
    if address:
        subjects.append(("address", address, settings.OGPANEL_LOGIN_MAX_FAILURES_PER_ADDRESS))
    return subjects


def _increment(key: str, *, timeout: int) -> int:
    cache.add(key, 0, timeout=timeout)
    try:
        return cache.incr(key)
    except ValueError:  # evicted between add and incr: this is the first again
        cache.set(key, 1, timeout=timeout)
        return 1


def login_locked(*, username: str, address: str) -> Lockout | None:
    """The lockout in force for this username or address, if any."""
    now = clock()
    for by, value, _limit in _subjects(username, address):
        until = cache.get(_key("lock", by, value))
        if until is not None and until > now:
            return Lockout(by=by, seconds=max(1, round(until - now)))
    return None


def _slices(by: str, value: str, now: float) -> tuple[str, list[str]]:
    """The counter for now, and those for the rest of the window that ends now."""
    prefix = _key("fail", by, value)
    newest = int(now // (settings.OGPANEL_LOGIN_WINDOW_SECONDS / _SLICES))
    return f"{prefix}:{newest}", [f"{prefix}:{index}" for index in range(newest - _SLICES, newest)]


def login_failed(*, username: str, address: str) -> Lockout | None:
    """Count one failed sign-in; the lockout it starts, if it reaches a limit."""
    now = clock()
    window = settings.OGPANEL_LOGIN_WINDOW_SECONDS
    lockout_seconds = settings.OGPANEL_LOGIN_LOCKOUT_SECONDS
    started = None
    for by, value, limit in _subjects(username, address):
        current, older = _slices(by, value, now)
        count = _increment(current, timeout=2 * window) + sum(cache.get_many(older).values())
        if count >= limit:
            cache.set(_key("lock", by, value), now + lockout_seconds, timeout=lockout_seconds + 60)
            # The lockout is the penalty; afterwards the count starts again from zero.
            cache.delete_many([current, *older])
            started = started or Lockout(by=by, seconds=lockout_seconds)
    return started


def login_succeeded(*, username: str) -> None:
    """A correct password clears the username's failures (not the address's: others may share it)."""
    current, older = _slices("username", username.strip().casefold(), clock())
    cache.delete_many([current, *older])


def reauth_failed(*, session_key: str) -> bool:
    """Count a wrong answer to a re-authentication prompt; True once the session has used up its tries."""
    count = _increment(_key("reauth", "session", session_key), timeout=settings.OGPANEL_LOGIN_WINDOW_SECONDS)
    return count >= settings.OGPANEL_LOGIN_MAX_FAILURES
