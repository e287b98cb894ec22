"""KalshiClient: the seven order-group endpoints and the account's budget over one pooled, signed session.

Reference §3, §4, §6 and §11. Each call (its tries and the backoff between them) fits in one
connect + read timeout; inside `deadline(...)` every call shares what is left of the deadline,
rate-limiter waits included. A success whose body is an error is a failure (Rejected).
`observer`, when given, hears the outcome of every call: a hook for metrics, with no dependency.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.cookiejar import DefaultCookiePolicy
from typing import Any, Literal, cast
from urllib.parse import urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter

from ogpanel.kalshi.deadline import charge, ends_at
from ogpanel.kalshi.errors import (
    InvalidInput,
    KalshiError,
    MalformedResponse,
    RateLimited,
    Timeout,
    error_for_status,
    rejection_in,
)
from ogpanel.kalshi.keys import (
    load_private_key,
    public_key_fingerprint,
    sign,
    validate_contracts_limit,
    validate_exchange_index,
    validate_order_group_id,
    validate_subaccount,
)
from ogpanel.kalshi.ratelimit import RateLimiter
from ogpanel.kalshi.results import (
    AccountLimits,
    CallRecord,
    CreatedOrderGroup,
    EndpointCosts,
    OrderGroup,
    OrderGroupDetail,
    parse_account_limits,
    parse_endpoint_costs,
    parse_field,
    parse_limit,
    parse_object,
    parse_order_group,
)
from ogpanel.kalshi.stream import OrderGroupStream
from ogpanel.kalshi.transport import transport_error, worth_retrying

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
MIN_ATTEMPT_SECONDS = 0.05  # less time than this left: another try could not get an answer
GROUP = "/portfolio/order_groups/{order_group_id}"  # the route a group's own endpoints share


class KalshiClient:
    """One per credential. Thread-safe: the panel fans out ~33 calls at once through one client."""

    def __init__(
        self,
        base_url: str,
        key_id: str,
        private_key_pem: bytes | str,
        *,
        timeout: tuple[float, float] = (3.0, 10.0),
        max_subaccount: int = 32,
        limiter: RateLimiter | None = None,
        retries: int = 2,
        backoff: float = 0.2,
        pool_size: int = 64,
        observer: Callable[[CallRecord], None] | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise InvalidInput("The exchange URL must start with https:// (or http:// for a local simulator).")
        if not key_id or not isinstance(key_id, str):
            raise InvalidInput("The API key id is empty.")
        self.base_url = base_url.rstrip("/")
        self._base_path = urlsplit(self.base_url).path  # signed as part of every path (§2)
        self.key_id = key_id
        self._private_key = load_private_key(private_key_pem)  # parsed once; the PEM is not kept
        self.fingerprint = public_key_fingerprint(self._private_key)
        self.timeout = (float(timeout[0]), float(timeout[1]))
        self.max_subaccount = max_subaccount
        self.limiter = limiter
        self.retries = retries
        self.backoff = backoff
        self.observer = observer
        self.clock: Callable[[], float] = time.time  # seam: tests sign with a stale clock

        self._session = requests.Session()
        # One client talks to one host; the pool must hold every concurrent call of the fan-out.
        # max_retries=0: all retrying is ours, so it is counted and signed afresh.
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=pool_size, max_retries=0)
        self._session.mount("https://", adapter)
        self._session.mount("http://", adapter)
        # The API is stateless; refusing cookies keeps the shared session free of
        # state written by one thread and sent by another.
        self._session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
        # The environment is read once here, not on every call (requests would look for a .netrc and
        # the proxy variables each time: ~10% of a dashboard's CPU): its proxies and CA bundle stand.
        self._session.trust_env = False
        self._session.proxies = requests.utils.get_environ_proxies(self.base_url)
        self._session.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
        self._session.headers.update({"Accept": "application/json", "User-Agent": "ogpanel"})

    def __repr__(self) -> str:
        return f"KalshiClient(base_url={self.base_url!r}, key_id={self.key_id!r}, key={self.fingerprint})"

    def close(self) -> None:
        self._session.close()

    def stream(self, **options: Any) -> OrderGroupStream:
        """The order_group_updates stream for this key, signed with the key this client already parsed."""
        return OrderGroupStream(self.base_url, self.key_id, self._private_key, **options)

    def __enter__(self) -> KalshiClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- endpoints

    def list_order_groups(self, subaccount: int | None = None) -> list[OrderGroup]:
        """GET /portfolio/order_groups. subaccount None lists every subaccount."""
        params = self._params(subaccount=subaccount)
        body = self._call(
            "GET",
            "/portfolio/order_groups",
            params=params,
            kind="read",
            retry=True,
            ok=(200,),
            subaccount=subaccount,
        )
        items = parse_object(body, "response").get("order_groups")
        if not isinstance(items, list):
            raise MalformedResponse("response.order_groups is not a list")
        return [parse_order_group(item, f"order_groups[{i}]") for i, item in enumerate(items)]

    def get_order_group(self, order_group_id: str, subaccount: int | None = None) -> OrderGroupDetail:
        """GET /portfolio/order_groups/{id}. subaccount None searches every subaccount."""
        path = self._group_path(order_group_id)
        params = self._params(subaccount=subaccount)
        obj = parse_object(
            self._call(
                "GET",
                path,
                route=GROUP,
                params=params,
                kind="read",
                retry=True,
                ok=(200,),
                subaccount=subaccount,
                order_group_id=order_group_id,
            ),
            "response",
        )
        orders = obj.get("orders")
        if not isinstance(orders, list) or not all(isinstance(o, str) for o in orders):
            raise MalformedResponse("response.orders is not a list of order ids")
        limit, fp = parse_limit(obj, "response")
        return OrderGroupDetail(
            id=order_group_id,  # the response carries no id (§4)
            contracts_limit=limit,
            contracts_limit_fp=fp,
            is_auto_cancel_enabled=parse_field(obj, "is_auto_cancel_enabled", bool, "response", required=True),
            orders=tuple(orders),
            exchange_index=parse_field(obj, "exchange_index", int, "response", required=False) or 0,
        )

    def create_order_group(
        self, contracts_limit: int, subaccount: int | None = None, exchange_index: int | None = None
    ) -> CreatedOrderGroup:
        """POST /portfolio/order_groups/create. Never retried: on doubt, list and reconcile."""
        body: dict[str, int] = {"contracts_limit": validate_contracts_limit(contracts_limit)}
        body.update(self._params(subaccount=subaccount, exchange_index=exchange_index))
        obj = parse_object(
            self._call(
                "POST",
                "/portfolio/order_groups/create",
                json_body=body,
                kind="write",
                retry=False,
                ok=(201, 200),
                subaccount=subaccount,
            ),
            "response",
        )
        returned = parse_field(obj, "subaccount", int, "response", required=False)
        index = parse_field(obj, "exchange_index", int, "response", required=False)
        return CreatedOrderGroup(
            order_group_id=parse_field(obj, "order_group_id", str, "response", required=True),
            # Older specs return the id only; the group then lives where we asked.
            subaccount=returned if returned is not None else body.get("subaccount", 0),
            exchange_index=index if index is not None else body.get("exchange_index", 0),
        )

    def delete_order_group(
        self, order_group_id: str, subaccount: int | None = None, exchange_index: int | None = None
    ) -> None:
        """DELETE /portfolio/order_groups/{id}. Never retried: a repeat after success would 404."""
        path = self._group_path(order_group_id)
        params = self._params(subaccount=subaccount, exchange_index=exchange_index)
        self._mutate(
            "DELETE", path, GROUP, params, None, retry=False, subaccount=subaccount, order_group_id=order_group_id
        )

    def reset_order_group(
        self, order_group_id: str, subaccount: int | None = None, exchange_index: int | None = None
    ) -> None:
        """PUT /portfolio/order_groups/{id}/reset."""
        path = self._group_path(order_group_id, "/reset")
        params = self._params(subaccount=subaccount, exchange_index=exchange_index)
        route = GROUP + "/reset"
        self._mutate("PUT", path, route, params, {}, retry=True, subaccount=subaccount, order_group_id=order_group_id)

    def trigger_order_group(
        self, order_group_id: str, subaccount: int | None = None, exchange_index: int | None = None
    ) -> None:
        """PUT /portfolio/order_groups/{id}/trigger."""
        path = self._group_path(order_group_id, "/trigger")
        params = self._params(subaccount=subaccount, exchange_index=exchange_index)
        route = GROUP + "/trigger"
        self._mutate("PUT", path, route, params, {}, retry=True, subaccount=subaccount, order_group_id=order_group_id)

    def update_order_group_limit(
        self,
        order_group_id: str,
        contracts_limit: int,
        subaccount: int | None = None,
        exchange_index: int | None = None,
    ) -> None:
        """PUT /portfolio/order_groups/{id}/limit.

        Sends `?subaccount=` as the newest official client does (§3); without it a group
        outside subaccount 0 cannot be addressed.
        """
        path = self._group_path(order_group_id, "/limit")
        body = {"contracts_limit": validate_contracts_limit(contracts_limit)}
        params = self._params(subaccount=subaccount, exchange_index=exchange_index)
        route = GROUP + "/limit"
        self._mutate("PUT", path, route, params, body, retry=True, subaccount=subaccount, order_group_id=order_group_id)

    def get_account_limits(self) -> AccountLimits:
        """GET /account/limits: the tier and buckets of the account this key belongs to."""
        obj = parse_object(
            self._call("GET", "/account/limits", kind="read", retry=True, ok=(200,), subaccount=None), "response"
        )
        return parse_account_limits(obj)

    def get_endpoint_costs(self) -> EndpointCosts:
        """GET /account/endpoint_costs: what each endpoint costs where it is not the default."""
        obj = parse_object(
            self._call("GET", "/account/endpoint_costs", kind="read", retry=True, ok=(200,), subaccount=None),
            "response",
        )
        return parse_endpoint_costs(obj)

    # -- plumbing

    def _group_path(self, order_group_id: str, suffix: str = "") -> str:
        return f"/portfolio/order_groups/{validate_order_group_id(order_group_id)}{suffix}"

    def _params(self, *, subaccount: int | None = None, exchange_index: int | None = None) -> dict[str, int]:
        params = {}
        if subaccount is not None:
            params["subaccount"] = validate_subaccount(subaccount, self.max_subaccount)
        if exchange_index is not None:
            params["exchange_index"] = validate_exchange_index(exchange_index)
        return params

    def _mutate(
        self,
        method: str,
        path: str,
        route: str,
        params: dict,
        json_body: dict | None,
        *,
        retry: bool,
        subaccount: int | None,
        order_group_id: str,
    ) -> None:
        body = self._call(
            method,
            path,
            route=route,
            params=params,
            json_body=json_body,
            kind="write",
            retry=retry,
            ok=(200, 204),
            subaccount=subaccount,
            order_group_id=order_group_id,
        )
        parse_object(body, "response")  # `{}` usually; anything but an object is not a success

    def _call(
        self,
        method: str,
        path: str,
        *,
        kind: Literal["read", "write"],
        retry: bool,
        ok: tuple[int, ...],
        subaccount: int | None,
        route: str | None = None,
        order_group_id: str | None = None,
        params: dict | None = None,
        json_body: dict | None = None,
    ) -> object:
        """Send one request, retrying only when `retry` says repeating it is harmless.

        Returns the parsed JSON body, or `{}` for a 204. The tries and the backoff between them
        fit in one connect + read timeout from the first send, and in the caller's deadline.
        """
        route = route or path
        began = time.monotonic()
        deadline = ends_at()
        tries_end: float | None = None
        tally = _Tally(kind)
        status: int | None = None
        error: KalshiError | None = None
        previous: KalshiError | None = None
        try:
            for attempt in range(1, 2 + (self.retries if retry else 0)):
                tally.attempts = attempt
                if attempt > 1:
                    pause = self.backoff * 2 ** (attempt - 2) * random.uniform(0.5, 1.5)  # noqa: S311 (jitter, not a secret)
                    if _left(tries_end, deadline) < pause + MIN_ATTEMPT_SECONDS:
                        break  # no time for another try: the last error stands
                    time.sleep(pause)
                try:
                    tally.waited += self._wait_for_budget(method, route, kind, deadline)
                except RateLimited as refusal:  # the local limiter's, before anything was sent
                    error, tally.refused = refusal, True
                    break
                tries_end = tries_end or time.monotonic() + sum(self.timeout)
                left = _left(tries_end, deadline)
                if left < MIN_ATTEMPT_SECONDS:
                    error = error or _out_of_time()
                    break
                timeout = (min(self.timeout[0], left), min(self.timeout[1], left))
                previous = error
                tally.sent += 1
                try:
                    response = self._send(method, path, params, json_body, timeout)
                except (requests.RequestException, urllib3.exceptions.HTTPError) as exc:
                    error = transport_error(exc, timeout)
                    retryable = worth_retrying(exc, error)
                else:
                    status = response.status_code
                    if status in ok:
                        body = _json(response) if status != 204 else {}
                        error = rejection_in(status, body, subaccount=subaccount, order_group_id=order_group_id)
                        if error is None:
                            self._observe(method, route, "ok", status, began, tally)
                            return body
                        retryable = False  # a refusal, however it is dressed
                    else:
                        error = _error_from(response, subaccount, order_group_id)
                        retryable = status in RETRY_STATUSES
                        if status == 429:
                            tally.rate_limited += 1
                            if self.limiter is not None:
                                self.limiter.exhausted(kind)
                if not retryable:
                    break
        except KalshiError as exc:  # a body we cannot read
            error = exc
        if isinstance(error, Timeout) and previous is not None and error.seconds < self.timeout[1]:
            error = previous  # a last try cut short by the budget: what the exchange said before is the news
        self._observe(method, route, type(error).__name__, status, began, tally)
        # Raised outside the except clause on purpose: requests' exception carries the
        # signed request, and must not ride along as __context__ into logs.
        raise cast(KalshiError, error)  # set by every try that did not return

    def _wait_for_budget(
        self, method: str, route: str, kind: Literal["read", "write"], deadline: float | None
    ) -> float:
        """Before signing, so waiting here cannot age the timestamp."""
        if self.limiter is None:
            return 0.0
        max_wait = None if deadline is None else deadline - time.monotonic()
        return self.limiter.acquire(kind, self.limiter.cost(method, route), max_wait=max_wait)

    def _observe(self, method: str, route: str, outcome: str, status: int | None, began: float, tally: _Tally) -> None:
        charge(time.monotonic() - began)  # every call ends here: its time comes off the request's deadline
        if self.observer is not None:
            record = CallRecord(
                method,
                route,
                outcome,
                status,
                tally.attempts,
                time.monotonic() - began,
                tally.waited,
                kind=tally.kind,
                sent=tally.sent,
                rate_limited=tally.rate_limited,
                refused=tally.refused,
            )
            self.observer(record)

    def _send(
        self, method: str, path: str, params: dict | None, json_body: dict | None, timeout: tuple[float, float]
    ) -> requests.Response:
        timestamp = str(int(self.clock() * 1000))  # fresh on every attempt: a retry is signed anew
        headers = {
            "KALSHI-ACCESS-KEY": self.key_id,
            "KALSHI-ACCESS-TIMESTAMP": timestamp,
            "KALSHI-ACCESS-SIGNATURE": sign(self._private_key, timestamp, method, self._base_path + path),
        }
        # json= also sets Content-Type: application/json (demo refuses PUTs without it).
        return self._session.request(
            method,
            self.base_url + path,
            params=params,
            json=json_body,
            headers=headers,
            timeout=timeout,
            allow_redirects=False,
        )


@dataclass
class _Tally:
    """What one call's tries came to, for its CallRecord."""

    kind: Literal["read", "write"]
    attempts: int = 0
    sent: int = 0
    rate_limited: int = 0
    refused: bool = False
    waited: float = 0.0


def _left(tries_end: float | None, deadline: float | None) -> float:
    ends = [end for end in (tries_end, deadline) if end is not None]
    return min(ends) - time.monotonic() if ends else float("inf")


def _out_of_time() -> Timeout:
    return Timeout(
        "the request's deadline passed before the call was sent",
        seconds=0.0,
        connect=False,
        operator_message="The exchange did not answer in the time this request had left.",
    )


def _json(response: requests.Response) -> object:
    try:
        return json.loads(response.content)
    except ValueError:
        raise MalformedResponse(
            f"HTTP {response.status_code} body is not valid JSON",
            status=response.status_code,
            operator_message="The exchange answered with something that is not valid JSON.",
        ) from None


def _error_from(response: requests.Response, subaccount: int | None, order_group_id: str | None) -> KalshiError:
    return error_for_status(
        response.status_code,
        response.content,
        reason=response.reason or "",
        subaccount=subaccount,
        order_group_id=order_group_id,
    )
