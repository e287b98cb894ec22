"""The signed endpoints under /trade-api/v2: parsing, validation and response shapes (reference §3, §4, §10).

The official client validates responses strictly, so shapes here are exact:
limits go out as "100.00" strings, flags as JSON booleans, and every
mutation answers `{}` rather than an empty body.
"""

import json
import re
from collections.abc import Mapping
from typing import Any

from ogpanel.simulator.auth import ApiKey
from ogpanel.simulator.exchange import Exchange, ExchangeError, Order, bad_request
from ogpanel.simulator.ratelimit import RateLimiter

GROUPS_PATH = "/portfolio/order_groups"
CREATE_PATH = "/portfolio/order_groups/create"
ORDERS_PATH = "/portfolio/orders"
LIMITS_PATH = "/account/limits"
COSTS_PATH = "/account/endpoint_costs"
GROUP_PATH = re.compile(r"^/portfolio/order_groups/(?P<id>[^/]+)$")
GROUP_ACTION_PATH = re.compile(r"^/portfolio/order_groups/(?P<id>[^/]+)/(?P<action>reset|trigger|limit)$")
# Requests accept 0-2 decimals ("10", "10.0", "10.00"); limits must be whole.
FIXED_POINT = re.compile(r"^\d+(\.\d{1,2})?$")
# What an order group id may look like (ours are UUIDs). Anything else is refused as invalid
# before the lookup, as demo does (OBS: 400 invalid_parameters before any 404). Kalshi's exact rule
# is undocumented; this one is the token the panel's client also insists on.
WELL_FORMED_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
GROUP_ROUTE = GROUPS_PATH + "/{order_group_id}"

Response = tuple[int, dict[str, Any]]


def route_of(method: str, path: str) -> str | None:
    """The endpoint a request is for, as /account/endpoint_costs names it: the path with `{order_group_id}`."""
    if path in (GROUPS_PATH, CREATE_PATH, ORDERS_PATH, LIMITS_PATH, COSTS_PATH):
        return path
    if match := GROUP_ACTION_PATH.match(path):
        return f"{GROUP_ROUTE}/{match['action']}"
    if GROUP_PATH.match(path):
        return GROUP_ROUTE
    return None


def dispatch(
    exchange: Exchange,
    method: str,
    path: str,
    query: Mapping[str, str],
    raw_body: bytes,
    key: ApiKey,
    limiter: RateLimiter | None = None,
) -> Response:
    """Answer one authenticated request; `path` is relative to /trade-api/v2. Raises ExchangeError."""
    if path in (LIMITS_PATH, COSTS_PATH) and method == "GET":
        return account_budget(path, key, limiter)
    match = GROUP_ACTION_PATH.match(path) or GROUP_PATH.match(path)
    if match and not WELL_FORMED_ID.match(match["id"]):
        raise bad_request("order_group_id is not a valid order group id")
    if path == GROUPS_PATH and method == "GET":
        return list_groups(exchange, query, key)
    if path == CREATE_PATH and method == "POST":
        return create_group(exchange, raw_body, key)
    if path == ORDERS_PATH and method == "POST":
        return create_order(exchange, raw_body, key)
    match = GROUP_ACTION_PATH.match(path)
    if match and method == "PUT":
        return group_action(exchange, match["id"], match["action"], query, raw_body, key)
    match = GROUP_PATH.match(path)
    if match and method == "GET":
        return get_group(exchange, match["id"], query, key)
    if match and method == "DELETE":
        return delete_group(exchange, match["id"], query, key)
    raise ExchangeError(404, "not_found", f"no endpoint {method} /trade-api/v2{path}")


def account_budget(path: str, key: ApiKey, limiter: RateLimiter | None) -> Response:
    """GET /account/limits and GET /account/endpoint_costs: the key's account's budget (reference §11).

    A simulator started without a tier enforces no budget, and says so with a 404 rather than
    inventing numbers a client would then pace itself to.
    """
    if limiter is None:
        raise ExchangeError(404, "not_found", "this simulator enforces no rate limits (start it with a tier)")
    return 200, limiter.limits(key.account) if path == LIMITS_PATH else limiter.costs()


def list_groups(exchange: Exchange, query: Mapping[str, str], key: ApiKey) -> Response:
    """GET /portfolio/order_groups: no pagination, no subaccount in the items."""
    groups = exchange.list_groups(_read_scope(exchange, query, key))
    return 200, {
        "order_groups": [
            {
                "id": group.id,
                "contracts_limit_fp": _fixed_point(group.contracts_limit),
                "is_auto_cancel_enabled": group.triggered,
                "exchange_index": 0,
            }
            for group in groups
        ]
    }


def get_group(exchange: Exchange, group_id: str, query: Mapping[str, str], key: ApiKey) -> Response:
    """GET /portfolio/order_groups/{id}.

    `orders` lists the group's orders that are still resting: cancelled and
    fully executed orders drop out. Kalshi leaves this undocumented (§5); we
    chose resting orders because they are what a trigger would cancel.
    """
    group = exchange.get_group(group_id, _read_scope(exchange, query, key))
    return 200, {
        "is_auto_cancel_enabled": group.triggered,
        "contracts_limit_fp": _fixed_point(group.contracts_limit),
        "orders": group.resting_order_ids,
        "exchange_index": 0,
    }


def create_group(exchange: Exchange, raw_body: bytes, key: ApiKey) -> Response:
    """POST /portfolio/order_groups/create: 201, and `subaccount` is required by SYNC."""
    body = _json_object(raw_body, required=True)
    subaccount = _int_field(body, "subaccount")
    subaccount = key.default_subaccount() if subaccount is None else subaccount
    _check_access(exchange, key, subaccount)
    _check_exchange_index(_int_field(body, "exchange_index"))
    group_id = exchange.create_group(subaccount, _contracts_limit(body))
    return 201, {"order_group_id": group_id, "subaccount": subaccount, "exchange_index": 0}


def delete_group(exchange: Exchange, group_id: str, query: Mapping[str, str], key: ApiKey) -> Response:
    """DELETE /portfolio/order_groups/{id}: cancels resting orders, then the group is gone."""
    exchange.delete_group(group_id, _write_subaccount(exchange, query, key))
    return 200, {}


def group_action(
    exchange: Exchange, group_id: str, action: str, query: Mapping[str, str], raw_body: bytes, key: ApiKey
) -> Response:
    """PUT /portfolio/order_groups/{id}/reset, /trigger and /limit.

    Reset and trigger take an empty body (what SYNC sends) or `{}` (what SDK
    sends); limit needs a JSON body.
    """
    subaccount = _write_subaccount(exchange, query, key)
    if action == "limit":
        limit = _contracts_limit(_json_object(raw_body, required=True))
        exchange.update_limit(group_id, subaccount, limit)
    else:
        _json_object(raw_body, required=False)
        if action == "reset":
            exchange.reset_group(group_id, subaccount)
        else:
            exchange.trigger_group(group_id, subaccount)
    return 200, {}


def create_order(exchange: Exchange, raw_body: bytes, key: ApiKey) -> Response:
    """POST /portfolio/orders: just enough of an order to rest it in a group."""
    body = _json_object(raw_body, required=True)
    subaccount = _int_field(body, "subaccount")
    subaccount = key.default_subaccount() if subaccount is None else subaccount
    _check_access(exchange, key, subaccount)
    ticker = _str_field(body, "ticker")
    side = _str_field(body, "side")
    action = _str_field(body, "action")
    group_id = _str_field(body, "order_group_id")
    count = _int_field(body, "count")
    if side not in ("yes", "no"):
        raise bad_request("side must be yes or no")
    if action not in ("buy", "sell"):
        raise bad_request("action must be buy or sell")
    if count is None:
        raise bad_request("count is required")
    order = exchange.place_order(
        subaccount=subaccount, group_id=group_id, count=count, ticker=ticker, side=side, action=action
    )
    return 201, {"order": order_body(order)}


def order_body(order: Order) -> dict[str, Any]:
    return {
        "order_id": order.id,
        "order_group_id": order.group_id,
        "status": order.status,
        "ticker": order.ticker,
        "side": order.side,
        "action": order.action,
        "count": order.count,
        "fill_count": order.filled,
        "remaining_count": order.remaining,
        "subaccount": order.subaccount,
    }


# Parsing helpers


def _fixed_point(contracts: int) -> str:
    return f"{contracts}.00"


def _json_object(raw_body: bytes, *, required: bool) -> dict[str, Any]:
    if not raw_body.strip():
        if required:
            raise bad_request("a JSON body is required")
        return {}
    try:
        body = json.loads(raw_body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise bad_request("the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise bad_request("the body must be a JSON object")
    return body


def _int_field(body: Mapping[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise bad_request(f"{name} must be an integer")
    return value


def _str_field(body: Mapping[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise bad_request(f"{name} must be a non-empty string")
    return value


def _contracts_limit(body: Mapping[str, Any]) -> int:
    """`contracts_limit` (int) or `contracts_limit_fp` (string); if both, they must agree."""
    limit = _int_field(body, "contracts_limit")
    fixed_point = body.get("contracts_limit_fp")
    if fixed_point is not None:
        if not isinstance(fixed_point, str) or not FIXED_POINT.match(fixed_point):
            raise bad_request('contracts_limit_fp must be a string like "100.00"')
        whole, _, fraction = fixed_point.partition(".")
        if fraction.strip("0"):
            raise bad_request("contracts_limit_fp must be a whole number of contracts")
        if limit is not None and limit != int(whole):
            raise bad_request("contracts_limit and contracts_limit_fp disagree")
        limit = int(whole)
    if limit is None:
        raise bad_request("contracts_limit or contracts_limit_fp is required")
    return limit


def _query_int(query: Mapping[str, str], name: str) -> int | None:
    value = query.get(name)
    if value is None:
        return None
    if not (value.isascii() and value.isdigit()):
        raise bad_request(f"{name} must be a whole number")
    return int(value)


def _check_access(exchange: Exchange, key: ApiKey, subaccount: int) -> None:
    exchange.validate_subaccount(subaccount)
    if not key.allows(subaccount):
        raise ExchangeError(403, "forbidden", f"this API key may not use subaccount {subaccount}")


def _check_exchange_index(exchange_index: int | None) -> None:
    if exchange_index not in (None, 0):
        raise bad_request("exchange_index must be 0")


def _read_scope(exchange: Exchange, query: Mapping[str, str], key: ApiKey) -> frozenset[int] | None:
    """The subaccounts a list or get covers: the one asked for, else all the key may see."""
    subaccount = _query_int(query, "subaccount")
    if subaccount is None:
        return key.subaccounts
    _check_access(exchange, key, subaccount)
    return frozenset({subaccount})


def _write_subaccount(exchange: Exchange, query: Mapping[str, str], key: ApiKey) -> int:
    subaccount = _query_int(query, "subaccount")
    subaccount = key.default_subaccount() if subaccount is None else subaccount
    _check_access(exchange, key, subaccount)
    _check_exchange_index(_query_int(query, "exchange_index"))
    return subaccount
