"""Statuses and exact bodies of the seven order-group endpoints (reference §3, §4)."""

import uuid

import pytest
import requests

from ogpanel.simulator import SimulatorServer
from tests.simulator.signing import SignedClient

GROUPS = "/portfolio/order_groups"


def assert_json(response: requests.Response, status: int) -> object:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/json"
    return response.json()


def test_create_answers_201_with_id_subaccount_and_exchange_index(client: SignedClient) -> None:
    body = assert_json(client.post(f"{GROUPS}/create", json={"contracts_limit": 100, "subaccount": 2}), 201)

    assert set(body) == {"order_group_id", "subaccount", "exchange_index"}
    assert uuid.UUID(body["order_group_id"]).version == 4
    assert body["subaccount"] == 2
    assert body["exchange_index"] == 0


def test_create_defaults_to_subaccount_0(client: SignedClient) -> None:
    body = assert_json(client.post(f"{GROUPS}/create", json={"contracts_limit": 5}), 201)
    assert body["subaccount"] == 0


def test_create_accepts_the_fixed_point_limit_alone_or_matching(client: SignedClient, sim: SimulatorServer) -> None:
    alone = assert_json(client.post(f"{GROUPS}/create", json={"contracts_limit_fp": "250"}), 201)
    both = assert_json(client.post(f"{GROUPS}/create", json={"contracts_limit": 7, "contracts_limit_fp": "7.00"}), 201)

    assert sim.group(alone["order_group_id"])["contracts_limit"] == 250
    assert sim.group(both["order_group_id"])["contracts_limit"] == 7


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"contracts_limit": 0},
        {"contracts_limit": 1_000_001},
        {"contracts_limit": "100"},
        {"contracts_limit": True},
        {"contracts_limit": 10.0},
        {"contracts_limit_fp": 100},
        {"contracts_limit_fp": "2.50"},
        {"contracts_limit_fp": "1.234"},
        {"contracts_limit": 10, "contracts_limit_fp": "11.00"},
        {"contracts_limit": 10, "subaccount": "2"},
        {"contracts_limit": 10, "subaccount": -1},
        {"contracts_limit": 10, "exchange_index": 1},
    ],
)
def test_create_refuses_invalid_input_with_400(client: SignedClient, body: dict) -> None:
    error = assert_json(client.post(f"{GROUPS}/create", json=body), 400)
    assert error["error"]["code"] == "invalid_parameters"
    assert error["error"]["message"]


def test_create_accepts_limits_at_both_bounds(client: SignedClient) -> None:
    assert client.post(f"{GROUPS}/create", json={"contracts_limit": 1}).status_code == 201
    assert client.post(f"{GROUPS}/create", json={"contracts_limit": 1_000_000}).status_code == 201


def test_it_refuses_malformed_json_with_400(client: SignedClient) -> None:
    response = client.post(
        f"{GROUPS}/create", data=b'{"contracts_limit": ', headers={"Content-Type": "application/json"}
    )
    assert assert_json(response, 400)["error"]["code"] == "invalid_parameters"


def test_subaccount_0_and_max_are_valid_and_max_plus_one_is_400(client: SignedClient) -> None:
    # The exchange's current range is 1-63 (DOC-SUB, SYNC), and so is the simulator's by default.
    for subaccount in (0, 32, 63):
        assert client.post(f"{GROUPS}/create", json={"contracts_limit": 1, "subaccount": subaccount}).status_code == 201

    assert client.post(f"{GROUPS}/create", json={"contracts_limit": 1, "subaccount": 64}).status_code == 400
    assert client.get(GROUPS, params={"subaccount": 64}).status_code == 400


def test_list_spans_every_subaccount_when_none_is_given(client: SignedClient) -> None:
    first = client.create_group(100)
    second = client.create_group(50, subaccount=2)

    body = assert_json(client.get(GROUPS), 200)

    assert body == {
        "order_groups": [
            {"id": first, "contracts_limit_fp": "100.00", "is_auto_cancel_enabled": False, "exchange_index": 0},
            {"id": second, "contracts_limit_fp": "50.00", "is_auto_cancel_enabled": False, "exchange_index": 0},
        ]
    }


def test_list_with_a_subaccount_shows_only_that_subaccount(client: SignedClient) -> None:
    client.create_group(100)
    mine = client.create_group(50, subaccount=2)

    body = assert_json(client.get(GROUPS, params={"subaccount": 2}), 200)

    assert [group["id"] for group in body["order_groups"]] == [mine]
    assert assert_json(client.get(GROUPS, params={"subaccount": 3}), 200) == {"order_groups": []}


@pytest.mark.parametrize("value", ["two", "-1", "1.5", ""])
def test_it_refuses_a_non_integer_subaccount_query(client: SignedClient, value: str) -> None:
    assert client.get(GROUPS, params={"subaccount": value}).status_code == 400


def test_get_answers_the_group_without_an_id(client: SignedClient, sim: SimulatorServer) -> None:
    group_id = client.create_group(100, subaccount=3)
    order_id = sim.place_order(3, group_id)

    for params in ({}, {"subaccount": 3}):
        body = assert_json(client.get(f"{GROUPS}/{group_id}", params=params), 200)
        assert body == {
            "is_auto_cancel_enabled": False,
            "contracts_limit_fp": "100.00",
            "orders": [order_id],
            "exchange_index": 0,
        }


def test_get_with_another_subaccount_is_404(client: SignedClient) -> None:
    group_id = client.create_group(100, subaccount=3)

    error = assert_json(client.get(f"{GROUPS}/{group_id}", params={"subaccount": 0}), 404)
    assert error["error"]["code"] == "not_found"


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [
        ("PUT", "/trigger", None),
        ("PUT", "/reset", None),
        ("PUT", "/limit", {"contracts_limit": 10}),
        ("DELETE", "", None),
    ],
)
def test_mutations_answer_an_empty_object(client: SignedClient, method: str, suffix: str, body: dict | None) -> None:
    group_id = client.create_group(100)
    assert assert_json(client.request(method, f"{GROUPS}/{group_id}{suffix}", json=body), 200) == {}


def test_reset_and_trigger_accept_an_empty_body_with_a_json_content_type(client: SignedClient) -> None:
    group_id = client.create_group(100)
    for action in ("trigger", "reset"):
        response = client.put(f"{GROUPS}/{group_id}/{action}", data=b"", headers={"Content-Type": "application/json"})
        assert assert_json(response, 200) == {}


def test_reset_and_trigger_accept_an_empty_object(client: SignedClient) -> None:
    group_id = client.create_group(100)
    for action in ("trigger", "reset"):
        assert assert_json(client.put(f"{GROUPS}/{group_id}/{action}", json={}), 200) == {}


def test_update_limit_requires_a_json_body(client: SignedClient) -> None:
    group_id = client.create_group(100)
    assert client.put(f"{GROUPS}/{group_id}/limit").status_code == 400
    assert client.put(f"{GROUPS}/{group_id}/limit", json={"contracts_limit_fp": "20.00"}).status_code == 200
    assert client.get(f"{GROUPS}/{group_id}").json()["contracts_limit_fp"] == "20.00"


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [
        ("PUT", "/trigger", None),
        ("PUT", "/reset", None),
        ("PUT", "/limit", {"contracts_limit": 10}),
        ("DELETE", "", None),
    ],
)
def test_a_subaccount_2_group_mutated_without_its_subaccount_is_404(
    client: SignedClient, method: str, suffix: str, body: dict | None
) -> None:
    group_id = client.create_group(100, subaccount=2)

    error = assert_json(client.request(method, f"{GROUPS}/{group_id}{suffix}", json=body), 404)
    assert error["error"]["code"] == "not_found"
    with_subaccount = client.request(method, f"{GROUPS}/{group_id}{suffix}", params={"subaccount": 2}, json=body)
    assert with_subaccount.status_code == 200


def test_mutations_refuse_a_nonzero_exchange_index(client: SignedClient) -> None:
    group_id = client.create_group(100)
    assert client.put(f"{GROUPS}/{group_id}/trigger", params={"exchange_index": 1}).status_code == 400
    assert client.put(f"{GROUPS}/{group_id}/trigger", params={"exchange_index": 0}).status_code == 200


def test_unknown_group_is_404(client: SignedClient) -> None:
    missing = str(uuid.uuid4())
    assert client.get(f"{GROUPS}/{missing}").status_code == 404
    assert client.put(f"{GROUPS}/{missing}/trigger").status_code == 404
    assert client.delete(f"{GROUPS}/{missing}").status_code == 404


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/portfolio/nothing"), ("POST", GROUPS), ("PATCH", f"{GROUPS}/x"), ("GET", "")],
)
def test_an_unknown_path_is_404_json(client: SignedClient, method: str, path: str) -> None:
    error = assert_json(client.request(method, path), 404)
    assert error["error"]["code"] == "not_found"


def test_paths_outside_the_api_are_404_json(sim: SimulatorServer) -> None:
    assert_json(requests.get(sim.root_url + "/portfolio/order_groups", timeout=5), 404)
