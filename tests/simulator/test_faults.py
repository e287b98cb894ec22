"""Injected faults and exchange-side rate limiting (reference §6)."""

import time
from collections.abc import Iterator

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import rsa

from ogpanel.simulator import RequestRecord, SimulatorServer, start
from ogpanel.simulator.ratelimit import RateLimiter
from tests.simulator.conftest import KEY_ID, public_pem
from tests.simulator.signing import SignedClient

GROUPS = "/portfolio/order_groups"


@pytest.fixture
def basic_tier_client(private_key: rsa.RSAPrivateKey) -> Iterator[tuple[SimulatorServer, SignedClient]]:
    sim = start(tier="basic")
    sim.add_key(KEY_ID, public_pem(private_key))
    yield sim, SignedClient(sim.base_url, KEY_ID, private_key)
    sim.stop()


def test_basic_tier_answers_429_once_the_2_second_write_budget_is_spent(
    basic_tier_client: tuple[SimulatorServer, SignedClient],
) -> None:
    sim, client = basic_tier_client
    group_id = sim.create_group(0, 100)

    statuses = []
    while 429 not in statuses and len(statuses) < 100:
        statuses.append(client.put(f"{GROUPS}/{group_id}/trigger").status_code)
    response = client.put(f"{GROUPS}/{group_id}/trigger")

    # Basic: 100 write tokens/s at 10 a request, bursting to 2 s: 20 requests, then a trickle.
    assert statuses[:20] == [200] * 20
    assert statuses[-1] == 429
    assert response.status_code == 429
    assert response.json() == {"error": "too many requests"}
    assert "Retry-After" not in response.headers
    assert response.headers["Content-Type"] == "application/json"
    assert sim.rate_limited_count == 2


def test_the_limiter_refills_at_the_tier_rate() -> None:
    now = [0.0]
    limiter = RateLimiter("basic", clock=lambda: now[0])

    assert all(limiter.allow("k", "PUT") for _ in range(20))
    assert not limiter.allow("k", "DELETE")
    assert all(limiter.allow("k", "GET") for _ in range(20))  # reads: 200/s, 1 s of burst
    assert not limiter.allow("k", "GET")
    assert limiter.allow("another-account", "POST")  # budgets are per account

    now[0] += 0.1  # 10 write tokens: one more request
    assert limiter.allow("k", "PUT")
    assert not limiter.allow("k", "PUT")
    now[0] += 60  # refills stop at the burst size
    assert sum(limiter.allow("k", "PUT") for _ in range(30)) == 20


def test_rate_limited_writes_leave_the_read_budget_alone(
    basic_tier_client: tuple[SimulatorServer, SignedClient],
) -> None:
    sim, client = basic_tier_client
    group_id = sim.create_group(0, 100)
    while client.put(f"{GROUPS}/{group_id}/trigger").status_code != 429:
        pass

    assert client.get(GROUPS).status_code == 200


def test_rate_limiting_is_off_by_default(client: SignedClient, sim: SimulatorServer) -> None:
    group_id = sim.create_group(0, 100)
    assert all(client.put(f"{GROUPS}/{group_id}/trigger").status_code == 200 for _ in range(40))
    assert sim.rate_limited_count == 0


def test_a_latency_fault_delays_the_answer(client: SignedClient, sim: SimulatorServer) -> None:
    sim.set_fault("latency", seconds=0.3)

    started = time.monotonic()
    response = client.get(GROUPS)

    assert response.status_code == 200
    assert time.monotonic() - started >= 0.3


def test_global_latency_delays_every_api_answer(private_key: rsa.RSAPrivateKey) -> None:
    with start(latency=0.2) as sim:
        sim.add_key(KEY_ID, public_pem(private_key))
        started = time.monotonic()
        assert SignedClient(sim.base_url, KEY_ID, private_key).get(GROUPS).status_code == 200
        assert time.monotonic() - started >= 0.2


@pytest.mark.parametrize("status", [500, 502, 503, 400])
def test_an_error_fault_answers_its_status_with_a_nested_error(
    client: SignedClient, sim: SimulatorServer, status: int
) -> None:
    sim.set_fault("error", status=status)

    response = client.get(GROUPS)

    assert response.status_code == status
    assert response.headers["Content-Type"] == "application/json"
    assert set(response.json()["error"]) >= {"code", "message"}


def test_an_error_fault_defaults_to_500(client: SignedClient, sim: SimulatorServer) -> None:
    sim.set_fault("error")
    assert client.get(GROUPS).status_code == 500


def test_a_rate_limit_fault_answers_429_without_retry_after(client: SignedClient, sim: SimulatorServer) -> None:
    sim.set_fault("rate_limit")

    response = client.get(GROUPS)

    assert response.status_code == 429
    assert response.json() == {"error": "too many requests"}
    assert "Retry-After" not in response.headers
    assert sim.rate_limited_count == 0  # only the exchange-side limiter counts


def test_a_drop_fault_closes_the_connection_without_an_answer(client: SignedClient, sim: SimulatorServer) -> None:
    sim.set_fault("drop")

    with pytest.raises(requests.ConnectionError):
        client.get(GROUPS)

    assert sim.requests[-1].status is None


def test_a_hang_fault_holds_the_request_past_the_client_timeout(client: SignedClient, sim: SimulatorServer) -> None:
    sim.set_fault("hang", seconds=2)

    with pytest.raises(requests.ReadTimeout):
        client.get(GROUPS, timeout=0.5)

    assert sim.requests[-1].status is None


def test_a_garbage_fault_answers_200_with_a_body_that_is_not_json(client: SignedClient, sim: SimulatorServer) -> None:
    sim.set_fault("garbage")

    response = client.get(GROUPS)

    assert response.status_code == 200
    with pytest.raises(requests.JSONDecodeError):
        response.json()


def test_a_fault_scoped_to_one_subaccount_leaves_the_others_alone(client: SignedClient, sim: SimulatorServer) -> None:
    sim.set_fault("error", status=503, subaccount=3)

    assert client.get(GROUPS, params={"subaccount": 3}).status_code == 503
    assert client.get(GROUPS, params={"subaccount": 2}).status_code == 200
    assert client.get(GROUPS, params={"subaccount": 30}).status_code == 200
    assert client.get(GROUPS).status_code == 200


def test_a_fault_with_times_applies_to_that_many_requests_only(client: SignedClient, sim: SimulatorServer) -> None:
    sim.set_fault("error", times=2)

    assert [client.get(GROUPS).status_code for _ in range(3)] == [500, 500, 200]


def test_faults_match_on_path_method_and_key(client: SignedClient, sim: SimulatorServer) -> None:
    group_id = sim.create_group(0, 10)
    sim.set_fault("error", path="/trigger", method="put")
    sim.set_fault("error", status=502, key_id="somebody-else")

    assert client.put(f"{GROUPS}/{group_id}/trigger").status_code == 500
    assert client.put(f"{GROUPS}/{group_id}/reset").status_code == 200
    assert client.get(f"{GROUPS}/{group_id}").status_code == 200


def test_clear_faults_restores_normal_answers(client: SignedClient, sim: SimulatorServer) -> None:
    sim.set_fault("error")
    sim.clear_faults()
    assert client.get(GROUPS).status_code == 200


def test_faults_do_not_touch_the_control_api(sim: SimulatorServer) -> None:
    sim.set_fault("drop")
    assert requests.get(sim.root_url + "/_sim/state", timeout=5).status_code == 200


def test_set_fault_refuses_an_unknown_kind_or_a_latency_without_seconds(sim: SimulatorServer) -> None:
    with pytest.raises(ValueError):
        sim.set_fault("explode")
    with pytest.raises(ValueError):
        sim.set_fault("latency")
    with pytest.raises(ValueError):
        sim.set_fault("error", status=200)


def test_the_request_log_records_faulted_and_refused_requests(client: SignedClient, sim: SimulatorServer) -> None:
    sim.set_fault("error", status=503, times=1)
    client.get(GROUPS, params={"subaccount": "4"})
    requests.get(sim.base_url + GROUPS, timeout=5)  # unsigned
    client.post(f"{GROUPS}/create", json={"contracts_limit": 3})

    assert sim.requests == [
        RequestRecord("GET", "/trade-api/v2/portfolio/order_groups", {"subaccount": "4"}, 503, KEY_ID),
        RequestRecord("GET", "/trade-api/v2/portfolio/order_groups", {}, 401, None),
        RequestRecord("POST", "/trade-api/v2/portfolio/order_groups/create", {}, 201, KEY_ID),
    ]
    sim.clear_requests()
    assert sim.requests == []
