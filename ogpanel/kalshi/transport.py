"""What a failed HTTP exchange means: requests' and urllib3's exceptions as the client's typed errors."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from http.client import RemoteDisconnected

import requests
import urllib3

from ogpanel.kalshi.errors import Timeout, Unreachable


def transport_error(exc: Exception, timeout: tuple[float, float]) -> Unreachable:
    """The error for a call that got no HTTP answer; `timeout` is the (connect, read) it was sent with."""
    chain = list(_exception_chain(exc))
    # Connect timeouts first: they wrap a socket timeout too. urllib3 makes a refused
    # connection (NewConnectionError) a subclass of ConnectTimeoutError.
    if any(
        isinstance(e, (requests.ConnectTimeout, urllib3.exceptions.ConnectTimeoutError))
        and not isinstance(e, urllib3.exceptions.NewConnectionError)
        for e in chain
    ):
        return Timeout("connect timed out", seconds=timeout[0], connect=True)
    if any(isinstance(e, (requests.ReadTimeout, urllib3.exceptions.ReadTimeoutError)) for e in chain):
        return Timeout("read timed out", seconds=timeout[1], connect=False)
    for types, reason in _REASONS:
        if any(isinstance(e, types) for e in chain):
            return Unreachable(reason)
    return Unreachable(f"network error ({type(exc).__name__})")


def worth_retrying(exc: Exception, error: Unreachable) -> bool:
    """Connection failures, yes. Read timeouts, no: a hung exchange must not multiply the
    wait. TLS and URL errors, no: they will not fix themselves."""
    if isinstance(error, Timeout) and not error.connect:
        return False
    if isinstance(exc, requests.exceptions.SSLError):
        return False
    return isinstance(
        exc, (requests.ConnectionError, requests.exceptions.ChunkedEncodingError, urllib3.exceptions.ProtocolError)
    )


_REASONS: list[tuple[tuple[type[BaseException], ...], str]] = [
    ((urllib3.exceptions.NameResolutionError, socket.gaierror), "the host name could not be resolved"),
    ((requests.exceptions.SSLError,), "the TLS handshake failed"),
    ((ConnectionRefusedError,), "connection refused"),
    (
        (
            RemoteDisconnected,
            ConnectionResetError,
            ConnectionAbortedError,
            BrokenPipeError,
            urllib3.exceptions.ProtocolError,
            requests.exceptions.ChunkedEncodingError,
        ),
        "the connection was dropped",
    ),
]


def _exception_chain(exc: BaseException) -> Iterator[BaseException]:
    """Every exception wrapped inside `exc` (requests nests urllib3's, which nests the socket's)."""
    seen: set[int] = set()
    stack = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        nested = (*current.args, getattr(current, "reason", None), current.__cause__, current.__context__)
        stack.extend(e for e in nested if isinstance(e, BaseException))
