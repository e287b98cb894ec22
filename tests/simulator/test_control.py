"""The unauthenticated /_sim/ control API, as a demo or an out-of-process test drives it."""

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import rsa

from ogpanel.simulator import SimulatorServer
from tests.simulator.conftest import public_pem
from tests.simulator.signing import SignedClient

GROUPS = "/portfolio/order_groups"


@pytest.fixture
def control(sim: SimulatorServer):
    def call(method: str, path: str, json: object = None) -> requests.Response:
        response = requests.request(method, sim.root_url + "/_sim" + path, json=json, timeout=5)
        assert response.headers["Content-Type"] == "application/json"
        return response

    return call


def test_it_seeds_a_group_and_order_and_fills_past_the_limit(control, client: SignedClient) -> None:
    group_id = control("POST", "/groups", {"subaccount": 2, "contracts_limit": 5}).json()["order_group_id"]
    created = control("POST", "/orders", {"subaccount": 2, "order_group_id": group_id, "count": 10})
    assert created.status_code == 201
    order_id = created.json()["order_id"]

    filled = control("POST", f"/orders/{order_id}/fill", {"count": 6})

    assert filled.status_code == 200
    assert filled.json() == {
        "id": group_id,
        "subaccount": 2,
        "contracts_limit": 5,
        "triggered": True,
        "volume": 6,
        "orders": {order_id: "cancelled"},
    }
    assert client.get(f"{GROUPS}/{group_id}").json()["is_auto_cancel_enabled"] is True


def test_the_clock_endpoint_ages_fills_out_of_the_window(control, sim: SimulatorServer) -> None:
    group_id = sim.create_group(0, 10)
    order_id = sim.place_order(0, group_id, count=20)
    sim.fill(order_id, 10)

    assert control("POST", "/clock", {"advance": 15.01}).json() == {"offset": 15.01}

    assert control("POST", f"/orders/{order_id}/fill", {"count": 10}).json()["triggered"] is False


def test_faults_are_added_listed_and_cleared(control, client: SignedClient) -> None:
    added = control("POST", "/faults", {"kind": "error", "status": 502, "subaccount": 1, "times": 1})
    assert added.status_code == 201
    assert control("GET", "/faults").json()["faults"][0]["id"] == added.json()["id"]
    assert client.get(GROUPS, params={"subaccount": 1}).status_code == 502

    control("POST", "/faults", {"kind": "error"})
    assert control("DELETE", "/faults").json() == {}
    assert client.get(GROUPS).status_code == 200


def test_a_malformed_fault_is_400(control) -> None:
    assert control("POST", "/faults", {"kind": "nope"}).status_code == 400
    assert control("POST", "/faults", {"kind": "error", "colour": "red"}).status_code == 400
    assert control("POST", "/faults", {"kind": "error", "times": "2"}).status_code == 400


def test_keys_can_be_registered_over_http(control, sim: SimulatorServer, stranger_key: rsa.RSAPrivateKey) -> None:
    body = {"key_id": "http-key", "public_key_pem": public_pem(stranger_key).decode(), "subaccounts": [1]}
    assert control("POST", "/keys", body).status_code == 201

    client = SignedClient(sim.base_url, "http-key", stranger_key)
    assert client.get(GROUPS, params={"subaccount": 1}).status_code == 200
    assert client.get(GROUPS, params={"subaccount": 0}).status_code == 403
    assert control("POST", "/keys", {"key_id": "bad", "public_key_pem": "nope"}).status_code == 400


def test_the_request_log_and_state_are_readable_and_resettable(control, client: SignedClient) -> None:
    group_id = client.create_group(7, subaccount=1)

    log = control("GET", "/requests").json()
    assert log["rate_limited_count"] == 0
    assert log["requests"] == [
        {
            "method": "POST",
            "path": "/trade-api/v2/portfolio/order_groups/create",
            "query": {},
            "status": 201,
            "key_id": client.key_id,
            "body": '{"contracts_limit": 7, "subaccount": 1}',
        }
    ]
    state = control("GET", "/state").json()
    assert state["groups"][0] == {
        "id": group_id,
        "subaccount": 1,
        "contracts_limit": 7,
        "triggered": False,
        "volume": 0,
        "orders": {},
    }

    assert control("DELETE", "/requests").json() == {}
    assert control("GET", "/requests").json()["requests"] == []
    assert control("POST", "/reset").json() == {}
    assert control("GET", "/state").json() == {"clock_offset": 0.0, "groups": [], "orders": []}
    assert client.get(GROUPS).status_code == 200  # keys survive a reset


def test_filling_an_unknown_order_is_404(control) -> None:
    assert control("POST", "/orders/nope/fill", {"count": 1}).status_code == 404


def test_an_unknown_control_path_is_404(control) -> None:
    assert control("GET", "/nothing").status_code == 404
