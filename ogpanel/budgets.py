"""The rate budget of each Kalshi account, drawn on by every credential and panel process that uses it.

Kalshi budgets the account (the member), not the API key or the subaccount (reference §11), so
credentials are grouped by account: those with the same `Credential.account` (blank: the one
account of their environment) and base URL share one RateLimiter, whose two buckets live in Redis
when there is one (every process sees the same tokens) and in this process's memory otherwise.

What the budget is: the tier configured on the credential (else OGPANEL_KALSHI_TIER), until the
exchange says otherwise. Each process asks GET /account/limits and GET /account/endpoint_costs
(where present) in the background when it first uses an account, and again on every credential
test; the exchange's answer wins, is kept in the shared cache for the other processes, and shows
on the credentials page.

With Redis down, each limiter keeps to its share of the budget (OGPANEL_PROCESSES, see
kalshi/ratelimit.py) and rejoins the shared buckets when Redis answers; `degraded()` says so to
the dashboard and `cache_health()` to /healthz.

`budget_state(credential)` reads an account's write bucket now (rate, tokens left, when the next
write is free) without spending anything: for a view showing what a sweep is waiting on.
"""

import hashlib
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

import redis
from django.conf import settings

from ogpanel import metrics, sharedcache
from ogpanel.kalshi import (
    Bucket,
    Budget,
    BudgetState,
    KalshiClient,
    KalshiError,
    MemoryStore,
    NotFound,
    RateLimiter,
    StoreUnavailable,
)
from ogpanel.models import Credential

DEFAULT_ACCOUNT = "default"
REMEMBER_SECONDS = 24 * 3600  # how long the exchange's word on a budget is kept in the shared cache

logger = logging.getLogger(__name__)

# One bucket per account per kind, kept as the time it is full again (GCRA; kalshi/ratelimit.py's
# MemoryStore has the same rules in Python). Redis's own clock, so hosts need not agree on time.
# Numbers go back as strings: Redis turns a Lua number into an integer.
_BUCKET_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local op, rate, capacity = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local amount, max_wait = tonumber(ARGV[4]), tonumber(ARGV[5])
local full_at = tonumber(redis.call('GET', KEYS[1]) or now)
if full_at < now then full_at = now end
if op == 'peek' then return tostring(capacity - (full_at - now) * rate) end
local wait = 0
if op == 'reserve' then
  full_at = full_at + amount / rate
  wait = full_at - capacity / rate - now
  if wait < 1e-9 then wait = 0 end
  if wait > max_wait then return 'refused' end
elseif op == 'drain' then
  full_at = math.max(full_at, now + capacity / rate)
else
  full_at = full_at + amount / rate
end
redis.call('SET', KEYS[1], string.format('%.6f', full_at), 'PX', math.ceil((full_at - now) * 1000) + 1000)
return tostring(wait)
"""


class RedisBucketStore:
    """kalshi's BucketStore on Redis: one atomic script call per request."""

    def __init__(self, url: str, timeout: float) -> None:
        self._redis = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
        self._script = self._redis.register_script(_BUCKET_SCRIPT)

    def _run(self, op: str, key: str, bucket: Bucket, amount: float = 0.0, max_wait: float = 0.0) -> str:
        try:
            answer = self._script(keys=[key], args=[op, bucket.rate, bucket.capacity, amount, max_wait])
        except (redis.RedisError, OSError) as exc:
            raise StoreUnavailable(type(exc).__name__) from None
        return answer.decode() if isinstance(answer, bytes) else str(answer)

    def reserve(self, key: str, cost: float, bucket: Bucket, max_wait: float) -> float | None:
        answer = self._run("reserve", key, bucket, cost, max_wait)
        return None if answer == "refused" else float(answer)

    def peek(self, key: str, cost: float, bucket: Bucket) -> tuple[float, float]:
        available = float(self._run("peek", key, bucket))
        return available, max((cost - available) / bucket.rate, 0.0)

    def drain(self, key: str, bucket: Bucket) -> None:
        self._run("drain", key, bucket)

    def charge(self, key: str, tokens: float, bucket: Bucket) -> None:
        self._run("charge", key, bucket, tokens)

    def ping(self) -> bool:
        try:
            return bool(self._redis.ping())
        except (redis.RedisError, OSError):
            return False


_lock = threading.Lock()
_store: RedisBucketStore | MemoryStore | None = None
_limiters: dict[str, RateLimiter] = {}
_asked: set[str] = set()  # accounts whose budget this process has asked the exchange for
_reads = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ogpanel-account-limits")


def _redis_url() -> str | None:
    cache = settings.CACHES["default"]
    return cache["LOCATION"] if cache["BACKEND"].endswith("RedisCache") else None


def _shared_store() -> RedisBucketStore | MemoryStore:
    global _store
    if _store is None:
        url = _redis_url()
        _store = RedisBucketStore(url, settings.OGPANEL_CACHE_TIMEOUT) if url else MemoryStore()
    return _store


def account_of(credential: Credential) -> str:
    """The account a credential's calls are budgeted to: its name at its exchange."""
    return f"{credential.account or DEFAULT_ACCOUNT}@{credential.base_url}"


def _remembered_key(account: str) -> str:
    return "ogpanel:account-budget:" + hashlib.sha256(account.encode()).hexdigest()[:32]


def configured_budget(credential: Credential) -> Budget:
    return Budget.for_tier(credential.tier or settings.OGPANEL_KALSHI_TIER)


def limiter_for(credential: Credential) -> RateLimiter:
    """The account's limiter (one per account and process), on the best budget known for it."""
    account = account_of(credential)
    with _lock:
        limiter = _limiters.get(account)
        if limiter is None:
            limiter = _limiters[account] = RateLimiter(
                configured_budget(credential),
                store=_shared_store(),
                name=account,
                shares=settings.OGPANEL_PROCESSES,
                on_wait=metrics.limiter_waited,
            )
            remembered = sharedcache.cache.get(_remembered_key(account))
            if remembered is not None:
                limiter.budget = remembered["budget"]
        elif limiter.budget.source == "configured":
            limiter.budget = configured_budget(credential)  # the tier may have been changed since
        limiter.shares = settings.OGPANEL_PROCESSES
    return limiter


@dataclass(frozen=True)
class AccountBudget:
    """What the credentials page says about a credential's account budget."""

    account: str
    budget: Budget
    checked_at: datetime | None = None  # when the exchange last told us
    problem: str = ""  # why the last question to the exchange went unanswered

    @property
    def from_exchange(self) -> bool:
        return self.budget.source == "exchange"

    def describe(self) -> str:
        budget = self.budget
        words = (
            f"{budget.tier.title()}: {budget.read.rate / budget.default_cost:g} reads and "
            f"{budget.write.rate / budget.default_cost:g} writes a second "
            f"(bursts of {budget.write.capacity / budget.default_cost:g} writes)"
        )
        source = "as the exchange reported" if self.from_exchange else "as configured"
        return f"{words}, {source}" + (f"; {self.problem}" if self.problem else "")


def account_budget(credential: Credential) -> AccountBudget:
    """The budget a credential's account is held to now, for the credentials page; never calls the exchange."""
    account = account_of(credential)
    remembered = sharedcache.cache.get(_remembered_key(account)) or {}
    budget = remembered.get("budget") or limiter_for(credential).budget
    return AccountBudget(
        credential.account or DEFAULT_ACCOUNT, budget, remembered.get("checked_at"), remembered.get("problem", "")
    )


def ask_exchange(credential: Credential, client: KalshiClient) -> AccountBudget:
    """GET /account/limits, then GET /account/endpoint_costs: the exchange's word on the account's budget.

    What it says replaces the configured tier, for this process at once and for the others
    through the shared cache. A failure leaves the budget as it was and is reported.
    """
    account = account_of(credential)
    limiter = limiter_for(credential)
    now = datetime.now(UTC)
    try:
        limits = client.get_account_limits()
    except KalshiError as exc:
        if isinstance(exc, NotFound):
            problem = "the exchange does not report account budgets (no GET /account/limits)"
        else:
            problem = f"the exchange's budget could not be read: {exc.operator_message}"
        # An exchange without the endpoint (the simulator without a tier) is no trouble: only a failure warns.
        logger.log(logging.INFO if isinstance(exc, NotFound) else logging.WARNING, "account %s: %s", account, problem)
        remembered = {**(sharedcache.cache.get(_remembered_key(account)) or {}), "problem": problem}
        sharedcache.cache.set(_remembered_key(account), remembered, timeout=REMEMBER_SECONDS)
        return AccountBudget(
            credential.account or DEFAULT_ACCOUNT, limiter.budget, remembered.get("checked_at"), problem
        )
    try:
        costs = client.get_endpoint_costs()
    except NotFound:
        costs = None  # an exchange without the endpoint: every call costs the default
    except KalshiError as exc:
        logger.warning("account %s: endpoint costs unread (%s); assuming the default", account, exc.operator_message)
        costs = None
    budget = limits.budget(costs)
    if budget.tier != limiter.budget.tier:
        logger.info("account %s: the exchange reports tier %s (was %s)", account, budget.tier, limiter.budget.tier)
    limiter.budget = budget
    sharedcache.cache.set(
        _remembered_key(account), {"budget": budget, "checked_at": now, "problem": ""}, timeout=REMEMBER_SECONDS
    )
    return AccountBudget(credential.account or DEFAULT_ACCOUNT, budget, now)


def ask_exchange_once(credential: Credential, client: KalshiClient) -> None:
    """At a process's first use of an account, ask the exchange for its budget, in the background:
    the call that needed the client must not wait for it (a hanging exchange would double its wait)."""
    if not settings.OGPANEL_READ_ACCOUNT_LIMITS:
        return
    account = account_of(credential)
    with _lock:
        if account in _asked:
            return
        _asked.add(account)
    _reads.submit(_ask_logged, credential, client)


def _ask_logged(credential: Credential, client: KalshiClient) -> None:
    try:
        ask_exchange(credential, client)
    except Exception:  # nobody waits on this thread to hear about it
        logger.exception("reading the budget of account %s failed", account_of(credential))


def budget_state(credential: Credential, kind: str = "write") -> BudgetState:
    """The account's bucket as it is now (rate, tokens available, seconds until the next request is free)."""
    return limiter_for(credential).state(kind)  # type: ignore[arg-type]


def degraded() -> bool:
    """True while this process works without the shared cache: local listings, local budgets."""
    with _lock:
        alone = any(not limiter.shared for limiter in _limiters.values())
    return alone or sharedcache.down_since() is not None


def cache_health() -> dict:
    """/healthz's view of the shared cache: asked now, and whether budgets are shared or local."""
    if _redis_url() is None:
        return {"status": "not configured", "budgets": "this process only"}
    store = _shared_store()
    answers = sharedcache.probe() and (not isinstance(store, RedisBucketStore) or store.ping())
    if answers:
        return {"status": "ok", "budgets": "shared"}
    since = sharedcache.down_since()
    return {
        "status": "unavailable",
        "budgets": f"local: 1/{settings.OGPANEL_PROCESSES} of each account's budget per process",
        **({"since": since.isoformat(timespec="seconds")} if since else {}),
    }


def forget() -> None:
    """Tests: no limiter, no store, nothing asked yet (settings may point somewhere else now)."""
    global _store
    with _lock:
        _limiters.clear()
        _asked.clear()
        _store = None
