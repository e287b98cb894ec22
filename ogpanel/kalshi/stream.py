"""OrderGroupStream: Kalshi's private WebSocket channel `order_group_updates` (§8).

The exchange pushes every change to an order group (created, triggered, reset, deleted,
limit_updated) the moment it happens. It is a fast path, not a record: frames sent while the
connection is down are gone. So after any error the caller reconnects and re-reads the groups
over REST; a skipped `seq` raises StreamGap for the same reason.

The handshake is signed like a REST call, over timestamp + "GET" + "/trade-api/ws/v2" (§2).
"""

from __future__ import annotations

import json
import logging
import socket
import ssl
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass
from typing import TypeGuard
from urllib.parse import urlsplit, urlunsplit

from cryptography.hazmat.primitives.asymmetric import rsa
from websockets.exceptions import ConnectionClosed, InvalidMessage, InvalidStatus, WebSocketException
from websockets.sync.client import ClientConnection, reconnect

from ogpanel.kalshi.errors import (
    BadRequest,
    InvalidInput,
    KalshiError,
    MalformedResponse,
    ServerError,
    StreamGap,
    Timeout,
    Unreachable,
    error_for_status,
)
from ogpanel.kalshi.keys import sign, whole_contracts

CHANNEL = "order_group_updates"
REST_PATH = "/trade-api/v2"
WS_PATH = "/trade-api/ws/v2"
SUBSCRIBE_ID = 1
CLOSE_TIMEOUT = 2.0  # close() waits this long at most for the exchange to finish the closing handshake

# websockets logs the handshake headers, a live signature among them, at DEBUG. Its own
# logger here, pinned at INFO, keeps them out of any log however logging is configured.
_websockets_logger = logging.getLogger("ogpanel.kalshi.stream.websockets")
_websockets_logger.setLevel(logging.INFO)


def ws_url_for(base_url: str) -> str:
    """The WebSocket URL beside a REST base URL: https://host/trade-api/v2 -> wss://host/trade-api/ws/v2."""
    parts = urlsplit(base_url)
    scheme = {"https": "wss", "http": "ws"}.get(parts.scheme)
    path = parts.path.rstrip("/")
    if scheme is None or not parts.netloc or not path.endswith(REST_PATH):
        raise InvalidInput("The exchange URL must look like https://host/trade-api/v2 to find its WebSocket URL.")
    return urlunsplit((scheme, parts.netloc, path[: -len(REST_PATH)] + WS_PATH, "", ""))


@dataclass(frozen=True)
class OrderGroupUpdate:
    event_type: str  # created | triggered | reset | deleted | limit_updated
    order_group_id: str
    contracts_limit: int | None  # from contracts_limit_fp, sent on created and limit_updated only
    seq: int
    ts_ms: int | None = None  # modelled by a community SDK, not in Kalshi's docs


class _Connector(reconnect):
    """websockets' connector without redirects: the signed headers must not follow one (house rule)."""

    def process_redirect(self, exc: Exception) -> Exception | str:
        return exc


class OrderGroupStream:
    """One subscription to order_group_updates for one API key. One thread reads; any may close().

        stream = OrderGroupStream(base_url, key_id, load_private_key(pem))
        stream.connect()
        while not stopping:
            update = stream.next_update(timeout=1.0)   # None when nothing arrived

    After any error from connect() or next_update() the stream is closed; connect() again,
    then re-read the groups, since updates may have been missed.
    """

    def __init__(
        self,
        base_url: str,
        key_id: str,
        private_key: rsa.RSAPrivateKey,
        *,
        open_timeout: float = 5.0,
        ping_interval: float | None = 20.0,
    ) -> None:
        if not key_id or not isinstance(key_id, str):
            raise InvalidInput("The API key id is empty.")
        # A parsed key, so reconnecting never parses PEM again (load_private_key does it once).
        if not isinstance(private_key, rsa.RSAPrivateKey):
            raise InvalidInput("The stream needs a loaded RSA private key (see load_private_key).")
        self.url = ws_url_for(base_url)
        self._path = urlsplit(self.url).path  # signed, as REST signs its full path
        self.key_id = key_id
        self._private_key = private_key
        self.open_timeout = open_timeout
        self.ping_interval = ping_interval
        self.clock = time.time  # seam: tests sign with a stale clock
        self._ws: ClientConnection | None = None
        self._open: ExitStack | None = None  # closes _ws
        # close() may come from another thread, even in the middle of connect(): each close()
        # starts a new generation, and a connect() that sees one begin drops what it opened.
        self._lock = threading.Lock()
        self._generation = 0
        self._sid: int | None = None
        self._last_seq: int | None = None

    def __repr__(self) -> str:
        return f"OrderGroupStream(url={self.url!r}, key_id={self.key_id!r})"

    def __enter__(self) -> OrderGroupStream:
        self.connect()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def connected(self) -> bool:
        return self._ws is not None

    def connect(self) -> None:
        """Open a signed connection and subscribe; returns once the exchange confirmed the subscription.

        `open_timeout` bounds the whole of it: TCP, TLS, handshake and the subscription reply.
        """
        self.close()
        generation = self._generation
        deadline = time.monotonic() + self.open_timeout
        timestamp = str(int(self.clock() * 1000))
        headers = {
            "KALSHI-ACCESS-KEY": self.key_id,
            "KALSHI-ACCESS-TIMESTAMP": timestamp,
            "KALSHI-ACCESS-SIGNATURE": sign(self._private_key, timestamp, "GET", self._path),
        }
        connector = _Connector(
            self.url,
            additional_headers=headers,
            user_agent_header="ogpanel",
            open_timeout=self.open_timeout,
            ping_interval=self.ping_interval,
            close_timeout=CLOSE_TIMEOUT,
            logger=_websockets_logger,
        )
        opened = ExitStack()
        error: KalshiError | None
        try:
            # As a context manager: websockets' documented way to hold a connection open.
            ws = opened.enter_context(connector)
        except (OSError, WebSocketException) as exc:
            error = _handshake_error(exc, self.open_timeout)
        else:
            error = None
        # Raised outside the except clause, as in client.py: nothing of the handshake rides along.
        if error is not None:
            raise error
        try:
            self._sid = self._subscribe(ws, deadline)
        except KalshiError:
            opened.close()
            raise
        self._last_seq = None
        with self._lock:
            if self._generation == generation:
                self._ws, self._open = ws, opened
                return
        opened.close()
        raise Unreachable("the stream was closed while connecting")

    def next_update(self, timeout: float) -> OrderGroupUpdate | None:
        """The next update, or None if none arrived within `timeout` seconds (0 only checks),
        or if close() was called meanwhile.

        Frames of other types or subscriptions are skipped. Raises Unreachable when the
        connection is lost or was never opened, StreamGap when a seq was skipped,
        MalformedResponse for a frame that is not what §8 describes, ServerError when the
        exchange reports an error.
        """
        ws = self._ws
        if ws is None:  # never connected, or closed: either way there is nothing to read
            raise Unreachable("the stream is not connected")
        deadline = time.monotonic() + timeout
        while True:
            lost: Unreachable | None
            try:
                raw = ws.recv(timeout=max(deadline - time.monotonic(), 0.0))
            except TimeoutError:
                return None
            except ConnectionClosed as exc:
                if self._ws is not ws:  # close() was called meanwhile
                    return None
                lost = Unreachable(_closed_reason(exc))
            else:
                lost = None
            if lost is not None:
                self.close()
                raise lost
            try:
                update = self._read(raw)
            except KalshiError:
                self.close()
                raise
            if update is not None:
                return update

    def close(self) -> None:
        """Close the connection if open; idempotent, and safe to call from another thread."""
        with self._lock:
            self._generation += 1
            opened, self._open, self._ws = self._open, None, None
        if opened is not None:
            opened.close()

    # -- plumbing

    def _subscribe(self, ws: ClientConnection, deadline: float) -> int:
        """Send the subscribe command and return the sid of the confirmation."""
        command = {"id": SUBSCRIBE_ID, "cmd": "subscribe", "params": {"channels": [CHANNEL]}}
        try:
            ws.send(json.dumps(command))
        except ConnectionClosed as exc:
            raise Unreachable(_closed_reason(exc)) from None
        while True:
            try:
                raw = ws.recv(timeout=max(deadline - time.monotonic(), 0.0))
            except TimeoutError:
                raise Timeout("no reply to the subscription", seconds=self.open_timeout, connect=False) from None
            except ConnectionClosed as exc:
                raise Unreachable(_closed_reason(exc)) from None
            frame = _json_object(raw)
            if frame.get("id") != SUBSCRIBE_ID:
                continue  # not the reply; nothing else can matter before it
            msg = frame.get("msg")
            if frame.get("type") == "error":
                text = _error_text(msg)
                raise BadRequest(
                    f"subscription refused: {text}",
                    code=_error_code(msg),
                    operator_message=f"The exchange refused the update subscription: {text}",
                )
            sid = msg.get("sid") if isinstance(msg, dict) else None
            if frame.get("type") != "subscribed" or not _is_int(sid):
                raise MalformedResponse("the subscription reply is not a 'subscribed' message with a sid")
            return sid

    def _read(self, raw: str | bytes) -> OrderGroupUpdate | None:
        frame = _json_object(raw)
        kind = frame.get("type")
        if kind == "error":
            text = _error_text(frame.get("msg"))
            # Kalshi reports trouble on a live subscription this way (a buffer overflow loses frames).
            raise ServerError(
                f"stream error: {text}",
                code=_error_code(frame.get("msg")),
                operator_message=f"The exchange's update stream reported an error: {text}",
            )
        if kind != CHANNEL or frame.get("sid") != self._sid:
            return None
        seq = frame.get("seq")
        msg = frame.get("msg")
        if not _is_int(seq) or not isinstance(msg, dict):
            raise MalformedResponse(f"an {CHANNEL} frame lacks an integer seq or a msg object")
        if self._last_seq is not None and seq != self._last_seq + 1:
            raise StreamGap(f"expected seq {self._last_seq + 1}, got {seq}", expected=self._last_seq + 1, received=seq)
        self._last_seq = seq
        return _update(msg, seq)


def _update(msg: dict, seq: int) -> OrderGroupUpdate:
    event_type = msg.get("event_type")
    group_id = msg.get("order_group_id")
    ts_ms = msg.get("ts_ms")
    if not isinstance(event_type, str) or not isinstance(group_id, str):
        raise MalformedResponse(f"an {CHANNEL} msg lacks event_type or order_group_id")
    if ts_ms is not None and not _is_int(ts_ms):
        raise MalformedResponse(f"an {CHANNEL} msg has a ts_ms that is not an integer")
    return OrderGroupUpdate(event_type, group_id, _contracts(msg.get("contracts_limit_fp")), seq, ts_ms)


def _contracts(fp: object) -> int | None:
    """Whole contracts from a fixed-point string like "50.00"; a fractional limit has no whole number."""
    if fp is None:
        return None
    try:
        if not isinstance(fp, str):
            raise ValueError(fp)
        return whole_contracts(fp)
    except ValueError:
        raise MalformedResponse(f"an {CHANNEL} msg has a contracts_limit_fp that is not a number string") from None


def _json_object(raw: str | bytes) -> dict:
    try:
        frame = json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        frame = None
    if not isinstance(frame, dict):
        raise MalformedResponse(
            "a stream frame is not a JSON object",
            operator_message="The exchange's update stream sent something that is not JSON.",
        )
    return frame


def _error_text(msg: object) -> str:
    text = msg.get("msg") if isinstance(msg, dict) else None
    return text[:200] if isinstance(text, str) and text else "no details"


def _error_code(msg: object) -> str | None:
    code = msg.get("code") if isinstance(msg, dict) else None
    return None if code is None else str(code)


def _closed_reason(exc: ConnectionClosed) -> str:
    if exc.rcvd is None:
        return "the stream connection was dropped"
    return f"the exchange closed the stream (close code {exc.rcvd.code})"


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


# ---------------------------------------------------------------- handshake failures


def _handshake_error(exc: Exception, open_timeout: float) -> KalshiError:
    if isinstance(exc, InvalidStatus):
        return error_for_status(exc.response.status_code, bytes(exc.response.body or b""))
    if isinstance(exc, TimeoutError):  # TCP connect or the handshake reply
        return Timeout("WebSocket handshake timed out", seconds=open_timeout, connect=True)
    if isinstance(exc, ConnectionRefusedError):
        return Unreachable("connection refused")
    if isinstance(exc, socket.gaierror):
        return Unreachable("the host name could not be resolved")
    if isinstance(exc, ssl.SSLError):
        return Unreachable("the TLS handshake failed")
    if isinstance(exc, OSError) or (isinstance(exc, InvalidMessage) and isinstance(exc.__cause__, EOFError)):
        return Unreachable("the connection was dropped during the WebSocket handshake")
    # The message of websockets' exception is left out: it may quote the handshake.
    return MalformedResponse(
        f"not a WebSocket handshake ({type(exc).__name__})",
        operator_message="The exchange did not answer with a WebSocket handshake.",
    )
