"""The order_group_updates WebSocket channel on /trade-api/ws/v2, driven by websockets' own client.

A test that needs to show that nothing else was published ends with a sentinel
change and expects it to be the very next frame, so no test waits for silence.
"""

import json
import socket
from collections.abc import Callable, Iterator

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import rsa
from websockets.client import ClientProtocol
from websockets.exceptions import ConnectionClosed, ConnectionClosedError, InvalidStatus
from websockets.frames import Frame, Opcode
from websockets.sync.client import ClientConnection, connect
from websockets.uri import parse_uri

from ogpanel.simulator import SimulatorServer, start
from tests.simulator.conftest import KEY_ID, public_pem
from tests.simulator.signing import SignedClient, now_ms, sign

WS_PATH = "/trade-api/ws/v2"
GROUPS = "/portfolio/order_groups"
CHANNEL = "order_group_updates"

Opener = Callable[..., ClientConnection]


def signed_headers(
    key_id: str, private_key: rsa.RSAPrivateKey, *, timestamp: str | None = None, signed_path: str = WS_PATH
) -> dict[str, str]:
    timestamp = timestamp or now_ms()
    return {
        "KALSHI-ACCESS-KEY": key_id,
        "KALSHI-ACCESS-TIMESTAMP": timestamp,
        "KALSHI-ACCESS-SIGNATURE": sign(private_key, timestamp + "GET" + signed_path),
    }


@pytest.fixture
def open_ws(sim: SimulatorServer, private_key: rsa.RSAPrivateKey) -> Iterator[Opener]:
    """Open signed connections (closed at the end of the test)."""
    opened: list[ClientConnection] = []

    def open_(key_id: str = KEY_ID, key: rsa.RSAPrivateKey = private_key, **signing: str) -> ClientConnection:
        ws = connect(sim.ws_url, additional_headers=signed_headers(key_id, key, **signing), open_timeout=5, legacy=True)
        opened.append(ws)
        return ws

    yield open_
    for ws in opened:
        ws.close()


def send(ws: ClientConnection, command: dict) -> None:
    ws.send(json.dumps(command))


def receive(ws: ClientConnection) -> dict:
    return json.loads(ws.recv(timeout=5))


def subscribe(ws: ClientConnection, command_id: int = 1) -> int:
    send(ws, {"id": command_id, "cmd": "subscribe", "params": {"channels": [CHANNEL]}})
    reply = receive(ws)
    assert reply["type"] == "subscribed", reply
    return reply["msg"]["sid"]


def updates(ws: ClientConnection, count: int) -> list[tuple[int, dict]]:
    """The next `count` frames, which must all be updates: (seq, msg) pairs."""
    frames = [receive(ws) for _ in range(count)]
    assert all(frame["type"] == CHANNEL for frame in frames), frames
    return [(frame["seq"], frame["msg"]) for frame in frames]


@pytest.fixture
def subscribed(open_ws: Opener) -> ClientConnection:
    ws = open_ws()
    subscribe(ws)
    return ws


# Handshake


@pytest.mark.parametrize(
    ("signing", "code", "details"),
    [
        ({"key_id": "nobody"}, "authentication_error", "INVALID_API_KEY"),
        ({"signed_path": "/trade-api/v2"}, "authentication_error", "INCORRECT_API_KEY_SIGNATURE"),
        ({"timestamp": str(int(now_ms()) - 120_000)}, "header_timestamp_expired", None),
    ],
    ids=["unknown-key", "bad-signature", "skewed-timestamp"],
)
def test_it_refuses_a_bad_handshake_with_401_before_upgrading(
    open_ws: Opener, sim: SimulatorServer, signing: dict, code: str, details: str | None
) -> None:
    with pytest.raises(InvalidStatus) as refused:
        open_ws(**signing)

    response = refused.value.response
    assert response.status_code == 401
    assert response.headers["Content-Type"] == "application/json"
    assert "Upgrade" not in response.headers
    error = json.loads(response.body)["error"]
    assert (error["code"], error.get("details")) == (code, details)
    assert sim.websocket_count == 0


def test_a_plain_get_without_upgrade_headers_is_refused(sim: SimulatorServer, private_key: rsa.RSAPrivateKey) -> None:
    response = requests.get(
        sim.ws_url.replace("ws://", "http://"), headers=signed_headers(KEY_ID, private_key), timeout=5
    )

    assert response.status_code == 426
    assert sim.websocket_count == 0


def test_it_refuses_a_second_subscription_to_the_channel_with_error_code_6(open_ws: Opener) -> None:
    ws = open_ws()

    send(ws, {"id": 7, "cmd": "subscribe", "params": {"channels": [CHANNEL]}})
    assert receive(ws) == {"id": 7, "type": "subscribed", "msg": {"channel": CHANNEL, "sid": 1}}
    send(ws, {"id": 8, "cmd": "subscribe", "params": {"channels": [CHANNEL]}})
    assert receive(ws) == {"id": 8, "type": "error", "msg": {"code": 6, "msg": "Already subscribed"}}

    send(ws, {"id": 9, "cmd": "unsubscribe", "params": {"sids": [1]}})
    assert receive(ws)["type"] == "unsubscribed"
    send(ws, {"id": 10, "cmd": "subscribe", "params": {"channels": [CHANNEL]}})
    assert receive(ws) == {"id": 10, "type": "subscribed", "msg": {"channel": CHANNEL, "sid": 2}}


def test_it_lists_the_subscriptions_of_the_connection(open_ws: Opener) -> None:
    ws = open_ws()
    send(ws, {"id": 1, "cmd": "list_subscriptions"})
    assert receive(ws) == {"id": 1, "type": "ok", "msg": []}

    sid = subscribe(ws, command_id=2)
    send(ws, {"id": 3, "cmd": "list_subscriptions"})
    assert receive(ws) == {"id": 3, "type": "ok", "msg": [{"channel": CHANNEL, "sid": sid}]}


def test_a_command_id_of_0_counts_as_no_id(open_ws: Opener) -> None:
    ws = open_ws()
    send(ws, {"id": 0, "cmd": "subscribe", "params": {"channels": [CHANNEL]}})
    assert receive(ws) == {"type": "subscribed", "msg": {"channel": CHANNEL, "sid": 1}}
    send(ws, {"id": 0, "cmd": "frobnicate"})
    assert receive(ws) == {"type": "error", "msg": {"code": 5, "msg": "Unknown command"}}


@pytest.mark.parametrize(
    ("command", "code"),
    [
        ({"id": 3, "cmd": "frobnicate"}, 5),
        ({"id": 3, "cmd": "subscribe"}, 2),
        ({"id": 3, "cmd": "subscribe", "params": {"channels": []}}, 3),
        ({"id": 3, "cmd": "subscribe", "params": {"channels": ["ticker"]}}, 8),
        ({"id": 3, "cmd": "unsubscribe", "params": {}}, 4),
        ({"id": 3, "cmd": "unsubscribe", "params": {"sids": [99]}}, 7),
    ],
    ids=["unknown-command", "no-params", "no-channels", "unknown-channel", "no-sids", "unknown-sid"],
)
def test_it_answers_a_bad_command_with_an_error_frame(open_ws: Opener, command: dict, code: int) -> None:
    ws = open_ws()

    send(ws, command)

    reply = receive(ws)
    assert (reply["id"], reply["type"], reply["msg"]["code"]) == (3, "error", code)
    assert isinstance(reply["msg"]["msg"], str)


def test_a_frame_that_is_not_json_gets_error_code_1(open_ws: Opener) -> None:
    ws = open_ws()

    ws.send("subscribe please")

    assert receive(ws) == {"type": "error", "msg": {"code": 1, "msg": "Unable to process message"}}


def test_it_answers_pings(open_ws: Opener) -> None:
    assert open_ws().ping().wait(5)


# Updates


def test_every_change_over_rest_is_published_in_order(subscribed: ClientConnection, client: SignedClient) -> None:
    group_id = client.create_group(contracts_limit=20, subaccount=3)
    assert client.put(f"{GROUPS}/{group_id}/limit", params={"subaccount": 3}, json={"contracts_limit": 50}).ok
    assert client.put(f"{GROUPS}/{group_id}/trigger", params={"subaccount": 3}).ok
    assert client.put(f"{GROUPS}/{group_id}/reset", params={"subaccount": 3}).ok
    assert client.delete(f"{GROUPS}/{group_id}", params={"subaccount": 3}).ok

    assert updates(subscribed, 5) == [
        (1, {"event_type": "created", "order_group_id": group_id, "contracts_limit_fp": "20.00"}),
        (2, {"event_type": "limit_updated", "order_group_id": group_id, "contracts_limit_fp": "50.00"}),
        (3, {"event_type": "triggered", "order_group_id": group_id}),
        (4, {"event_type": "reset", "order_group_id": group_id}),
        (5, {"event_type": "deleted", "order_group_id": group_id}),
    ]


def test_a_fill_over_the_rolling_limit_trips_the_group_and_publishes_triggered(
    subscribed: ClientConnection, sim: SimulatorServer
) -> None:
    group_id = sim.create_group(0, 10)
    order_id = sim.place_order(0, group_id, count=100)
    sim.fill(order_id, 10)  # exactly the limit: no trip
    sim.advance(15.01)  # those fills leave the window
    sim.fill(order_id, 10)
    sim.fill(order_id, 1)  # 11 in the window: over the limit
    sim.exchange.delete_group(group_id, 0)  # sentinel

    assert [msg["event_type"] for _, msg in updates(subscribed, 3)] == ["created", "triggered", "deleted"]


def test_a_limit_below_the_current_volume_publishes_limit_updated_then_triggered(
    subscribed: ClientConnection, sim: SimulatorServer
) -> None:
    group_id = sim.create_group(0, 100)
    sim.fill(sim.place_order(0, group_id, count=100), 30)

    sim.exchange.update_limit(group_id, 0, 20)

    assert updates(subscribed, 3)[1:] == [
        (2, {"event_type": "limit_updated", "order_group_id": group_id, "contracts_limit_fp": "20.00"}),
        (3, {"event_type": "triggered", "order_group_id": group_id}),
    ]


def test_repeating_trigger_or_reset_publishes_nothing_more(subscribed: ClientConnection, sim: SimulatorServer) -> None:
    group_id = sim.create_group(0, 10)
    sim.exchange.reset_group(group_id, 0)  # active already
    sim.exchange.trigger_group(group_id, 0)
    sim.exchange.trigger_group(group_id, 0)
    sim.exchange.reset_group(group_id, 0)
    sim.exchange.reset_group(group_id, 0)
    sim.exchange.delete_group(group_id, 0)  # sentinel

    events = [msg["event_type"] for _, msg in updates(subscribed, 4)]
    assert events == ["created", "triggered", "reset", "deleted"]


def test_changes_through_the_control_api_are_published(subscribed: ClientConnection, sim: SimulatorServer) -> None:
    control = sim.root_url + "/_sim"
    group_id = requests.post(control + "/groups", json={"subaccount": 1, "contracts_limit": 5}, timeout=5).json()[
        "order_group_id"
    ]
    order_id = requests.post(control + "/orders", json={"subaccount": 1, "order_group_id": group_id}, timeout=5).json()[
        "order_id"
    ]
    requests.post(f"{control}/orders/{order_id}/fill", json={"count": 6}, timeout=5)

    assert updates(subscribed, 2) == [
        (1, {"event_type": "created", "order_group_id": group_id, "contracts_limit_fp": "5.00"}),
        (2, {"event_type": "triggered", "order_group_id": group_id}),
    ]


def test_a_key_limited_to_some_subaccounts_gets_only_their_events(
    open_ws: Opener, subscribed: ClientConnection, sim: SimulatorServer, stranger_key: rsa.RSAPrivateKey
) -> None:
    sim.add_key("narrow", public_pem(stranger_key), subaccounts=[2])
    narrow = open_ws("narrow", stranger_key)
    subscribe(narrow)

    elsewhere = sim.create_group(1, 10)
    mine = sim.create_group(2, 10)

    assert [(seq, msg["order_group_id"]) for seq, msg in updates(narrow, 1)] == [(1, mine)]
    assert [(seq, msg["order_group_id"]) for seq, msg in updates(subscribed, 2)] == [(1, elsewhere), (2, mine)]


def test_seq_counts_per_subscription_and_stops_at_unsubscribe(open_ws: Opener, sim: SimulatorServer) -> None:
    ws = open_ws()
    first = subscribe(ws, command_id=1)
    sim.create_group(0, 10)
    assert updates(ws, 1)[0][0] == 1

    send(ws, {"id": 2, "cmd": "unsubscribe", "params": {"sids": [first]}})
    assert receive(ws) == {"id": 2, "type": "unsubscribed", "sid": first, "seq": 2}
    sim.create_group(0, 10)  # nobody is subscribed: goes nowhere
    second = subscribe(ws, command_id=3)  # would come after that update, had it been sent
    group_id = sim.create_group(0, 10)

    frame = receive(ws)
    assert (frame["sid"], frame["seq"], frame["msg"]["order_group_id"]) == (second, 1, group_id)


# Test controls


def test_drop_websockets_cuts_every_connection_without_a_close_frame(
    open_ws: Opener, subscribed: ClientConnection, sim: SimulatorServer
) -> None:
    other = open_ws()
    assert sim.websocket_count == 2

    assert sim.drop_websockets() == 2

    for ws in (subscribed, other):
        with pytest.raises(ConnectionClosedError) as closed:
            ws.recv(timeout=5)
        assert closed.value.rcvd is None
    assert sim.websocket_count == 0


def test_refused_websockets_get_503_and_open_ones_keep_going(
    open_ws: Opener, subscribed: ClientConnection, sim: SimulatorServer
) -> None:
    sim.websockets_enabled = False

    with pytest.raises(InvalidStatus) as refused:
        open_ws()
    assert refused.value.response.status_code == 503
    group_id = sim.create_group(0, 10)
    assert updates(subscribed, 1)[0][1]["order_group_id"] == group_id

    sim.reset()  # also lets them in again, and drops the open one
    with pytest.raises(ConnectionClosed):
        subscribed.recv(timeout=5)
    subscribe(open_ws())


def test_skip_seq_and_garbage_break_the_stream_on_purpose(subscribed: ClientConnection, sim: SimulatorServer) -> None:
    sim.create_group(0, 10)
    sim.skip_websocket_seq()
    sim.create_group(0, 10)
    sim.send_websocket_garbage()

    assert [seq for seq, _ in updates(subscribed, 2)] == [1, 3]
    with pytest.raises(json.JSONDecodeError):
        receive(subscribed)


def test_the_control_api_mirrors_the_websocket_controls(subscribed: ClientConnection, sim: SimulatorServer) -> None:
    def control(method: str, path: str, body: object = None) -> requests.Response:
        return requests.request(method, sim.root_url + "/_sim/websockets" + path, json=body, timeout=5)

    assert control("GET", "").json() == {"enabled": True, "connections": 1}
    sim.create_group(0, 10)
    assert control("POST", "/skip_seq").json() == {}
    sim.create_group(0, 10)
    assert [seq for seq, _ in updates(subscribed, 2)] == [1, 3]
    assert control("POST", "/garbage").json() == {}
    with pytest.raises(json.JSONDecodeError):
        receive(subscribed)

    assert control("POST", "", {"enabled": False}).json() == {"enabled": False, "connections": 1}
    assert sim.websockets_enabled is False
    assert control("POST", "", {"enabled": "no"}).status_code == 400
    assert control("POST", "/drop").json() == {"dropped": 1}
    assert control("GET", "").json() == {"enabled": False, "connections": 0}


def test_stop_closes_open_websockets(private_key: rsa.RSAPrivateKey) -> None:
    server = start()
    server.add_key(KEY_ID, public_pem(private_key))
    ws = connect(server.ws_url, additional_headers=signed_headers(KEY_ID, private_key), open_timeout=5, legacy=True)
    subscribe(ws)

    server.stop()

    with pytest.raises(ConnectionClosed):
        ws.recv(timeout=5)
    ws.close()


def test_the_server_pings_every_heartbeat_with_a_heartbeat_payload(private_key: rsa.RSAPrivateKey) -> None:
    """Read frames with websockets' sans-I/O protocol: its sync client answers pings without showing them."""
    server = start(ws_heartbeat=0.05)
    server.add_key(KEY_ID, public_pem(private_key))
    try:
        protocol = ClientProtocol(parse_uri(server.ws_url))
        request = protocol.connect()
        request.headers.update(signed_headers(KEY_ID, private_key))
        with socket.create_connection(server._httpd.server_address[:2], timeout=5) as sock:
            protocol.send_request(request)
            pings = []
            while len(pings) < 2:
                for data in protocol.data_to_send():
                    sock.sendall(data)
                protocol.receive_data(sock.recv(65536))
                pings += [frame for frame in protocol.events_received() if isinstance(frame, Frame)]
            assert protocol.handshake_exc is None
            assert [(frame.opcode, frame.data) for frame in pings] == [(Opcode.PING, b"heartbeat")] * 2
            for data in protocol.data_to_send():  # the protocol queued a pong for each
                sock.sendall(data)
    finally:
        server.stop()


def test_the_default_heartbeat_is_every_10_seconds() -> None:
    with SimulatorServer() as server:
        assert server.websockets.heartbeat == 10.0
