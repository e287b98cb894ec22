"""Typed errors: what went wrong with an exchange call, in words an operator can act on."""

from __future__ import annotations

import json
from typing import Any


class KalshiError(Exception):
    """Base of everything the client raises. `operator_message` is safe to show to a person."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        details: str | None = None,
        subaccount: int | None = None,
        order_group_id: str | None = None,
        operator_message: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.details = details
        # What the request addressed, for the operator message.
        self.subaccount = subaccount
        self.order_group_id = order_group_id
        self._operator_message = operator_message

    @property
    def operator_message(self) -> str:
        return self._operator_message or self._describe()

    def _describe(self) -> str:
        return f"The exchange returned an error (HTTP {self.status}): {_sentence(self.message)}"


class InvalidInput(KalshiError, ValueError):
    """Refused before anything was signed or sent."""

    def _describe(self) -> str:
        return self.message


class BadRequest(KalshiError):
    def _describe(self) -> str:
        return f"The exchange refused the request as invalid: {_sentence(self.message)}"


class Unauthorized(KalshiError):
    def _describe(self) -> str:
        return "The exchange rejected the request signature: check the API key id and private key."


class ClockSkew(Unauthorized):
    def _describe(self) -> str:
        return "The exchange says the request timestamp is stale: this machine's clock is off."


class Forbidden(KalshiError):
    def _describe(self) -> str:
        if self.subaccount is None:
            return "This API key is not allowed to do that."
        return f"This API key is not allowed to act on subaccount {self.subaccount}."


class NotFound(KalshiError):
    def _describe(self) -> str:
        if self.order_group_id is None:  # list or create: the endpoint itself is missing
            return "The exchange has no such endpoint (HTTP 404): check the exchange URL."
        if self.subaccount is None:
            return "Order group not found."
        return f"Order group not found on subaccount {self.subaccount}."


class RateLimited(KalshiError):
    """A 429 from the exchange (status 429), or the local limiter giving up (status None)."""

    def _describe(self) -> str:
        if self.status is None:
            return "Too many requests are queued for this API key; try again shortly."
        return "Rate limited by the exchange; try again shortly."


class Rejected(KalshiError):
    """A success status (2xx) whose body carries an error: the exchange refused all the same (§11)."""

    def _describe(self) -> str:
        reason = _sentence(self.message)
        return f"The exchange refused the request (HTTP {self.status} with an error in its answer): {reason}"


class ServerError(KalshiError):
    def _describe(self) -> str:
        return f"The exchange had an internal error (HTTP {self.status}); try again shortly."


class Unreachable(KalshiError):
    """No HTTP answer at all: refused, dropped, DNS, TLS. `message` is the reason."""

    def _describe(self) -> str:
        return f"The exchange could not be reached: {_sentence(self.message)}"


class Timeout(Unreachable):
    def __init__(self, message: str, *, seconds: float, connect: bool, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.seconds = seconds
        self.connect = connect

    def _describe(self) -> str:
        seconds = round(self.seconds, 1)  # a deadline cuts timeouts to odd fractions
        if self.connect:
            return f"The exchange did not accept a connection within {seconds:g} s."
        return f"The exchange did not answer within {seconds:g} s."


class MalformedResponse(KalshiError):
    """Non-JSON, wrong shape, wrong types, or a status we do not expect (a redirect, say)."""

    def _describe(self) -> str:
        return f"The exchange answered with an unexpected response: {_sentence(self.message)}"


class StreamGap(KalshiError):
    """The update stream skipped a sequence number: an update was lost, so re-read the groups."""

    def __init__(self, message: str, *, expected: int, received: int, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.expected = expected
        self.received = received

    def _describe(self) -> str:
        return "The exchange's update stream lost an update; order groups must be read again."


_STATUS_ERRORS: dict[int, type[KalshiError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    429: RateLimited,
}


def error_for_status(status: int, body: bytes, *, reason: str = "", **context: Any) -> KalshiError:
    """The error an HTTP answer other than success stands for: a REST call's or a WebSocket handshake's.

    `context` (subaccount, order_group_id) is what the request addressed, for the operator message.
    """
    code, message, details = _error_fields(status, body, reason)
    fields = {"status": status, "code": code, "details": details, **context}
    if 300 <= status < 400:
        return MalformedResponse(
            f"unexpected redirect (HTTP {status})",
            **fields,
            operator_message=f"The exchange answered with an unexpected redirect (HTTP {status}).",
        )
    if status == 401 and "header_timestamp_expired" in f"{code} {details}".lower():
        return ClockSkew(message, **fields)
    if status in _STATUS_ERRORS:
        return _STATUS_ERRORS[status](message, **fields)
    if status >= 500:
        return ServerError(message, **fields)
    if 400 <= status < 500:  # 409, 422 and the like: the exchange refused what we asked
        return BadRequest(message, **fields)
    return MalformedResponse(
        f"unexpected status (HTTP {status})",
        **fields,
        operator_message=f"The exchange answered with an unexpected status (HTTP {status}).",
    )


def rejection_in(status: int, body: object, **context: Any) -> Rejected | None:
    """The refusal a success answer's parsed body carries, if any: `{"error": ...}` or a `code`/`message` pair."""
    if not isinstance(body, dict):
        return None
    if not body.get("error") and not ("code" in body and "message" in body):
        return None
    code, message, details = _fields_of(status, body, "")
    return Rejected(message, status=status, code=code, details=details, **context)


def _error_fields(status: int, body: bytes, reason: str) -> tuple[str | None, str, str | None]:
    """(code, message, details) from any error body shape seen in the wild: nested, flat or bare (§6)."""
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    return _fields_of(status, parsed, reason)


def _fields_of(status: int, parsed: object, reason: str) -> tuple[str | None, str, str | None]:
    if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
        parsed = parsed["error"]  # nested, what Kalshi sends today
    if not isinstance(parsed, dict):
        return None, f"HTTP {status} {reason}".strip(), None
    # A bare string under "error" is e.g. the 429 body.
    message = parsed["error"] if isinstance(parsed.get("error"), str) else parsed.get("message") or parsed.get("msg")
    return _text(parsed.get("code")), _text(message) or f"HTTP {status}", _text(parsed.get("details"))


def _text(value: object) -> str | None:
    if value is None or value == "":
        return None
    return (value if isinstance(value, str) else json.dumps(value))[:500]


def _sentence(text: str) -> str:
    text = text.strip() or "no details"
    return text if text.endswith((".", "!", "?")) else text + "."


# ---------------------------------------------------------------- input checks
