"""Signature checks on every /trade-api/v2 request (reference §2)."""

import time

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from ogpanel.simulator import SimulatorServer
from tests.simulator.conftest import KEY_ID, public_pem
from tests.simulator.signing import SignedClient, now_ms

GROUPS = "/portfolio/order_groups"


def assert_refused(response: requests.Response, code: str, details: str | None = None) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["Content-Type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] == code
    if details is not None:
        assert error["details"] == details


def test_a_correct_signature_is_accepted(client: SignedClient) -> None:
    assert client.get(GROUPS).status_code == 200


def test_it_refuses_requests_without_auth_headers(sim: SimulatorServer) -> None:
    assert_refused(requests.get(sim.base_url + GROUPS, timeout=5), "authentication_error")


def test_it_refuses_an_unknown_key(sim: SimulatorServer, private_key: rsa.RSAPrivateKey) -> None:
    stranger = SignedClient(sim.base_url, "not-a-registered-key", private_key)
    assert_refused(stranger.get(GROUPS), "authentication_error")


def test_it_refuses_a_signature_by_another_private_key(sim: SimulatorServer, stranger_key: rsa.RSAPrivateKey) -> None:
    impostor = SignedClient(sim.base_url, KEY_ID, stranger_key)
    assert_refused(impostor.get(GROUPS), "authentication_error", "INCORRECT_API_KEY_SIGNATURE")


def test_it_refuses_a_signature_for_another_path(client: SignedClient, sim: SimulatorServer) -> None:
    group_id = sim.create_group(0, 10)
    response = client.put(f"{GROUPS}/{group_id}/trigger", signed_path=f"/trade-api/v2{GROUPS}/{group_id}/reset")

    assert_refused(response, "authentication_error", "INCORRECT_API_KEY_SIGNATURE")
    assert sim.group(group_id)["triggered"] is False


def test_it_refuses_a_signature_without_the_api_prefix(client: SignedClient) -> None:
    assert_refused(client.get(GROUPS, signed_path=GROUPS), "authentication_error", "INCORRECT_API_KEY_SIGNATURE")


def test_it_refuses_a_signature_over_the_query_string(client: SignedClient) -> None:
    response = client.get(GROUPS, params={"subaccount": 2}, signed_path=f"/trade-api/v2{GROUPS}?subaccount=2")
    assert_refused(response, "authentication_error", "INCORRECT_API_KEY_SIGNATURE")


def test_the_query_string_is_not_signed(client: SignedClient) -> None:
    assert client.get(GROUPS, params={"subaccount": 2}).status_code == 200


def test_it_refuses_a_signature_with_another_method(client: SignedClient) -> None:
    timestamp = now_ms()
    signed_for_get = client.get(GROUPS, timestamp=timestamp).request.headers["KALSHI-ACCESS-SIGNATURE"]
    response = requests.post(
        client.base_url + f"{GROUPS}/create",
        json={"contracts_limit": 1},
        headers={
            "KALSHI-ACCESS-KEY": KEY_ID,
            "KALSHI-ACCESS-TIMESTAMP": timestamp,
            "KALSHI-ACCESS-SIGNATURE": signed_for_get,
        },
        timeout=5,
    )
    assert_refused(response, "authentication_error", "INCORRECT_API_KEY_SIGNATURE")


@pytest.mark.parametrize("skew_seconds", [-31, 31, -3600])
def test_it_refuses_a_skewed_timestamp(client: SignedClient, skew_seconds: int) -> None:
    skewed = str(int((time.time() + skew_seconds) * 1000))
    assert_refused(client.get(GROUPS, timestamp=skewed), "header_timestamp_expired")


def test_it_accepts_a_timestamp_a_few_seconds_off(client: SignedClient) -> None:
    slightly_off = str(int((time.time() - 5) * 1000))
    assert client.get(GROUPS, timestamp=slightly_off).status_code == 200


def test_advancing_the_semantic_clock_does_not_expire_timestamps(client: SignedClient, sim: SimulatorServer) -> None:
    sim.advance(3600)
    assert client.get(GROUPS).status_code == 200


def test_it_refuses_a_timestamp_in_seconds(client: SignedClient) -> None:
    assert_refused(client.get(GROUPS, timestamp=str(int(time.time()))), "header_timestamp_expired")


@pytest.mark.parametrize("salt_length", [0, 20, 64, 222])
def test_it_refuses_a_salt_length_other_than_32(client: SignedClient, salt_length: int) -> None:
    assert_refused(client.get(GROUPS, salt_length=salt_length), "authentication_error", "INCORRECT_API_KEY_SIGNATURE")


def test_it_refuses_a_signature_that_is_not_base64(sim: SimulatorServer) -> None:
    response = requests.get(
        sim.base_url + GROUPS,
        headers={"KALSHI-ACCESS-KEY": KEY_ID, "KALSHI-ACCESS-TIMESTAMP": now_ms(), "KALSHI-ACCESS-SIGNATURE": "%%%"},
        timeout=5,
    )
    assert_refused(response, "authentication_error", "INCORRECT_API_KEY_SIGNATURE")


@pytest.mark.parametrize(
    ("private_format", "pem_header"),
    [
        (
            serialization.PrivateFormat.TraditionalOpenSSL,
            b"BEGIN RSA " + b"PRIVATE KEY",
        ),  # PKCS#1 (armour split: no marker in a tracked file), what Kalshi issues
        (serialization.PrivateFormat.PKCS8, b"BEGIN " + b"PRIVATE KEY"),
    ],
)
def test_pkcs1_and_pkcs8_client_keys_both_work(
    sim: SimulatorServer,
    private_key: rsa.RSAPrivateKey,
    private_format: serialization.PrivateFormat,
    pem_header: bytes,
) -> None:
    pem = private_key.private_bytes(serialization.Encoding.PEM, private_format, serialization.NoEncryption())
    assert pem_header in pem
    reloaded = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(reloaded, rsa.RSAPrivateKey)

    assert SignedClient(sim.base_url, KEY_ID, reloaded).get(GROUPS).status_code == 200


def test_it_accepts_a_pkcs1_public_key(sim: SimulatorServer, stranger_key: rsa.RSAPrivateKey) -> None:
    pkcs1_public = stranger_key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1)
    sim.add_key("pkcs1-public", pkcs1_public.decode())
    assert SignedClient(sim.base_url, "pkcs1-public", stranger_key).get(GROUPS).status_code == 200


def test_add_key_refuses_something_that_is_not_a_public_key(sim: SimulatorServer) -> None:
    with pytest.raises(ValueError):
        sim.add_key("broken", b"-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n")


class TestSubaccountRestrictedKey:
    KEY = "restricted-key"

    @pytest.fixture
    def restricted(self, sim: SimulatorServer, stranger_key: rsa.RSAPrivateKey) -> SignedClient:
        sim.add_key(self.KEY, public_pem(stranger_key), subaccounts=[2, 3])
        return SignedClient(sim.base_url, self.KEY, stranger_key)

    def test_it_answers_403_for_another_subaccount(self, restricted: SignedClient, sim: SimulatorServer) -> None:
        group_id = sim.create_group(5, 10)

        for response in (
            restricted.get(GROUPS, params={"subaccount": 5}),
            restricted.get(f"{GROUPS}/{group_id}", params={"subaccount": 5}),
            restricted.put(f"{GROUPS}/{group_id}/trigger", params={"subaccount": 5}),
            restricted.post(f"{GROUPS}/create", json={"contracts_limit": 1, "subaccount": 5}),
        ):
            assert response.status_code == 403, response.text
            assert response.json()["error"]["code"] == "forbidden"
        assert sim.group(group_id)["triggered"] is False

    def test_its_own_subaccounts_work(self, restricted: SignedClient) -> None:
        created = restricted.post(f"{GROUPS}/create", json={"contracts_limit": 1, "subaccount": 3})
        assert created.status_code == 201
        group_id = created.json()["order_group_id"]
        assert restricted.put(f"{GROUPS}/{group_id}/trigger", params={"subaccount": 3}).status_code == 200

    def test_list_and_get_without_a_subaccount_span_only_its_subaccounts(
        self, restricted: SignedClient, sim: SimulatorServer
    ) -> None:
        visible = sim.create_group(2, 10)
        hidden = sim.create_group(0, 10)

        listed = restricted.get(GROUPS).json()["order_groups"]

        assert [group["id"] for group in listed] == [visible]
        assert restricted.get(f"{GROUPS}/{visible}").status_code == 200
        assert restricted.get(f"{GROUPS}/{hidden}").status_code == 404

    def test_a_mutation_without_a_subaccount_means_0_and_is_forbidden(
        self, restricted: SignedClient, sim: SimulatorServer
    ) -> None:
        group_id = sim.create_group(0, 10)
        assert restricted.put(f"{GROUPS}/{group_id}/trigger").status_code == 403

    def test_a_key_locked_to_one_subaccount_defaults_to_it(
        self, sim: SimulatorServer, stranger_key: rsa.RSAPrivateKey
    ) -> None:
        sim.add_key("locked-key", public_pem(stranger_key), subaccounts=[4])
        locked = SignedClient(sim.base_url, "locked-key", stranger_key)

        created = locked.post(f"{GROUPS}/create", json={"contracts_limit": 1})

        assert created.status_code == 201
        assert created.json()["subaccount"] == 4
        assert locked.put(f"{GROUPS}/{created.json()['order_group_id']}/trigger").status_code == 200
