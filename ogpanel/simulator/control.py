"""The unauthenticated control API under /_sim/, for demos and out-of-process tests.

    GET    /_sim/state                 groups (subaccount, limit, triggered, volume, orders) and orders
    POST   /_sim/reset                 forget groups, orders, faults, the log and the clock offset; keep keys
    GET    /_sim/faults                the active faults
    POST   /_sim/faults                {kind, path?, method?, subaccount?, key_id?, status?, seconds?, times?}
                                       -> 201 {id}; kind "ignore" answers 200 {} and does nothing
    DELETE /_sim/faults                clear every fault
    POST   /_sim/keys                  {key_id, public_key_pem, subaccounts?, account?} -> 201
    POST   /_sim/tiers                 {account, tier}: that account's rate-limit tier (a tiered simulator only)
    POST   /_sim/endpoint_costs        {method, path, cost}: that endpoint's token cost (a tiered simulator only)
    POST   /_sim/clock                 {advance: seconds} -> {offset}
    POST   /_sim/groups                {subaccount?, contracts_limit} -> 201 {order_group_id}
    POST   /_sim/orders                {subaccount?, order_group_id, count?, ticker?} -> 201 {order_id}
    POST   /_sim/orders/{id}/fill      {count} -> the group's state afterwards
    GET    /_sim/requests              {requests: [...], rate_limited_count}
    DELETE /_sim/requests              clear the request log
    GET    /_sim/websockets            {enabled, connections}
    POST   /_sim/websockets            {enabled} -> {enabled, connections}; false refuses new handshakes (503)
    POST   /_sim/websockets/drop       cut every open WebSocket without a close frame -> {dropped}
    POST   /_sim/websockets/skip_seq   every subscription's next update skips one seq
    POST   /_sim/websockets/garbage    send a text frame that is not JSON to every open WebSocket

Every route is a thin wrapper over a SimulatorServer method, so the HTTP and
in-process ways of driving the simulator cannot drift apart.
"""

import json
import re
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from ogpanel.simulator.exchange import ExchangeError, bad_request
from ogpanel.simulator.ratelimit import DEFAULT_ACCOUNT

if TYPE_CHECKING:
    from ogpanel.simulator.server import SimulatorServer

FILL_PATH = re.compile(r"^/_sim/orders/(?P<id>[^/]+)/fill$")

Response = tuple[int, Any]


def dispatch(sim: "SimulatorServer", method: str, path: str, raw_body: bytes) -> Response:
    """Answer one /_sim/ request. Raises ExchangeError; ValueError becomes a 400."""
    try:
        return _route(sim, method, path, raw_body)
    except ValueError as error:
        raise bad_request(str(error)) from None


def _route(sim: "SimulatorServer", method: str, path: str, raw_body: bytes) -> Response:
    route = (method, path)
    if route == ("GET", "/_sim/state"):
        return 200, sim.exchange.state()
    if route == ("POST", "/_sim/reset"):
        sim.reset()
        return 200, {}
    if route == ("GET", "/_sim/faults"):
        return 200, {"faults": sim.faults.snapshot()}
    if route == ("POST", "/_sim/faults"):
        body = _body(raw_body)
        kind = body.pop("kind", None)
        if not isinstance(kind, str):
            raise ValueError("kind is required")
        _only(body, {"path", "method", "subaccount", "key_id", "status", "seconds", "times"})
        return 201, {"id": sim.set_fault(kind, **body)}
    if route == ("DELETE", "/_sim/faults"):
        sim.clear_faults()
        return 200, {}
    if route == ("POST", "/_sim/keys"):
        body = _body(raw_body)
        subaccounts = body.get("subaccounts")
        if subaccounts is not None and not isinstance(subaccounts, list):
            raise ValueError("subaccounts must be a list of integers")
        sim.add_key(
            _required(body, "key_id", str),
            _required(body, "public_key_pem", str),
            subaccounts,
            _required({"account": DEFAULT_ACCOUNT, **body}, "account", str),
        )
        return 201, {"key_id": body["key_id"]}
    if route == ("POST", "/_sim/tiers"):
        body = _body(raw_body)
        sim.set_tier(_required(body, "account", str), _required(body, "tier", str))
        return 200, {}
    if route == ("POST", "/_sim/endpoint_costs"):
        body = _body(raw_body)
        sim.set_endpoint_cost(
            _required(body, "method", str), _required(body, "path", str), _required(body, "cost", int)
        )
        return 200, {}
    if route == ("POST", "/_sim/clock"):
        seconds = _required(_body(raw_body), "advance", int | float)
        sim.advance(seconds)
        return 200, {"offset": sim.exchange.clock.offset}
    if route == ("POST", "/_sim/groups"):
        body = _body(raw_body)
        group_id = sim.create_group(body.get("subaccount", 0), _required(body, "contracts_limit", int))
        return 201, {"order_group_id": group_id}
    if route == ("POST", "/_sim/orders"):
        body = _body(raw_body)
        order_id = sim.place_order(
            body.get("subaccount", 0),
            _required(body, "order_group_id", str),
            body.get("count", 1),
            _required({"ticker": "SIM-TEST", **body}, "ticker", str),
        )
        return 201, {"order_id": order_id}
    match = FILL_PATH.match(path)
    if match and method == "POST":
        view = sim.exchange.fill(match["id"], _required(_body(raw_body), "count", int))
        return 200, view.as_dict()
    if route == ("GET", "/_sim/requests"):
        return 200, {
            "requests": [asdict(record) for record in sim.requests],
            "rate_limited_count": sim.rate_limited_count,
        }
    if route == ("DELETE", "/_sim/requests"):
        sim.clear_requests()
        return 200, {}
    if route == ("POST", "/_sim/websockets"):
        enabled = _body(raw_body).get("enabled")
        if not isinstance(enabled, bool):
            raise ValueError("enabled is required and must be true or false")
        sim.websockets_enabled = enabled
    if route in (("GET", "/_sim/websockets"), ("POST", "/_sim/websockets")):
        return 200, {"enabled": sim.websockets_enabled, "connections": sim.websocket_count}
    if route == ("POST", "/_sim/websockets/drop"):
        return 200, {"dropped": sim.drop_websockets()}
    if route == ("POST", "/_sim/websockets/skip_seq"):
        sim.skip_websocket_seq()
        return 200, {}
    if route == ("POST", "/_sim/websockets/garbage"):
        sim.send_websocket_garbage()
        return 200, {}
    raise ExchangeError(404, "not_found", f"no control endpoint {method} {path}")


def _body(raw_body: bytes) -> dict[str, Any]:
    if not raw_body.strip():
        return {}
    try:
        body = json.loads(raw_body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ValueError("the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object")
    return body


def _required(body: dict[str, Any], name: str, kind: Any) -> Any:
    value = body.get(name)
    if isinstance(value, bool) or not isinstance(value, kind):
        raise ValueError(f"{name} is required and must be of type {getattr(kind, '__name__', kind)}")
    return value


def _only(body: dict[str, Any], allowed: set[str]) -> None:
    unknown = set(body) - allowed
    if unknown:
        raise ValueError(f"unknown fields: {', '.join(sorted(unknown))}")
