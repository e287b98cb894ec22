"""Client for Kalshi's order-group endpoints (Trade API v2).

The only package in the project that imports `requests` or signs. It imports nothing from
Django, so management commands and benchmarks can use it as is; Django wiring (credentials
from the vault, the cache as the rate limiter's store) lives in ogpanel/exchange.py.

- errors.py     typed errors with a message an operator can act on
- keys.py       input validation, private keys, RSA-PSS signing (§2)
- client.py     KalshiClient: the calls, their retries, budgets and deadlines (§3, §6, §11)
- results.py    its typed results, read strictly from the JSON (§4, §11)
- transport.py  what a call that got no HTTP answer means
- deadline.py   one deadline shared by every call a request makes
- ratelimit.py  the account's read and write token buckets, shared by its keys (§6, §11)
- stream.py     OrderGroupStream, the order_group_updates WebSocket channel (§8)

Reference: ../shared/kalshi-order-groups.md.
"""

from ogpanel.kalshi.client import KalshiClient
from ogpanel.kalshi.deadline import deadline
from ogpanel.kalshi.errors import (
    BadRequest,
    ClockSkew,
    Forbidden,
    InvalidInput,
    KalshiError,
    MalformedResponse,
    NotFound,
    RateLimited,
    Rejected,
    ServerError,
    StreamGap,
    Timeout,
    Unauthorized,
    Unreachable,
)
from ogpanel.kalshi.keys import (
    MAX_CONTRACTS_LIMIT,
    ORDER_GROUP_ID_RE,
    load_private_key,
    public_key_fingerprint,
    sign,
    validate_contracts_limit,
    validate_exchange_index,
    validate_order_group_id,
    validate_subaccount,
)
from ogpanel.kalshi.ratelimit import (
    REQUEST_COST,
    TIERS,
    Bucket,
    BucketStore,
    Budget,
    BudgetState,
    MemoryStore,
    RateLimiter,
    StoreUnavailable,
)
from ogpanel.kalshi.results import (
    AccountLimits,
    CallRecord,
    CreatedOrderGroup,
    EndpointCosts,
    OrderGroup,
    OrderGroupDetail,
)
from ogpanel.kalshi.stream import OrderGroupStream, OrderGroupUpdate, ws_url_for

__all__ = [
    "MAX_CONTRACTS_LIMIT",
    "ORDER_GROUP_ID_RE",
    "REQUEST_COST",
    "TIERS",
    "AccountLimits",
    "BadRequest",
    "Bucket",
    "BucketStore",
    "Budget",
    "BudgetState",
    "CallRecord",
    "ClockSkew",
    "CreatedOrderGroup",
    "EndpointCosts",
    "Forbidden",
    "InvalidInput",
    "KalshiClient",
    "KalshiError",
    "MalformedResponse",
    "MemoryStore",
    "NotFound",
    "OrderGroup",
    "OrderGroupDetail",
    "OrderGroupStream",
    "OrderGroupUpdate",
    "RateLimited",
    "RateLimiter",
    "Rejected",
    "ServerError",
    "StoreUnavailable",
    "StreamGap",
    "Timeout",
    "Unauthorized",
    "Unreachable",
    "deadline",
    "load_private_key",
    "public_key_fingerprint",
    "sign",
    "validate_contracts_limit",
    "validate_exchange_index",
    "validate_order_group_id",
    "validate_subaccount",
    "ws_url_for",
]
