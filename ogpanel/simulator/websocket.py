"""The WebSocket side of the simulator: the private channel `order_group_updates` (reference §8).

The handshake arrives at /trade-api/ws/v2 on the REST port, already parsed by
http.server. It is signed like REST (timestamp + "GET" + "/trade-api/ws/v2");
a refusal is a plain HTTP answer, before any upgrade. An accepted connection
takes over the handler's socket: websockets' sans-I/O protocol does the
framing, the handler thread reads, and a writer thread per connection sends,
so publishing (which happens under the exchange's lock) never blocks on a
slow client.

Commands and replies follow Kalshi's shapes:

    {"id": 1, "cmd": "subscribe", "params": {"channels": ["order_group_updates"]}}
      -> {"id": 1, "type": "subscribed", "msg": {"channel": "order_group_updates", "sid": 1}}
    {"id": 2, "cmd": "unsubscribe", "params": {"sids": [1]}}
      -> {"id": 2, "type": "unsubscribed", "sid": 1, "seq": 4}
    {"id": 3, "cmd": "list_subscriptions"}
      -> {"id": 3, "type": "ok", "msg": [{"channel": "order_group_updates", "sid": 1}]}
    anything wrong -> {"id": 2, "type": "error", "msg": {"code": 5, "msg": "Unknown command"}}
    a second subscribe to the channel -> error code 6, "Already subscribed"
    each change   -> {"type": "order_group_updates", "sid": 1, "seq": 3,
                      "msg": {"event_type": "limit_updated", "order_group_id": "...", "contracts_limit_fp": "50.00"}}

A command `id` of 0 counts as no id: the reply carries none. The server pings every
HEARTBEAT_SECONDS with the payload "heartbeat" (§11); websockets answers the client's pongs.
"""

import json
import queue
import socket
import threading
import time
from email.utils import formatdate
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import Any

from websockets.datastructures import Headers
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import OPEN
from websockets.server import ServerProtocol

from ogpanel.simulator.auth import ApiKey, KeyRing
from ogpanel.simulator.exchange import ExchangeError, GroupEvent

WS_PATH = "/trade-api/ws/v2"
CHANNEL = "order_group_updates"
GARBAGE_FRAME = b"<html>502 Bad Gateway</html>"
MAX_COMMAND_BYTES = 64 * 1024
HEARTBEAT_SECONDS = 10.0
HEARTBEAT_PAYLOAD = b"heartbeat"

# Kalshi's WebSocket error codes (AsyncAPI spec).
UNABLE_TO_PROCESS = 1
PARAMS_REQUIRED = 2
CHANNELS_REQUIRED = 3
SIDS_REQUIRED = 4
UNKNOWN_COMMAND = 5
ALREADY_SUBSCRIBED = 6
UNKNOWN_SID = 7
UNKNOWN_CHANNEL = 8


class _Connection:
    """One upgraded connection: its key, its subscriptions and their sequence numbers."""

    def __init__(self, sock: socket.socket, key: ApiKey, heartbeat: float | None = None) -> None:
        self.sock = sock
        self.key = key
        self._heartbeat = heartbeat
        self._finished = threading.Event()
        self._protocol = ServerProtocol(state=OPEN, max_size=MAX_COMMAND_BYTES)
        self._lock = threading.Lock()  # guards the protocol (not thread-safe) and the subscriptions
        self._last_seq: dict[int, int] = {}  # sid -> seq of the last frame sent
        self._next_sid = 1
        self._outbox: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()

    def run(self, handshake: bytes, rfile: Any) -> None:
        """Send the 101, then read frames until the client leaves or the socket is shut down."""
        self._outbox.put(handshake)
        writer = threading.Thread(target=self._write, name="ogpanel-simulator-ws-writer", daemon=True)
        writer.start()
        if self._heartbeat:
            threading.Thread(target=self._beat, name="ogpanel-simulator-ws-heartbeat", daemon=True).start()
        try:
            while True:
                try:
                    # read1: http.server's buffered reader may already hold bytes after the headers.
                    data = rfile.read1(65536)
                except (OSError, ValueError):
                    data = b""
                with self._lock:
                    if data:
                        self._protocol.receive_data(data)
                    else:
                        self._protocol.receive_eof()
                    # The protocol starts OPEN (http.server did the handshake), so its events are frames.
                    for frame in self._protocol.events_received():
                        if isinstance(frame, Frame):
                            self._on_frame(frame)
                    self._flush()
                    if not data or self._protocol.eof_sent:
                        return
        finally:
            self._finished.set()
            self._outbox.put(None)
            writer.join()

    def _beat(self) -> None:
        while not self._finished.wait(self._heartbeat):
            with self._lock:
                if self._protocol.state is OPEN:
                    self._protocol.send_ping(HEARTBEAT_PAYLOAD)
                    self._flush()

    def abort(self) -> None:
        """Cut the connection without a close frame, as a network failure would."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already gone

    def publish(self, event: GroupEvent) -> None:
        if not self.key.allows(event.subaccount):
            return
        msg: dict[str, Any] = {"event_type": event.event_type, "order_group_id": event.group_id}
        if event.contracts_limit is not None:
            msg["contracts_limit_fp"] = f"{event.contracts_limit}.00"
        with self._lock:
            for sid in self._last_seq:
                self._last_seq[sid] += 1
                self._send({"type": CHANNEL, "sid": sid, "seq": self._last_seq[sid], "msg": msg})
            self._flush()

    def skip_seq(self) -> None:
        with self._lock:
            for sid in self._last_seq:
                self._last_seq[sid] += 1

    def send_garbage(self) -> None:
        with self._lock:
            if self._protocol.state is OPEN:
                self._protocol.send_text(GARBAGE_FRAME)
                self._flush()

    # Internals; the caller holds the lock.

    def _on_frame(self, frame: Frame) -> None:
        if frame.opcode in (Opcode.PING, Opcode.PONG, Opcode.CLOSE):
            return  # the protocol answers pings and closes by itself
        if frame.opcode is not Opcode.TEXT or not frame.fin:
            self._send(_error(None, UNABLE_TO_PROCESS, "Unable to process message"))
            return
        try:
            command = json.loads(bytes(frame.data))
        except (UnicodeDecodeError, json.JSONDecodeError):
            command = None
        if not isinstance(command, dict):
            self._send(_error(None, UNABLE_TO_PROCESS, "Unable to process message"))
            return
        command_id = command.get("id")
        if command_id == 0 and not isinstance(command_id, bool):
            command_id = None  # 0 counts as no id
        params = command.get("params")
        cmd = command.get("cmd")
        if cmd == "list_subscriptions":
            listed = [{"channel": CHANNEL, "sid": sid} for sid in self._last_seq]
            self._send(_reply(command_id, {"type": "ok", "msg": listed}))
        elif cmd not in ("subscribe", "unsubscribe"):
            self._send(_error(command_id, UNKNOWN_COMMAND, "Unknown command"))
        elif not isinstance(params, dict):
            self._send(_error(command_id, PARAMS_REQUIRED, "Params required"))
        elif cmd == "subscribe":
            self._subscribe(command_id, params.get("channels"))
        else:
            self._unsubscribe(command_id, params.get("sids"))

    def _subscribe(self, command_id: object, channels: object) -> None:
        if not isinstance(channels, list) or not channels:
            self._send(_error(command_id, CHANNELS_REQUIRED, "Channels required"))
            return
        for channel in channels:
            if channel != CHANNEL:
                self._send(_error(command_id, UNKNOWN_CHANNEL, "Unknown channel name"))
                continue
            if self._last_seq:  # the one channel there is already has a subscription on this connection
                self._send(_error(command_id, ALREADY_SUBSCRIBED, "Already subscribed"))
                continue
            sid = self._next_sid
            self._next_sid += 1
            self._last_seq[sid] = 0
            self._send(_reply(command_id, {"type": "subscribed", "msg": {"channel": CHANNEL, "sid": sid}}))

    def _unsubscribe(self, command_id: object, sids: object) -> None:
        if not isinstance(sids, list) or not sids:
            self._send(_error(command_id, SIDS_REQUIRED, "Subscription IDs required"))
            return
        for sid in sids:
            if isinstance(sid, bool) or not isinstance(sid, int) or sid not in self._last_seq:
                self._send(_error(command_id, UNKNOWN_SID, "Unknown subscription ID"))
                continue
            seq = self._last_seq.pop(sid) + 1
            self._send(_reply(command_id, {"type": "unsubscribed", "sid": sid, "seq": seq}))

    def _send(self, body: dict[str, Any]) -> None:
        if self._protocol.state is OPEN:
            self._protocol.send_text(json.dumps(body).encode())

    def _flush(self) -> None:
        for data in self._protocol.data_to_send():
            self._outbox.put(data)

    def _write(self) -> None:
        while (data := self._outbox.get()) is not None:
            try:
                if data:
                    self.sock.sendall(data)
                else:  # the protocol's end of stream: half-close, the reader sees the client go
                    self.sock.shutdown(socket.SHUT_WR)
            except OSError:
                self.abort()
                # Keep draining until run() says stop, so it never waits on a full queue.


class WebSocketHub:
    """Every open connection; publishes each exchange change to the subscriptions allowed to see it."""

    def __init__(self, heartbeat: float | None = HEARTBEAT_SECONDS) -> None:
        self.enabled = True  # False: refuse new handshakes with 503, as during an outage
        self.heartbeat = heartbeat  # seconds between the server's pings; None sends none
        self._connections: set[_Connection] = set()
        self._closed = False
        self._lock = threading.Lock()

    def serve(self, handler: BaseHTTPRequestHandler, keys: KeyRing, timestamp_window: float) -> None:
        """Answer one request to WS_PATH: refuse it over HTTP, or upgrade and run the connection."""
        try:
            key = self._admit(handler, keys, timestamp_window)
        except ExchangeError as error:
            _send_raw(handler.connection, _refusal(error.status, error.body()))
            return
        request = Request(handler.path, Headers(handler.headers.items()), method=handler.command)
        response = ServerProtocol().accept(request)  # validates the Upgrade headers, computes the accept key
        if response.status_code != HTTPStatus.SWITCHING_PROTOCOLS:
            _send_raw(handler.connection, response.serialize())
            return
        connection = _Connection(handler.connection, key, self.heartbeat)
        with self._lock:
            if self._closed:
                return
            self._connections.add(connection)
        try:
            connection.run(response.serialize(), handler.rfile)
        finally:
            with self._lock:
                self._connections.discard(connection)

    def publish(self, event: GroupEvent) -> None:
        for connection in self._snapshot():
            connection.publish(event)

    def drop(self) -> int:
        """Cut every open connection abruptly; returns how many there were."""
        with self._lock:
            dropped = list(self._connections)
            self._connections.clear()
        for connection in dropped:
            connection.abort()
        return len(dropped)

    def close(self) -> None:
        """Drop everything and accept nothing more (the server is stopping)."""
        with self._lock:
            self._closed = True
        self.drop()

    def skip_seq(self) -> None:
        for connection in self._snapshot():
            connection.skip_seq()

    def send_garbage(self) -> None:
        for connection in self._snapshot():
            connection.send_garbage()

    @property
    def count(self) -> int:
        with self._lock:
            return len(self._connections)

    def _snapshot(self) -> list[_Connection]:
        with self._lock:
            return list(self._connections)

    def _admit(self, handler: BaseHTTPRequestHandler, keys: KeyRing, timestamp_window: float) -> ApiKey:
        if self._closed or not self.enabled:
            raise ExchangeError(503, "service_unavailable", "WebSocket connections are refused (simulated outage)")
        if handler.command != "GET":
            raise ExchangeError(405, "method_not_allowed", "a WebSocket handshake is a GET")
        return keys.authenticate(handler.headers, "GET", WS_PATH, now=time.time(), window=timestamp_window)


def _reply(command_id: object, body: dict[str, Any]) -> dict[str, Any]:
    return body if command_id is None else {"id": command_id, **body}


def _error(command_id: object, code: int, message: str) -> dict[str, Any]:
    return _reply(command_id, {"type": "error", "msg": {"code": code, "msg": message}})


def _refusal(status: int, body: object) -> bytes:
    # HTTP/1.1 status line, unlike http.server's HTTP/1.0: WebSocket clients refuse anything else.
    payload = json.dumps(body).encode()
    headers = Headers(
        [
            ("Date", formatdate(usegmt=True)),
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(payload))),
            ("Connection", "close"),
        ]
    )
    return Response(status, HTTPStatus(status).phrase, headers, payload).serialize()


def _send_raw(sock: socket.socket, data: bytes) -> None:
    try:
        sock.sendall(data)
    except OSError:
        pass  # the client left first
