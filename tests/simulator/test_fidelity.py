"""Where the simulator was measured to diverge from Kalshi's docs or clients, and now behaves as they say.

One test (or a few) per divergence: the Content-Type rule, HTTP/1.1 keep-alive, 400 for a malformed
id before any 404, the subaccount range, per-account rate budgets and GET /account/limits and
/account/endpoint_costs, and soft rejections. The WebSocket ones are in test_websocket.py.
"""

import http.client
from collections.abc import Iterator

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import rsa

from ogpanel.simulator import SimulatorServer, start
from ogpanel.simulator.ratelimit import TIERS
from tests.simulator.conftest import KEY_ID, public_pem
from tests.simulator.signing import SignedClient

GROUPS = "/portfolio/order_groups"
OTHER_KEY_ID = "6f1e0c4a-0000-4000-8000-000000000002"


# --- Content-Type (reference §3, OBS: demo answers 400 invalid_content_type) ---------------------


@pytest.mark.parametrize("action", ["reset", "trigger", "limit"])
def test_it_refuses_a_put_without_a_json_content_type(client: SignedClient, sim: SimulatorServer, action) -> None:
    group_id = sim.create_group(0, 10)
    response = client.put(
        f"{GROUPS}/{group_id}/{action}", data=b'{"contracts_limit": 5}', headers={"Content-Type": None}
    )

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_content_type"
    assert sim.group(group_id)["contracts_limit"] == 10


def test_it_refuses_a_post_with_another_content_type(client: SignedClient, sim: SimulatorServer) -> None:
    response = client.post(f"{GROUPS}/create", data=b'{"contracts_limit": 5}', headers={"Content-Type": "text/plain"})
    assert (response.status_code, response.json()["error"]["code"]) == (400, "invalid_content_type")
    assert sim.exchange.state()["groups"] == []


def test_it_accepts_json_with_a_charset_and_an_empty_body(client: SignedClient, sim: SimulatorServer) -> None:
    group_id = sim.create_group(0, 10)
    headers = {"Content-Type": "Application/JSON; charset=utf-8"}
    assert client.put(f"{GROUPS}/{group_id}/trigger", data=b"", headers=headers).status_code == 200  # as SYNC sends
    assert client.delete(f"{GROUPS}/{group_id}", headers={"Content-Type": None}).status_code == 200  # no body, no rule


def test_a_lenient_simulator_accepts_a_put_without_content_type(private_key: rsa.RSAPrivateKey) -> None:
    with start(require_json_content_type=False) as lenient:
        lenient.add_key(KEY_ID, public_pem(private_key))
        group_id = lenient.create_group(0, 10)
        client = SignedClient(lenient.base_url, KEY_ID, private_key)
        assert client.put(f"{GROUPS}/{group_id}/trigger", headers={"Content-Type": None}).status_code == 200


# --- HTTP/1.1 with keep-alive --------------------------------------------------------------------


def test_it_answers_many_requests_over_one_kept_alive_connection(client: SignedClient, sim: SimulatorServer) -> None:
    group_id = sim.create_group(0, 10)
    with requests.Session() as session:
        for _ in range(5):
            response = client.get(GROUPS, session=session)
            assert response.status_code == 200 and response.raw.version == 11
        client.put(f"{GROUPS}/{group_id}/trigger", session=session)
        client.get(GROUPS, session=session, params={"subaccount": "x"})  # an error answer keeps it too
        assert client.get(GROUPS, session=session).json()["order_groups"][0]["is_auto_cancel_enabled"] is True
        [pool] = session.adapters["http://"].poolmanager.pools._container.values()
        assert pool.num_connections == 1  # every request rode the first connection


def test_a_chunked_body_is_read_whole_and_the_connection_goes_on(client: SignedClient, sim: SimulatorServer) -> None:
    with requests.Session() as session:
        chunks = iter([b'{"contracts_limit"', b": 7}"])  # a generator body goes out chunked
        assert client.post(f"{GROUPS}/create", data=chunks, session=session).status_code == 201
        assert client.get(GROUPS, session=session).json()["order_groups"][0]["contracts_limit_fp"] == "7.00"


def test_stop_cuts_kept_alive_connections(private_key: rsa.RSAPrivateKey) -> None:
    server = start()
    server.add_key(KEY_ID, public_pem(private_key))
    connection = http.client.HTTPConnection(*server._httpd.server_address[:2], timeout=5)
    try:
        connection.request("GET", "/_sim/state")
        response = connection.getresponse()
        assert (response.status, response.version, response.getheader("Connection")) == (200, 11, None)
        response.read()  # the connection stays open for the next request
        server.stop()
        assert connection.sock.recv(1) == b""  # closed, not left answering
    finally:
        connection.close()


# --- malformed ids (OBS: 400 invalid_parameters before any 404) -----------------------------------


@pytest.mark.parametrize("bad_id", ["og.1", "og%2F1", "x" * 65, "og%20x"])
def test_a_malformed_id_is_a_400_before_any_404(client: SignedClient, bad_id: str) -> None:
    for response in (
        client.get(f"{GROUPS}/{bad_id}"),
        client.put(f"{GROUPS}/{bad_id}/trigger"),
        client.delete(f"{GROUPS}/{bad_id}"),
    ):
        assert response.status_code == 400, response.text
        assert response.json()["error"]["code"] == "invalid_parameters"
    assert client.get(f"{GROUPS}/og_missing").status_code == 404  # well-formed and unknown: not found


# --- subaccount range ----------------------------------------------------------------------------


def test_the_highest_subaccount_is_configurable(private_key: rsa.RSAPrivateKey) -> None:
    with start(max_subaccount=32) as narrow:
        narrow.add_key(KEY_ID, public_pem(private_key))
        client = SignedClient(narrow.base_url, KEY_ID, private_key)
        assert client.post(f"{GROUPS}/create", json={"contracts_limit": 1, "subaccount": 32}).status_code == 201
        assert client.post(f"{GROUPS}/create", json={"contracts_limit": 1, "subaccount": 33}).status_code == 400
    assert SimulatorServer.__init__.__kwdefaults__["max_subaccount"] == 63


# --- rate budgets per account, /account/limits, /account/endpoint_costs ---------------------------


@pytest.fixture
def basic_sim(private_key, stranger_key) -> Iterator[SimulatorServer]:
    server = start(tier="basic")
    server.limiter.clock = lambda: 1000.0  # buckets never refill during a test: bursts count exactly
    server.add_key(KEY_ID, public_pem(private_key))
    yield server
    server.stop()


def test_two_keys_of_one_account_share_its_write_budget(basic_sim, private_key, stranger_key) -> None:
    basic_sim.add_key(OTHER_KEY_ID, public_pem(stranger_key))  # same (default) account
    first = SignedClient(basic_sim.base_url, KEY_ID, private_key)
    second = SignedClient(basic_sim.base_url, OTHER_KEY_ID, stranger_key)
    group_id = basic_sim.create_group(0, 10)

    statuses = [client.put(f"{GROUPS}/{group_id}/trigger").status_code for client in [first, second] * 11]

    assert statuses.count(200) == 20 and statuses.count(429) == 2  # one burst of 20 between them


def test_keys_of_different_accounts_have_budgets_of_their_own(basic_sim, private_key, stranger_key) -> None:
    basic_sim.add_key(OTHER_KEY_ID, public_pem(stranger_key), account="desk-b")
    first = SignedClient(basic_sim.base_url, KEY_ID, private_key)
    second = SignedClient(basic_sim.base_url, OTHER_KEY_ID, stranger_key)
    group_id = basic_sim.create_group(0, 10)

    statuses = [client.put(f"{GROUPS}/{group_id}/trigger").status_code for client in [first, second] * 20]

    assert statuses == [200] * 40


@pytest.mark.parametrize("tier", TIERS)
def test_account_limits_report_the_accounts_tier_and_buckets(basic_sim, private_key, tier) -> None:
    basic_sim.set_tier("member", tier)
    body = SignedClient(basic_sim.base_url, KEY_ID, private_key).get("/account/limits").json()

    read, write = TIERS[tier]
    assert body == {
        "usage_tier": tier,
        "read": {"refill_rate": read, "bucket_capacity": read},
        "write": {"refill_rate": write, "bucket_capacity": 2 * write},
        "grants": [],
    }


def test_the_seven_tiers_are_the_ones_the_newest_official_client_names() -> None:
    assert list(TIERS) == ["basic", "advanced", "expert", "premier", "paragon", "prestige", "prime"]


def test_a_tier_set_for_an_account_is_enforced_and_reported(basic_sim, private_key, stranger_key) -> None:
    basic_sim.add_key(OTHER_KEY_ID, public_pem(stranger_key), account="desk-b")
    basic_sim.set_tier("desk-b", "advanced")
    other = SignedClient(basic_sim.base_url, OTHER_KEY_ID, stranger_key)
    group_id = basic_sim.create_group(0, 10)

    assert other.get("/account/limits").json()["usage_tier"] == "advanced"
    assert [other.put(f"{GROUPS}/{group_id}/trigger").status_code for _ in range(60)] == [200] * 60
    assert SignedClient(basic_sim.base_url, KEY_ID, private_key).get("/account/limits").json()["usage_tier"] == "basic"


def test_endpoint_costs_list_what_differs_from_the_default_and_are_charged(basic_sim, private_key) -> None:
    client = SignedClient(basic_sim.base_url, KEY_ID, private_key)
    assert client.get("/account/endpoint_costs").json() == {"default_cost": 10, "endpoint_costs": []}

    basic_sim.set_endpoint_cost("PUT", f"{GROUPS}/{{order_group_id}}/trigger", 50)
    assert client.get("/account/endpoint_costs").json() == {
        "default_cost": 10,
        "endpoint_costs": [{"method": "PUT", "path": f"{GROUPS}/{{order_group_id}}/trigger", "cost": 50}],
    }
    group_id = basic_sim.create_group(0, 10)
    # 200 write tokens at 50 a trigger: four, then a 429; a reset still costs 10.
    assert [client.put(f"{GROUPS}/{group_id}/trigger").status_code for _ in range(5)] == [200] * 4 + [429]
    assert client.put(f"{GROUPS}/{group_id}/reset").status_code == 429  # the bucket is empty for everyone


def test_an_untiered_simulator_says_it_enforces_no_limits(client: SignedClient) -> None:
    for path in ("/account/limits", "/account/endpoint_costs"):
        response = client.get(path)
        assert response.status_code == 404 and "no rate limits" in response.json()["error"]["message"]


def test_the_control_api_sets_accounts_tiers_and_costs(basic_sim, stranger_key) -> None:
    control = basic_sim.root_url + "/_sim"
    added = requests.post(
        control + "/keys",
        json={"key_id": OTHER_KEY_ID, "public_key_pem": public_pem(stranger_key).decode(), "account": "desk-c"},
        timeout=5,
    )
    assert added.status_code == 201
    assert requests.post(control + "/tiers", json={"account": "desk-c", "tier": "prime"}, timeout=5).status_code == 200
    assert requests.post(control + "/tiers", json={"account": "desk-c", "tier": "gold"}, timeout=5).status_code == 400
    cost = {"method": "GET", "path": GROUPS, "cost": 20}
    assert requests.post(control + "/endpoint_costs", json=cost, timeout=5).status_code == 200
    limits = SignedClient(basic_sim.base_url, OTHER_KEY_ID, stranger_key).get("/account/limits").json()
    assert limits["usage_tier"] == "prime"
    assert basic_sim.limiter.costs()["endpoint_costs"] == [cost]


# --- soft rejections (§11) ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"), [("POST", "/create"), ("PUT", "/{id}/trigger"), ("PUT", "/{id}/limit"), ("DELETE", "/{id}")]
)
def test_a_soft_error_fault_answers_2xx_with_an_error_body_and_changes_nothing(
    client: SignedClient, sim: SimulatorServer, method: str, path: str
) -> None:
    group_id = sim.create_group(0, 10)
    sim.set_fault("soft_error", times=1)

    response = client.request(method, GROUPS + path.format(id=group_id), json={"contracts_limit": 5})

    assert response.status_code == 200
    assert response.json() == {"error": {"code": "request_rejected", "message": "injected soft rejection"}}
    assert sim.group(group_id) == {**sim.group(group_id), "contracts_limit": 10, "triggered": False}
    assert len(sim.exchange.state()["groups"]) == 1


def test_a_soft_error_may_carry_another_2xx_status_but_not_an_error_status(sim: SimulatorServer, client) -> None:
    sim.set_fault("soft_error", status=201, times=1)
    assert client.post(f"{GROUPS}/create", json={"contracts_limit": 5}).status_code == 201
    with pytest.raises(ValueError, match="2xx"):
        sim.set_fault("soft_error", status=400)
