"""Rolling-window and lifecycle semantics under the controllable clock (reference §5)."""

from concurrent.futures import ThreadPoolExecutor

import pytest

from ogpanel.simulator import Clock, ExchangeError, SimulatorServer
from ogpanel.simulator.exchange import Exchange
from tests.simulator.signing import SignedClient

GROUPS = "/portfolio/order_groups"


def place(client: SignedClient, group_id: str, count: int = 10, subaccount: int | None = None) -> dict:
    body = {"ticker": "KXTEST-1", "side": "yes", "action": "buy", "count": count, "order_group_id": group_id}
    if subaccount is not None:
        body["subaccount"] = subaccount
    return client.post("/portfolio/orders", json=body)


def test_fills_summing_exactly_to_the_limit_do_not_trigger(sim: SimulatorServer) -> None:
    group_id = sim.create_group(0, 10)
    order_id = sim.place_order(0, group_id, count=20)

    sim.fill(order_id, 6)
    sim.fill(order_id, 4)

    assert sim.group(group_id)["volume"] == 10
    assert sim.group(group_id)["triggered"] is False
    assert sim.group(group_id)["orders"] == {order_id: "resting"}


def test_one_contract_over_the_limit_triggers(sim: SimulatorServer, client: SignedClient) -> None:
    group_id = sim.create_group(0, 10)
    order_id = sim.place_order(0, group_id, count=20)
    sim.fill(order_id, 10)

    sim.fill(order_id, 1)

    assert sim.group(group_id)["triggered"] is True
    assert sim.group(group_id)["orders"] == {order_id: "cancelled"}
    assert client.get(f"{GROUPS}/{group_id}").json() == {
        "is_auto_cancel_enabled": True,
        "contracts_limit_fp": "10.00",
        "orders": [],
        "exchange_index": 0,
    }


def test_fills_expire_after_15_seconds(sim: SimulatorServer) -> None:
    group_id = sim.create_group(0, 10)
    order_id = sim.place_order(0, group_id, count=100)
    sim.fill(order_id, 10)

    sim.advance(15.01)
    sim.fill(order_id, 10)

    assert sim.group(group_id)["volume"] == 10
    assert sim.group(group_id)["triggered"] is False


def test_fills_inside_the_window_still_count(sim: SimulatorServer) -> None:
    group_id = sim.create_group(0, 10)
    order_id = sim.place_order(0, group_id, count=100)
    sim.fill(order_id, 10)

    sim.advance(14.9)
    sim.fill(order_id, 1)

    assert sim.group(group_id)["triggered"] is True


def test_the_window_rolls_fill_by_fill() -> None:
    now = [1000.0]
    exchange = Exchange(clock=Clock(source=lambda: now[0]))
    group_id = exchange.create_group(0, 10)
    order = exchange.place_order(subaccount=0, group_id=group_id, count=100, ticker="T")

    exchange.fill(order.id, 5)  # t=0
    now[0] += 10
    exchange.fill(order.id, 5)  # t=10
    now[0] += 5.5
    assert exchange.fill(order.id, 5).volume == 10  # t=15.5: the first fill has left
    now[0] += 4
    assert exchange.fill(order.id, 6).triggered is True  # t=19.5: 5 + 5 + 6 > 10


def test_trigger_cancels_resting_orders_and_rejects_new_ones(sim: SimulatorServer, client: SignedClient) -> None:
    group_id = client.create_group(100)
    first = place(client, group_id).json()["order"]["order_id"]
    second = place(client, group_id).json()["order"]["order_id"]

    assert client.put(f"{GROUPS}/{group_id}/trigger").json() == {}

    assert sim.group(group_id)["orders"] == {first: "cancelled", second: "cancelled"}
    refused = place(client, group_id)
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "order_group_triggered"
    assert client.get(f"{GROUPS}/{group_id}").json()["is_auto_cancel_enabled"] is True


def test_trigger_twice_and_reset_when_active_are_idempotent(client: SignedClient, sim: SimulatorServer) -> None:
    group_id = client.create_group(100)
    assert client.put(f"{GROUPS}/{group_id}/reset").status_code == 200
    assert client.put(f"{GROUPS}/{group_id}/trigger").status_code == 200
    assert client.put(f"{GROUPS}/{group_id}/trigger").status_code == 200
    assert sim.group(group_id)["triggered"] is True


def test_reset_clears_the_trigger_and_the_counter(sim: SimulatorServer, client: SignedClient) -> None:
    group_id = sim.create_group(0, 10)
    order_id = sim.place_order(0, group_id, count=20)
    sim.fill(order_id, 11)
    assert sim.group(group_id)["triggered"] is True

    assert client.put(f"{GROUPS}/{group_id}/reset").json() == {}

    assert sim.group(group_id)["triggered"] is False
    assert sim.group(group_id)["volume"] == 0
    assert client.get(f"{GROUPS}/{group_id}").json()["is_auto_cancel_enabled"] is False
    fresh = sim.place_order(0, group_id, count=20)
    sim.fill(fresh, 10)  # a full limit again, because the counter restarted at zero
    assert sim.group(group_id)["triggered"] is False


def test_update_limit_below_current_volume_triggers(sim: SimulatorServer, client: SignedClient) -> None:
    group_id = sim.create_group(0, 100)
    order_id = sim.place_order(0, group_id, count=100)
    sim.fill(order_id, 30)

    assert client.put(f"{GROUPS}/{group_id}/limit", json={"contracts_limit": 29}).json() == {}

    assert sim.group(group_id)["triggered"] is True
    assert sim.group(group_id)["orders"] == {order_id: "cancelled"}


def test_update_limit_to_exactly_the_volume_does_not_trigger(sim: SimulatorServer, client: SignedClient) -> None:
    group_id = sim.create_group(0, 100)
    order_id = sim.place_order(0, group_id, count=100)
    sim.fill(order_id, 30)

    client.put(f"{GROUPS}/{group_id}/limit", json={"contracts_limit": 30})

    assert sim.group(group_id)["triggered"] is False


def test_delete_cancels_orders_and_removes_the_group(sim: SimulatorServer, client: SignedClient) -> None:
    group_id = client.create_group(100)
    order_id = place(client, group_id).json()["order"]["order_id"]

    assert client.delete(f"{GROUPS}/{group_id}").json() == {}

    assert client.get(f"{GROUPS}/{group_id}").status_code == 404
    assert client.delete(f"{GROUPS}/{group_id}").status_code == 404
    assert client.get(GROUPS).json() == {"order_groups": []}
    assert {"order_id": order_id, "status": "cancelled"}.items() <= sim.exchange.state()["orders"][0].items()
    with pytest.raises(ExchangeError):
        sim.group(group_id)


def test_a_signed_order_rests_in_its_group(client: SignedClient, sim: SimulatorServer) -> None:
    group_id = client.create_group(100, subaccount=2)

    response = place(client, group_id, count=5, subaccount=2)

    assert response.status_code == 201
    order = response.json()["order"]
    assert order["order_group_id"] == group_id
    assert order["status"] == "resting"
    assert order["ticker"] == "KXTEST-1"
    assert client.get(f"{GROUPS}/{group_id}").json()["orders"] == [order["order_id"]]


def test_an_order_naming_an_unknown_or_other_subaccount_group_is_404(client: SignedClient) -> None:
    group_id = client.create_group(100, subaccount=2)
    assert place(client, group_id).status_code == 404  # subaccount 0 by default
    assert place(client, "no-such-group").status_code == 404


def test_get_lists_only_resting_orders(sim: SimulatorServer, client: SignedClient) -> None:
    group_id = sim.create_group(0, 100)
    executed = sim.place_order(0, group_id, count=2)
    resting = sim.place_order(0, group_id, count=2)
    sim.fill(executed, 2)

    assert sim.group(group_id)["orders"] == {executed: "executed", resting: "resting"}
    assert client.get(f"{GROUPS}/{group_id}").json()["orders"] == [resting]


def test_a_fill_larger_than_the_order_counts_in_full_and_executes_it(sim: SimulatorServer) -> None:
    group_id = sim.create_group(0, 100)
    order_id = sim.place_order(0, group_id, count=2)

    sim.fill(order_id, 30)

    assert sim.group(group_id)["volume"] == 30
    assert sim.group(group_id)["orders"] == {order_id: "executed"}


def test_it_refuses_to_fill_an_order_that_is_not_resting(sim: SimulatorServer) -> None:
    group_id = sim.create_group(0, 100)
    order_id = sim.place_order(0, group_id, count=2)
    sim.fill(order_id, 2)
    with pytest.raises(ExchangeError, match="executed"):
        sim.fill(order_id, 1)


def test_python_api_seeding_validates_like_the_endpoints(sim: SimulatorServer) -> None:
    with pytest.raises(ExchangeError):
        sim.create_group(64, 10)
    with pytest.raises(ExchangeError):
        sim.create_group(0, 0)
    group_id = sim.create_group(1, 10)
    with pytest.raises(ExchangeError):
        sim.place_order(0, group_id)  # another subaccount's group


def test_reset_forgets_everything_but_keys(sim: SimulatorServer, client: SignedClient) -> None:
    client.create_group(100)
    sim.set_fault("latency", seconds=0.01)
    sim.advance(100)

    sim.reset()

    assert sim.exchange.state() == {"clock_offset": 0.0, "groups": [], "orders": []}
    assert sim.faults.snapshot() == []
    assert sim.requests == []
    assert client.get(GROUPS).status_code == 200


def test_concurrent_fills_and_creates_lose_nothing(sim: SimulatorServer, client: SignedClient) -> None:
    group_id = sim.create_group(0, 1000)
    order_id = sim.place_order(0, group_id, count=1000)

    def fill_ten() -> None:
        for _ in range(10):
            sim.fill(order_id, 1)

    with ThreadPoolExecutor(max_workers=16) as pool:
        creates = [pool.submit(client.post, f"{GROUPS}/create", json={"contracts_limit": 1}) for _ in range(16)]
        statuses = [future.result().status_code for future in creates]
        for future in [pool.submit(fill_ten) for _ in range(20)]:
            future.result()

    assert statuses == [201] * 16
    assert len(client.get(GROUPS).json()["order_groups"]) == 17
    assert sim.group(group_id)["volume"] == 200
