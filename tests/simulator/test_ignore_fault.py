"""The "ignore" fault: the exchange says yes to a trigger and leaves the group active, once."""

import requests

from ogpanel.simulator import SimulatorServer
from tests.simulator.signing import SignedClient

GROUPS = "/portfolio/order_groups"


def test_an_ignore_fault_leaves_the_group_active_once_and_then_lets_triggers_through(
    client: SignedClient, sim: SimulatorServer
) -> None:
    group_id = sim.create_group(1, 10)
    other = sim.create_group(1, 10)
    sim.set_fault("ignore", path=f"{GROUPS}/{group_id}/trigger", method="PUT", times=1)

    ignored = client.put(f"{GROUPS}/{group_id}/trigger", params={"subaccount": 1}, json={})
    bystander = client.put(f"{GROUPS}/{other}/trigger", params={"subaccount": 1}, json={})

    assert (ignored.status_code, ignored.json()) == (200, {})
    assert sim.group(group_id)["triggered"] is False
    assert bystander.status_code == 200 and sim.group(other)["triggered"] is True
    assert client.put(f"{GROUPS}/{group_id}/trigger", params={"subaccount": 1}, json={}).status_code == 200
    assert sim.group(group_id)["triggered"] is True
    assert sim.faults.snapshot() == []


def test_the_control_api_accepts_an_ignore_fault(sim: SimulatorServer) -> None:
    answer = requests.post(
        f"{sim.root_url}/_sim/faults", json={"kind": "ignore", "path": "/trigger", "times": 1}, timeout=5
    )

    assert answer.status_code == 201
    assert [fault["kind"] for fault in sim.faults.snapshot()] == ["ignore"]
