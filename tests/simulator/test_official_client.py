"""Kalshi's official client (kalshi-python-sync), unchanged, against the simulator (reference §10)."""

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from kalshi_python_sync import Configuration, KalshiClient, NotFoundException
from kalshi_python_sync.models import CreateOrderGroupResponse, GetOrderGroupResponse, GetOrderGroupsResponse

from ogpanel.simulator import SimulatorServer, start
from tests.simulator.conftest import KEY_ID, public_pem


@pytest.fixture
def official(sim: SimulatorServer, private_key: rsa.RSAPrivateKey) -> KalshiClient:
    pkcs1 = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )
    config = Configuration(host=sim.base_url)
    config.api_key_id = KEY_ID
    config.private_key_pem = pkcs1.decode()
    return KalshiClient(config)


def test_the_official_client_completes_all_seven_operations(official: KalshiClient, sim: SimulatorServer) -> None:
    created = official.create_order_group(contracts_limit=100, subaccount=2)
    assert isinstance(created, CreateOrderGroupResponse)
    assert created.subaccount == 2
    group_id = created.order_group_id

    listed = official.get_order_groups(subaccount=2)
    assert isinstance(listed, GetOrderGroupsResponse)
    assert [(g.id, g.contracts_limit_fp, g.is_auto_cancel_enabled) for g in listed.order_groups] == [
        (group_id, "100.00", False)
    ]
    assert [g.id for g in official.get_order_groups().order_groups] == [group_id]

    order_id = sim.place_order(2, group_id)
    fetched = official.get_order_group(group_id, subaccount=2)
    assert isinstance(fetched, GetOrderGroupResponse)
    assert fetched.orders == [order_id]

    assert official.update_order_group_limit(group_id, subaccount=2, contracts_limit=50) == {}
    assert official.get_order_group(group_id).contracts_limit_fp == "50.00"

    assert official.trigger_order_group(group_id, subaccount=2) == {}
    triggered = official.get_order_group(group_id, subaccount=2)
    assert triggered.is_auto_cancel_enabled is True
    assert triggered.orders == []

    assert official.reset_order_group(group_id, subaccount=2) == {}
    assert official.get_order_group(group_id, subaccount=2).is_auto_cancel_enabled is False

    assert official.delete_order_group(group_id, subaccount=2) == {}
    with pytest.raises(NotFoundException):
        official.get_order_group(group_id, subaccount=2)

    assert {r.status for r in sim.requests} == {200, 201, 404}


def test_the_official_client_sees_a_wrong_subaccount_as_not_found(official: KalshiClient) -> None:
    group_id = official.create_order_group(contracts_limit=10, subaccount=2).order_group_id
    with pytest.raises(NotFoundException):
        official.trigger_order_group(group_id)


def test_the_official_client_reads_the_accounts_limits_and_costs(private_key: rsa.RSAPrivateKey) -> None:
    from kalshi_python_sync import AccountApi

    with start(tier="basic") as tiered:
        tiered.add_key(KEY_ID, public_pem(private_key))
        tiered.set_endpoint_cost("PUT", "/portfolio/order_groups/{order_group_id}/trigger", 20)
        pkcs1 = private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        )
        config = Configuration(host=tiered.base_url)
        config.api_key_id = KEY_ID
        config.private_key_pem = pkcs1.decode()
        account = AccountApi(KalshiClient(config))

        limits = account.get_account_api_limits()
        assert (limits.usage_tier, limits.read.refill_rate, limits.read.bucket_capacity) == ("basic", 200, 200)
        assert (limits.write.refill_rate, limits.write.bucket_capacity) == (100, 200)
        costs = account.get_account_endpoint_costs()
        assert costs.default_cost == 10
        assert [(c.method, c.path, c.cost) for c in costs.endpoint_costs] == [
            ("PUT", "/portfolio/order_groups/{order_group_id}/trigger", 20)
        ]
