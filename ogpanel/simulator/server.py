"""The HTTP side of the simulator: request lifecycle, faults, rate limiting, and the Python API.

A request under /trade-api/v2 goes: request log -> injected latency and
faults -> signature check -> exchange-side rate limit (per account) -> content
type -> endpoint. Faults come before authentication because they stand for the
network and the exchange's front door misbehaving, which happens whatever the
credentials.

HTTP/1.1 with keep-alive, as the exchange speaks it, so a client's connection
pool is exercised as in production: an idle connection is closed after
KEEP_ALIVE_SECONDS, and stop() cuts every open one.

The WebSocket handshake at /trade-api/ws/v2 (websocket.py) is neither logged
nor subject to faults or rate limits: it has its own controls (drop, refuse,
skip a seq, send garbage), so a REST fault meant for one request is never
consumed by a reconnecting stream.
"""

import json
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NotRequired, TypedDict, Unpack, cast
from urllib.parse import parse_qsl, urlsplit

from ogpanel.simulator import api, control
from ogpanel.simulator.auth import KEY_HEADER, KeyRing
from ogpanel.simulator.exchange import Clock, Exchange, ExchangeError, bad_request, not_found
from ogpanel.simulator.faults import FaultBook
from ogpanel.simulator.ratelimit import DEFAULT_ACCOUNT, RateLimiter
from ogpanel.simulator.requestlog import RequestLog, RequestRecord
from ogpanel.simulator.websocket import HEARTBEAT_SECONDS, WS_PATH, WebSocketHub

API_PREFIX = "/trade-api/v2"
CONTROL_PREFIX = "/_sim/"
# DOC-RL: a 429 is a flat body with no Retry-After or X-RateLimit headers.
TOO_MANY_REQUESTS = {"error": "too many requests"}
GARBAGE = b"<html><body>502 Bad Gateway</body></html>"
FAULT_ERROR_CODES = {400: "invalid_parameters", 401: "authentication_error", 403: "forbidden", 404: "not_found"}
# A 2xx whose body is a refusal, as Kalshi has answered some rejected requests (§11, OBS).
SOFT_REJECTION = {"error": {"code": "request_rejected", "message": "injected soft rejection"}}
KEEP_ALIVE_SECONDS = 30.0  # an idle kept-alive connection is closed after this long
BODY_METHODS = ("POST", "PUT")  # demo refuses these without Content-Type: application/json (§3, OBS)

Answer = tuple[int, object]


class _Handler(BaseHTTPRequestHandler):
    server: "_HTTPServer"
    server_version = "ogpanel-simulator"
    protocol_version = "HTTP/1.1"
    timeout = KEEP_ALIVE_SECONDS  # socket timeout: an idle connection's wait for its next request ends

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes: on a kept-alive connection Nagle's algorithm would
        # hold the body for the client's delayed ACK (~40 ms). Servers set TCP_NODELAY; so do we.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.untrack(self.connection)

    def _handle(self) -> None:
        sim = self.server.sim
        url = urlsplit(self.path)
        try:
            raw_body = self._read_body()
        except ValueError:
            self.close_connection = True  # where the next request starts is unknown
            self._send_json(400, bad_request("invalid Content-Length").body())
            return
        if url.path == API_PREFIX or url.path.startswith(API_PREFIX + "/"):
            query = dict(parse_qsl(url.query, keep_blank_values=True))
            key_id = self.headers.get(KEY_HEADER)
            entry = sim._log.open(self.command, url.path, query, key_id, raw_body)
            reply = self._answer_api(sim, url.path, query, raw_body, key_id)
            if reply is None:
                self.close_connection = True
                return
            # Log the status before answering, so a client that reads
            # sim.requests right after its response sees it.
            entry.status = reply[0]
            self._send(*reply)
        elif url.path == WS_PATH:
            sim.websockets.serve(self, sim.keys, sim.timestamp_window)
            self.close_connection = True
        elif url.path.startswith(CONTROL_PREFIX):
            self._send_json(*self._answer(lambda: control.dispatch(sim, self.command, url.path, raw_body)))
        else:
            self._send_json(404, not_found(f"nothing at {url.path}; the API is under {API_PREFIX}").body())

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _handle

    def _answer_api(
        self, sim: "SimulatorServer", path: str, query: dict[str, str], raw_body: bytes, key_id: str | None
    ) -> tuple[int, bytes] | None:
        """The status and body for a /trade-api/v2 request, or None to close without answering."""
        relative = path[len(API_PREFIX) :]
        latency, fault = sim.faults.take(self.command, relative, query.get("subaccount"), key_id)
        if sim._pause(sim.latency + latency):
            return None
        if fault is not None:
            if fault.kind == "hang":
                sim._pause(fault.seconds or 0.0)
            if fault.kind in ("drop", "hang"):
                return None
            if fault.kind == "rate_limit":
                return 429, _json(TOO_MANY_REQUESTS)
            if fault.kind == "garbage":
                return 200, GARBAGE
            if fault.kind == "ignore":
                return 200, _json({})
            if fault.kind == "soft_error":
                return fault.status or 200, _json(SOFT_REJECTION)
            status = fault.status or 500
            code = FAULT_ERROR_CODES.get(status, "internal_server_error" if status >= 500 else "bad_request")
            return status, _json(ExchangeError(status, code, "injected fault").body())
        status, body = self._answer(lambda: self._authenticated_answer(sim, path, query, raw_body))
        return status, _json(body)

    def _authenticated_answer(
        self, sim: "SimulatorServer", path: str, query: dict[str, str], raw_body: bytes
    ) -> Answer:
        key = sim.keys.authenticate(self.headers, self.command, path, now=time.time(), window=sim.timestamp_window)
        relative = path[len(API_PREFIX) :]
        if sim.limiter is not None and not sim.limiter.allow(
            key.account, self.command, api.route_of(self.command, relative)
        ):
            sim._count_rate_limited()
            return 429, TOO_MANY_REQUESTS
        if self.command in BODY_METHODS and sim.require_json_content_type and not self._sends_json():
            return 400, bad_request("Content-Type must be application/json", code="invalid_content_type").body()
        return api.dispatch(sim.exchange, self.command, relative, query, raw_body, key, sim.limiter)

    def _sends_json(self) -> bool:
        media_type = (self.headers.get("Content-Type") or "").split(";", 1)[0]
        return media_type.strip().lower() == "application/json"

    def _answer(self, respond: Callable[[], Answer]) -> Answer:
        try:
            return respond()
        except ExchangeError as error:
            return error.status, error.body()
        except Exception:
            traceback.print_exc(file=sys.stderr)
            return 500, ExchangeError(500, "internal_server_error", "simulator bug; see its stderr").body()

    def _read_body(self) -> bytes:
        """The whole body, so a kept-alive connection's next request starts where it should."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return self._read_chunked()
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0:
            raise ValueError("negative Content-Length")
        return self.rfile.read(length) if length else b""

    def _read_chunked(self) -> bytes:
        body = b""
        while size := int(self.rfile.readline(1024).split(b";", 1)[0].strip() or b"0", 16):
            body += self.rfile.read(size)
            self.rfile.readline(1024)  # the CRLF after each chunk
        while self.rfile.readline(1024).strip():  # trailer lines, up to the blank one
            pass
        return body

    def _send_json(self, status: int, body: object) -> None:
        self._send(status, _json(body))

    def _send(self, status: int, body: bytes) -> None:
        # Every answer claims JSON, even the garbage one: that is the nasty case.
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # http.server answers malformed requests with HTML; keep those JSON too.
        self.close_connection = True
        reason = message or self.responses.get(code, ("error",))[0]
        code_name = "bad_request" if code < 500 else "internal_server_error"
        self._send_json(code, ExchangeError(code, code_name, reason).body())

    def log_message(self, format: str, *args: object) -> None:
        if not self.server.sim.quiet:
            super().log_message(format, *args)


def _json(body: object) -> bytes:
    return json.dumps(body).encode()


class _HTTPServer(ThreadingHTTPServer):
    # The panel fans out to 33 subaccounts at once; socketserver's default backlog of 5 would
    # make that fan-out stall on dropped SYNs and distort every timing taken against us.
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], sim: "SimulatorServer") -> None:
        self.sim = sim
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, _Handler)

    def track(self, connection: socket.socket) -> None:
        with self._open_lock:
            self._open.add(connection)

    def untrack(self, connection: socket.socket) -> None:
        with self._open_lock:
            self._open.discard(connection)

    def cut_connections(self) -> None:
        """Shut every open connection, so no kept-alive one goes on answering after stop()."""
        with self._open_lock:
            open_now = list(self._open)
        for connection in open_now:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # the client left first

    def handle_error(self, request: socket.socket | tuple[bytes, socket.socket], client_address: Any) -> None:
        # A client that timed out or hung up is routine here, not worth a traceback.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class SimulatorServer:
    """A local Kalshi exchange on a loopback port, driven over HTTP or from Python."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        max_subaccount: int = 63,
        tier: str | None = None,
        timestamp_window: float = 30.0,
        latency: float = 0.0,
        clock: Clock | None = None,
        quiet: bool = True,
        require_json_content_type: bool = True,
        ws_heartbeat: float | None = HEARTBEAT_SECONDS,
    ) -> None:
        self.exchange = Exchange(max_subaccount=max_subaccount, clock=clock)
        self.websockets = WebSocketHub(heartbeat=ws_heartbeat)
        self.exchange.listener = self.websockets.publish
        self.keys = KeyRing()
        self.faults = FaultBook()
        self.limiter = RateLimiter(tier) if tier else None
        # False: accept a PUT or POST whatever its Content-Type (for a client under test that omits it).
        self.require_json_content_type = require_json_content_type
        self.timestamp_window = timestamp_window
        self.latency = latency
        self.quiet = quiet
        self._log = RequestLog()
        self._rate_limited = 0
        self._rate_limited_lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd = _HTTPServer((host, port), self)
        self._thread: threading.Thread | None = None

    @property
    def root_url(self) -> str:
        # typeshed allows a bytes host; a socket bound to a str host reports a str.
        host, port = cast(tuple[str, int], self._httpd.server_address[:2])
        return f"http://{host}:{port}"

    @property
    def base_url(self) -> str:
        return self.root_url + API_PREFIX

    @property
    def ws_url(self) -> str:
        return self.root_url.replace("http://", "ws://", 1) + WS_PATH

    def serve_in_thread(self) -> "SimulatorServer":
        # A short poll interval keeps stop() quick; tests start and stop many simulators.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="ogpanel-simulator", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; releases hung and delayed requests without answering them."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
        self._httpd.cut_connections()
        # Handler threads are daemons, but a client blocked on an open stream would wait forever.
        self.websockets.close()
        self._httpd.server_close()

    def __enter__(self) -> "SimulatorServer":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # Seeding and inspection, without signatures.

    def add_key(
        self,
        key_id: str,
        public_key_pem: bytes | str,
        subaccounts: Iterable[int] | None = None,
        account: str = DEFAULT_ACCOUNT,
    ) -> None:
        """Accept requests signed by this key; they draw on `account`'s rate budget."""
        self.keys.add(key_id, public_key_pem, subaccounts, account)

    def set_tier(self, account: str, tier: str) -> None:
        """Give one account its own rate-limit tier (the simulator must enforce one: start it with a tier)."""
        if self.limiter is None:
            raise ValueError("this simulator enforces no rate limits; start it with a tier")
        self.limiter.set_tier(account, tier)

    def set_endpoint_cost(self, method: str, route: str, cost: int) -> None:
        """Make one endpoint cost `cost` tokens, as GET /account/endpoint_costs then lists."""
        if self.limiter is None:
            raise ValueError("this simulator enforces no rate limits; start it with a tier")
        self.limiter.set_cost(method, route, cost)

    def create_group(self, subaccount: int, contracts_limit: int) -> str:
        return self.exchange.create_group(subaccount, contracts_limit)

    def place_order(self, subaccount: int, order_group_id: str, count: int = 1, ticker: str = "SIM-TEST") -> str:
        order = self.exchange.place_order(subaccount=subaccount, group_id=order_group_id, count=count, ticker=ticker)
        return order.id

    def fill(self, order_id: str, count: int) -> None:
        self.exchange.fill(order_id, count)

    def advance(self, seconds: float) -> None:
        self.exchange.clock.advance(seconds)

    def group(self, order_group_id: str) -> dict[str, object]:
        return self.exchange.group(order_group_id).as_dict()

    def set_fault(
        self,
        kind: str,
        *,
        path: str | None = None,
        method: str | None = None,
        subaccount: int | None = None,
        key_id: str | None = None,
        status: int | None = None,
        seconds: float | None = None,
        times: int | None = None,
    ) -> int:
        return self.faults.add(
            kind,
            path=path,
            method=method,
            subaccount=subaccount,
            key_id=key_id,
            status=status,
            seconds=seconds,
            times=times,
        )

    def clear_faults(self) -> None:
        self.faults.clear()

    # WebSocket controls.

    @property
    def websockets_enabled(self) -> bool:
        return self.websockets.enabled

    @websockets_enabled.setter
    def websockets_enabled(self, enabled: bool) -> None:
        """False refuses new handshakes with 503; open connections stay (drop them too for an outage)."""
        self.websockets.enabled = enabled

    @property
    def websocket_count(self) -> int:
        return self.websockets.count

    def drop_websockets(self) -> int:
        """Cut every open WebSocket without a close frame; returns how many there were."""
        return self.websockets.drop()

    def skip_websocket_seq(self) -> None:
        """Make every subscription's next update skip one seq, as if a frame had been lost."""
        self.websockets.skip_seq()

    def send_websocket_garbage(self) -> None:
        """Send a text frame that is not JSON to every open WebSocket."""
        self.websockets.send_garbage()

    @property
    def requests(self) -> list[RequestRecord]:
        return self._log.snapshot()

    def clear_requests(self) -> None:
        self._log.clear()

    @property
    def rate_limited_count(self) -> int:
        return self._rate_limited

    def reset(self) -> None:
        """Forget groups, orders, faults, the request log, the clock offset and rate-limit state, drop every
        WebSocket and accept new ones again; keep keys."""
        self.exchange.clear()
        self.websockets.drop()
        self.websockets.enabled = True
        self.faults.clear()
        self._log.clear()
        if self.limiter is not None:
            self.limiter.clear()
        with self._rate_limited_lock:
            self._rate_limited = 0

    def _count_rate_limited(self) -> None:
        with self._rate_limited_lock:
            self._rate_limited += 1

    def _pause(self, seconds: float) -> bool:
        """Sleep unless stopping; True when the server is stopping."""
        if seconds > 0:
            return self._stopping.wait(seconds)
        return self._stopping.is_set()


class ServerOptions(TypedDict):
    """SimulatorServer's remaining keyword arguments, as `start` passes them on."""

    clock: NotRequired[Clock | None]
    quiet: NotRequired[bool]
    require_json_content_type: NotRequired[bool]
    ws_heartbeat: NotRequired[float | None]


def start(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    max_subaccount: int = 63,
    tier: str | None = None,
    timestamp_window: float = 30.0,
    latency: float = 0.0,
    **options: Unpack[ServerOptions],
) -> SimulatorServer:
    """Serve a new simulator from a daemon thread; port 0 picks a free port. `options` go to SimulatorServer."""
    return SimulatorServer(
        host,
        port,
        max_subaccount=max_subaccount,
        tier=tier,
        timestamp_window=timestamp_window,
        latency=latency,
        **options,
    ).serve_in_thread()
