"""OrderGroupStream against the simulator's order_group_updates channel, over real sockets.

A tiny canned-answer server covers what the simulator never says: redirects and
answers that are not a WebSocket handshake.
"""

import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from ogpanel.kalshi import (
    ClockSkew,
    InvalidInput,
    MalformedResponse,
    OrderGroupStream,
    OrderGroupUpdate,
    ServerError,
    StreamGap,
    Timeout,
    Unauthorized,
    Unreachable,
    ws_url_for,
)
from tests.conftest import SIM_KEY_ID

Canned = Callable[[bytes], tuple[str, list[bytes]]]


@pytest.fixture
def stream(sim, rsa_key) -> Iterator[OrderGroupStream]:
    stream = OrderGroupStream(sim.base_url, SIM_KEY_ID, rsa_key, open_timeout=5)
    stream.connect()
    yield stream
    stream.close()


def next_updates(stream: OrderGroupStream, count: int) -> list[OrderGroupUpdate]:
    updates = [stream.next_update(5) for _ in range(count)]
    assert None not in updates
    return updates


@pytest.fixture
def canned() -> Iterator[Canned]:
    """Serve one fixed HTTP answer to every connection; returns a base URL and the requests received."""
    listeners: list[socket.socket] = []

    def serve(answer: bytes) -> tuple[str, list[bytes]]:
        listener = socket.create_server(("127.0.0.1", 0))
        listeners.append(listener)
        received: list[bytes] = []

        def run() -> None:
            while True:
                try:
                    conn, _ = listener.accept()
                except OSError:
                    return  # the listener was shut down
                with conn:
                    request = b""
                    while b"\r\n\r\n" not in request and (chunk := conn.recv(4096)):
                        request += chunk
                    received.append(request)
                    conn.sendall(answer)

        threading.Thread(target=run, daemon=True).start()
        return f"http://127.0.0.1:{listener.getsockname()[1]}/trade-api/v2", received

    yield serve
    for listener in listeners:
        listener.shutdown(socket.SHUT_RDWR)
        listener.close()


@pytest.mark.parametrize(
    ("base_url", "ws_url"),
    [
        ("https://external-api.kalshi.com/trade-api/v2", "wss://external-api.kalshi.com/trade-api/ws/v2"),
        ("https://demo-api.kalshi.co/trade-api/v2/", "wss://demo-api.kalshi.co/trade-api/ws/v2"),
        ("http://127.0.0.1:8765/trade-api/v2", "ws://127.0.0.1:8765/trade-api/ws/v2"),
        ("https://gateway.example/kalshi/trade-api/v2", "wss://gateway.example/kalshi/trade-api/ws/v2"),
    ],
)
def test_ws_url_for_puts_the_stream_beside_the_rest_api(base_url: str, ws_url: str) -> None:
    assert ws_url_for(base_url) == ws_url


@pytest.mark.parametrize("base_url", ["ftp://host/trade-api/v2", "https:///trade-api/v2", "https://host/api/v1"])
def test_ws_url_for_refuses_a_url_it_cannot_map(base_url: str) -> None:
    with pytest.raises(InvalidInput):
        ws_url_for(base_url)


def test_it_needs_a_loaded_private_key(sim, rsa_pem) -> None:
    with pytest.raises(InvalidInput):
        OrderGroupStream(sim.base_url, SIM_KEY_ID, rsa_pem)


def test_it_receives_every_kind_of_change(stream: OrderGroupStream, kalshi) -> None:
    group_id = kalshi.create_order_group(20, subaccount=2).order_group_id
    kalshi.update_order_group_limit(group_id, 50, subaccount=2)
    kalshi.trigger_order_group(group_id, subaccount=2)
    kalshi.reset_order_group(group_id, subaccount=2)
    kalshi.delete_order_group(group_id, subaccount=2)

    assert next_updates(stream, 5) == [
        OrderGroupUpdate("created", group_id, 20, seq=1),
        OrderGroupUpdate("limit_updated", group_id, 50, seq=2),
        OrderGroupUpdate("triggered", group_id, None, seq=3),
        OrderGroupUpdate("reset", group_id, None, seq=4),
        OrderGroupUpdate("deleted", group_id, None, seq=5),
    ]


def test_a_group_tripping_by_itself_arrives_as_triggered(stream: OrderGroupStream, sim) -> None:
    group_id = sim.create_group(1, 5)
    sim.fill(sim.place_order(1, group_id, count=10), 6)

    assert [(u.event_type, u.order_group_id) for u in next_updates(stream, 2)] == [
        ("created", group_id),
        ("triggered", group_id),
    ]


def test_next_update_returns_none_when_nothing_is_waiting(stream: OrderGroupStream) -> None:
    assert stream.next_update(0) is None
    assert stream.connected


def test_next_update_after_close_is_unreachable(stream: OrderGroupStream) -> None:
    stream.close()

    with pytest.raises(Unreachable):
        stream.next_update(0)


def test_an_unknown_key_is_unauthorized(sim, rsa_key) -> None:
    with pytest.raises(Unauthorized) as caught:
        OrderGroupStream(sim.base_url, "nobody", rsa_key).connect()

    assert not isinstance(caught.value, ClockSkew)
    assert caught.value.status == 401
    assert caught.value.operator_message.startswith("The exchange rejected the request signature")
    assert caught.value.__cause__ is None and caught.value.__context__ is None  # nothing of the handshake attached


def test_a_stale_clock_is_clock_skew(sim, rsa_key) -> None:
    stream = OrderGroupStream(sim.base_url, SIM_KEY_ID, rsa_key)
    stream.clock = lambda: time.time() - 120

    with pytest.raises(ClockSkew):
        stream.connect()
    assert not stream.connected


def test_a_dropped_stream_is_unreachable_and_connect_starts_over(stream: OrderGroupStream, sim) -> None:
    sim.create_group(0, 10)
    assert next_updates(stream, 1)[0].seq == 1

    sim.drop_websockets()

    with pytest.raises(Unreachable) as caught:
        stream.next_update(5)
    assert caught.value.operator_message == "The exchange could not be reached: the stream connection was dropped."
    assert not stream.connected
    stream.connect()
    group_id = sim.create_group(0, 10)
    assert next_updates(stream, 1) == [OrderGroupUpdate("created", group_id, 10, seq=1)]


def test_refused_websockets_are_a_server_error(sim, rsa_key) -> None:
    sim.websockets_enabled = False

    with pytest.raises(ServerError) as caught:
        OrderGroupStream(sim.base_url, SIM_KEY_ID, rsa_key).connect()
    assert caught.value.status == 503


def test_a_closed_port_is_unreachable(rsa_key) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    with pytest.raises(Unreachable) as caught:
        OrderGroupStream(f"http://127.0.0.1:{port}/trade-api/v2", SIM_KEY_ID, rsa_key).connect()
    assert not isinstance(caught.value, Timeout)
    assert caught.value.operator_message == "The exchange could not be reached: connection refused."


def test_a_server_that_never_answers_the_handshake_is_a_timeout(rsa_key) -> None:
    # The kernel accepts the TCP connection into the backlog; nobody ever answers.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/trade-api/v2"
        with pytest.raises(Timeout) as caught:
            OrderGroupStream(url, SIM_KEY_ID, rsa_key, open_timeout=0.3).connect()
    assert caught.value.seconds == 0.3


def test_a_skipped_seq_raises_stream_gap_and_closes_the_stream(stream: OrderGroupStream, sim) -> None:
    sim.create_group(0, 10)
    next_updates(stream, 1)
    sim.skip_websocket_seq()
    sim.create_group(0, 10)

    with pytest.raises(StreamGap) as caught:
        stream.next_update(5)
    assert (caught.value.expected, caught.value.received) == (2, 3)
    assert not stream.connected


def test_a_frame_that_is_not_json_is_malformed(stream: OrderGroupStream, sim) -> None:
    sim.send_websocket_garbage()

    with pytest.raises(MalformedResponse) as caught:
        stream.next_update(5)
    assert caught.value.operator_message == "The exchange's update stream sent something that is not JSON."


def test_a_redirect_is_not_followed(canned: Canned, rsa_key) -> None:
    base_url, received = canned(b"HTTP/1.1 307 Temporary Redirect\r\nLocation: /elsewhere\r\nContent-Length: 0\r\n\r\n")

    with pytest.raises(MalformedResponse) as caught:
        OrderGroupStream(base_url, SIM_KEY_ID, rsa_key).connect()
    assert caught.value.status == 307
    assert len(received) == 1  # the signed headers went nowhere else
    assert received[0].startswith(b"GET /trade-api/ws/v2 HTTP/1.1\r\n")


def test_an_answer_that_is_not_a_handshake_is_malformed(canned: Canned, rsa_key) -> None:
    base_url, _ = canned(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 5\r\n\r\nhello")

    with pytest.raises(MalformedResponse):
        OrderGroupStream(base_url, SIM_KEY_ID, rsa_key).connect()


def test_the_context_manager_connects_and_closes(sim, rsa_key) -> None:
    with OrderGroupStream(sim.base_url, SIM_KEY_ID, rsa_key) as stream:
        assert stream.connected
        assert sim.websocket_count == 1
    assert not stream.connected
    stream.close()  # idempotent
    assert "PRIVATE" not in repr(stream)
